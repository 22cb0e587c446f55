"""Lazy, re-iterable, chainable views over stored calls.

A :class:`QueryIterator` holds a recipe, not results: every iteration asks
the storage again, and every chained method returns a new view.  Nothing
is loaded until iterated, and argument/result values of each call load
only when read (they are :class:`~fleche.call.LazyCall` objects).

Wherever a method takes a ``key``, it is a function of a call or the name
of an argument (then the argument's value is the key).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .call import LazyCall
from .digest import Digest
from .errors import NoMatch, SeveralMatches
from .query_table import frame, page_frame

if TYPE_CHECKING:
    import pandas

__all__ = ["QueryIterator"]

Source = Callable[[], Iterable[LazyCall]]
Key = Callable[[LazyCall], Any] | str


class Queried(Protocol):
    """What a query acts on: the cache its calls come from (any :class:`~fleche.caches.CacheBase`)."""

    def evict(self, key: Digest | str) -> None: ...

    def shrink(self, *keys: Digest | str) -> Digest | tuple[Digest, ...]: ...


def _created(call: LazyCall) -> float:
    return call.created


def _result_digest(call: LazyCall) -> Hashable:
    return call.digested_call.result


def _key(key: Key) -> Callable[[LazyCall], Any]:
    """A key function from a function of a call or an argument name."""
    if callable(key):
        return key
    if isinstance(key, str):
        return lambda call: call.arguments[key]
    raise TypeError(f"a key is a function of a call or an argument name, not {key!r}")


@dataclasses.dataclass(frozen=True)
class QueryIterator:
    """Stored calls matching a query; iterate it as often as you like.

    ``calls`` returns a fresh iterable of calls each time it is called;
    ``cache`` is where they are stored (needed only by :meth:`evict` and by
    ``shrink_keys`` in :meth:`table`); ``counter``, if given, returns how
    many calls ``calls`` would yield (chained views count by iterating).
    """

    calls: Source
    cache: Queried | None = None
    #: Counts the calls without loading them (the storage's own count), if the source has one.
    counter: Callable[[], int] | None = dataclasses.field(default=None, compare=False)
    #: The records of the same calls as ``calls``, a page at a time as columns
    #: (:class:`~fleche.storage.record_page.RecordPage`), if the source reads them so:
    #: :meth:`table` is built from them without a record object per call.
    pages: Callable[[], Iterable[Any]] | None = dataclasses.field(default=None, compare=False)
    #: How the calls of ``pages`` load values by their digests, many at once (a value
    #: storage's ``values_of``): :meth:`table` reads the values it shows with it.
    values_of: Callable[[Sequence[Any], Any], list[Any]] | None = dataclasses.field(
        default=None, compare=False
    )

    def __iter__(self) -> Iterator[LazyCall]:
        return iter(self.calls())

    def _then(self, step: Callable[[Iterable[LazyCall]], Iterable[LazyCall]]) -> QueryIterator:
        return QueryIterator(lambda: step(self.calls()), self.cache)

    # -- chaining ------------------------------------------------------------

    def filter(self, predicate: Callable[[LazyCall], bool]) -> QueryIterator:
        """Only the calls for which ``predicate(call)`` is true."""
        return self._then(lambda calls: (c for c in calls if predicate(c)))

    def take(self, n: int) -> QueryIterator:
        """At most the first ``n`` calls."""
        return self._then(lambda calls: itertools.islice(calls, n))

    def skip(self, n: int) -> QueryIterator:
        """All but the first ``n`` calls."""
        return self._then(lambda calls: itertools.islice(calls, n, None))

    def sorted(self, key: Key | None = None, reverse: bool = False) -> QueryIterator:
        """The calls in order of ``key`` (by default the time they were stored)."""
        order = _created if key is None else _key(key)
        return self._then(lambda calls: sorted(calls, key=order, reverse=reverse))

    def unique(self, key: Key | None = None) -> QueryIterator:
        """The first call of each ``key`` (by default, of each result)."""
        by = _result_digest if key is None else _key(key)

        def step(calls: Iterable[LazyCall]) -> Iterator[LazyCall]:
            seen: set[Hashable] = set()
            for call in calls:
                k = by(call)
                if k not in seen:
                    seen.add(k)
                    yield call

        return self._then(step)

    # -- answers -------------------------------------------------------------

    def groupby(self, key: Key) -> dict[Any, QueryIterator]:
        """The calls grouped by ``key``, in order of first appearance, each group a query."""
        by = _key(key)
        groups: dict[Any, list[LazyCall]] = {}
        for call in self:
            groups.setdefault(by(call), []).append(call)
        return {k: QueryIterator(calls.copy, self.cache) for k, calls in groups.items()}

    def count(self) -> int:
        """How many calls match (counted by the store where it can, without loading them)."""
        if self.counter is not None:
            return self.counter()
        return sum(1 for _ in self)

    def any(self) -> LazyCall | None:
        """The first matching call, or ``None`` if there is none."""
        return next(iter(self), None)

    def empty(self) -> bool:
        """Whether no call matches."""
        return next(iter(self), None) is None

    def only(self) -> LazyCall:
        """The one matching call.

        :class:`~fleche.errors.NoMatch` (an ``IndexError``) if there is none,
        :class:`~fleche.errors.SeveralMatches` (a ``ValueError``) if there
        are several; both are ``LookupError``.
        """
        found = list(itertools.islice(self, 2))
        if not found:
            raise NoMatch("no call matches the query; widen it")
        if len(found) > 1:
            raise SeveralMatches(
                "more than one call matches the query; narrow it (or use .latest())"
            )
        return found[0]

    def latest(self) -> LazyCall | None:
        """The most recently stored matching call, or ``None``."""
        return max(self, key=_created, default=None)

    def oldest(self) -> LazyCall | None:
        """The first stored matching call, or ``None``."""
        return min(self, key=_created, default=None)

    def results(self) -> list[Any]:
        """The result of every matching call, loaded."""
        return [call.result for call in self]

    def evict(self) -> int:
        """Remove every matching call from the cache; returns how many."""
        keys = [call.key() for call in self]
        for key in keys:
            self._cache().evict(key)
        return len(keys)

    def transfer(self, target: Any, pop: bool = False, overwrite: bool = False) -> int:
        """Copy every matching call, with its values, into ``target``; returns how many.

        Calls ``target`` holds already are skipped unless ``overwrite``; with
        ``pop`` each copied call is evicted from this query's cache.  Values
        are copied under the digests they have, not digested again.
        """
        copied = 0
        for call in self:
            key = call.key()
            if not overwrite and target.contains(key):
                continue
            target.save(call)
            if pop:
                self._cache().evict(key)
            copied += 1
        return copied

    def _cache(self) -> Any:
        if self.cache is None:
            raise ValueError("this query has no cache to act on; make it with cache.query()")
        return self.cache

    def table(
        self,
        arguments: Iterable[str] | bool | None = None,
        results: bool | None = None,
        shrink_keys: bool | None = None,
        *,
        values: bool | None = None,
    ) -> pandas.DataFrame:
        """One row per call: key, function, arguments, result, created and metadata columns.

        Metadata columns are namespaced (``runtime.walltime``).  Called
        bare, or with ``values=``, it is our table: every value loaded, or
        with ``values=False`` every argument and result shown as its digest
        and nothing loaded.  Given any of the 0.22 keywords it is that
        release's table: digests everywhere except the arguments named in
        ``arguments`` and, with ``results=True``, the result; with
        ``shrink_keys`` (its default) digests are shown short.
        """
        if isinstance(arguments, bool):  # table(True): our positional ``values``
            arguments, values = None, arguments
        if arguments is None and results is None and shrink_keys is None:
            every = values is None or values
            return self._table(lambda _: every, None)
        if values is not None:
            raise TypeError("table() takes values= or the 0.22 keywords, not both")
        loaded = frozenset(arguments or ())
        if shrink_keys is None:
            shrink_keys = self.cache is not None  # a query without a cache cannot shorten
        shrink = self._cache().shrink if shrink_keys else None
        return self._table(
            lambda name: bool(results) if name == "result" else name in loaded, shrink
        )

    def _table(self, shown: Callable[[str], bool], shrink: Callable[[Any], Any] | None) -> Any:
        """The table, from the pages where the source reads them (see :func:`~fleche.query_table.frame`)."""
        if self.pages is not None and self.values_of is not None:
            return page_frame(self.pages(), shrink, shown, self.values_of)
        return frame(self, shown, shrink)
