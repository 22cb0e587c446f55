"""Parts of a call that live in a store: lazily loaded arguments, a call prepared to run.

Kept apart from :mod:`fleche.call` (which re-exports both) so each module
keeps one job: :mod:`fleche.call` defines the records, this one the two
views a cache hands out while it reads or writes them.  It imports no
record class (records reach it as data), so the records can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .digest import DIGEST_LENGTH, Digest

__all__ = ["LazyArguments", "PreparedCall"]


class LazyArguments(Mapping[str, Any]):
    """Arguments of a stored call, each loaded the first time it is read.

    A value missing from the store gives back its bare :class:`Digest` (as
    in 0.22), so a record whose values were pruned, or never kept, can
    still be listed.
    """

    def __init__(self, digests: Mapping[str, Digest], load: Callable[[Digest], Any]) -> None:
        self._digests = digests
        self._load = load
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            key = self._digests[name]
            try:
                self._loaded[name] = self._load(key)
            except KeyError:  # not stored: its digest stands for it
                return key
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: <{d[:8]}>" for k, d in self._digests.items()) + "}"


class PreparedCall:
    """A call whose arguments are stored and whose key is sealed before it runs: plain data.

    Made by a cache's ``prepare``: ``record`` holds the argument digests,
    ``key`` the sealed lookup key, ``cache`` the cache that finishes it and
    ``hold`` what that cache keeps until then (the pinned argument keys, the
    prepared calls of its layers…).  While it is ``open`` its argument values
    are pinned against garbage collection.  The cache finishes it:
    ``cache.commit(prepared, result, metadata)`` stores the result and the
    record (once), ``cache.abandon(prepared)`` lets it go.  :meth:`commit`
    and :meth:`abandon` here are the 0.22 spelling of those; as a context
    manager it abandons itself on exit if it was not committed.

    ``PreparedCall(digested, cache)``, the 0.22 form, prepares ``digested``
    (whose argument values are already stored, e.g. by
    :meth:`Call.stash <fleche.call.Call.stash>`) in ``cache``; short
    argument digests are expanded against it.
    """

    __slots__ = ("record", "key", "cache", "hold", "committed", "open")

    def __init__(self, record: Any, key: Digest | Any, cache: Any = None, hold: Any = None) -> None:
        if cache is None:  # PreparedCall(digested, cache): prepared in that cache
            record = _resolved(record, key)
            made = key.prepare(record, {}, record.key())
            record, key, cache, hold = made.record, made.key, made.cache, made.hold
        self.record = record
        self.key = key
        self.cache = cache
        self.hold = hold
        self.committed = False
        self.open = True

    def commit(
        self, result: Any, metadata: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Digest:
        """Store ``result`` and the call record (with extra ``metadata``); returns the call key.

        The 0.22 spelling of ``cache.commit(prepared, result, metadata)``.

        Raises
        ------
        RuntimeError
            If the call was committed already.
        """
        return self.cache.commit(self, result, metadata)

    def abandon(self) -> None:
        """Release the pinned arguments without storing anything more (again: nothing)."""
        self.cache.abandon(self)

    def to_lookup_key(self) -> Digest:
        """The 0.22 name of :attr:`key`."""
        return self.key

    def resolve(self, values: Any) -> Any:
        """The record with every short argument digest expanded against ``values``."""
        return _resolved(self.record, values)

    def __enter__(self) -> PreparedCall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()


def _resolved(record: Any, values: Any) -> Any:
    """``record`` with its short argument digests expanded by ``values.expand``."""
    arguments = record.arguments
    if all(len(d) == DIGEST_LENGTH for d in arguments.values()):
        return record
    full = {n: d if len(d) == DIGEST_LENGTH else values.expand(d) for n, d in arguments.items()}
    return record.replace(arguments=full)
