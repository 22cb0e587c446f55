"""Reads over several member caches, skipping a failing member for a while.

:class:`Layered` is what a :class:`~fleche.caches.CacheStack` and a
:class:`~fleche.caches.CachePool` share: lookups take the first member that
holds a key, queries see every call once, short digests are expanded across
all members.  A member that fails (anything but ``KeyError``: a database
down, a full disk) is skipped for ``retry_after`` seconds while the others
keep serving; one :class:`~fleche.errors.CacheWarning` is emitted per outage.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from ..call import LazyCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest
from ..errors import CacheWarning, warn
from ..query import QueryIterator
from .base import CacheBase
from .forms import as_template, merge_expansions

__all__ = ["Layered"]


@dataclasses.dataclass(frozen=True)
class Layered(CacheBase):
    """Reads over several member caches, with the failure bookkeeping (no writes).

    Subclasses add the field listing the members, named by ``_MEMBERS``.
    """

    _MEMBERS: ClassVar[str]
    _: dataclasses.KW_ONLY
    retry_after: float = 60.0
    clock: Callable[[], float] = time.time
    _down: dict[int, float] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        members = _members(getattr(self, self._MEMBERS), type(self).__name__)
        object.__setattr__(self, self._MEMBERS, members)

    def __reduce__(self) -> tuple[Any, ...]:
        # The failure bookkeeping (a lock among it) stays behind.
        options = {"retry_after": self.retry_after, "clock": self.clock}
        return (_rebuild, (type(self), self._members, options))

    @property
    def _members(self) -> tuple[CacheBase, ...]:
        return getattr(self, self._MEMBERS)

    def __str__(self) -> str:
        return f"{type(self).__name__}([{', '.join(map(str, self._members))}])"

    @property
    def persistent(self) -> bool:
        # docstring inherited
        return any(member.persistent for member in self._members)

    def now(self) -> float:
        # docstring inherited
        return self.clock()

    # -- failures --------------------------------------------------------------

    def _usable(self, index: int) -> bool:
        until = self._down.get(index)
        return until is None or self.clock() >= until

    def _failed(self, index: int, err: Exception) -> None:
        with self._lock:
            first = index not in self._down
            self._down[index] = self.clock() + self.retry_after
        if first:
            warn(
                f"fleche: layer {index} ({self._members[index]}) failed ({type(err).__name__}: {err}); "
                f"serving from the other layers and retrying it after {self.retry_after:g} s",
                CacheWarning,
            )

    def _worked(self, index: int) -> None:
        if index in self._down:
            with self._lock:
                self._down.pop(index, None)

    def _full(self, key: Digest | str) -> Digest:
        if len(key) == DIGEST_LENGTH:
            return key if type(key) is Digest else Digest(key)
        return self.expand(key)

    def _first(
        self, key: Digest, read: Callable[[CacheBase], Any], start: int = 0
    ) -> tuple[int, Any]:
        """``read`` on each usable member from ``start`` on: the first that has ``key``, and its index."""
        members = self._members
        for index in range(start, len(members)):
            member = members[index]
            if self._down and not self._usable(index):
                continue
            try:
                found = read(member)
            except KeyError:
                self._worked(index)
                continue
            except Exception as err:
                self._failed(index, err)
                continue
            self._worked(index)
            return index, found
        raise KeyError(f"no layer holds {key[:12]}")

    # -- reading -----------------------------------------------------------------

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        key = self._full(key)
        return self._first(key, lambda member: member.load(key))[1]

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        key = self._full(key)
        return self._first(key, lambda member: member.load_result(key))[1]

    def load_value(self, key: Digest | str) -> Any:
        # docstring inherited
        key = self._full(key)
        return self._first(key, lambda member: member.load_value(key))[1]

    def contains(self, key: Digest | str) -> bool:
        # docstring inherited
        try:
            key = self._full(key)
        except KeyError:
            return False

        def has(member: CacheBase) -> bool:
            if not member.contains(key):
                raise KeyError(key)
            return True

        try:
            return self._first(key, has)[1]
        except KeyError:
            return False

    def query(
        self, template: QueryCall | None = None, *, expired: bool = False, **fields: Any
    ) -> QueryIterator:
        # docstring inherited
        template = as_template(template, fields)

        def source() -> Iterator[LazyCall]:
            seen: set[Digest] = set()
            for index, member in enumerate(self._members):
                if self._down and not self._usable(index):
                    continue
                try:
                    for call in member.query(template, expired=expired):
                        key = call.key()
                        if key not in seen:
                            seen.add(key)
                            yield call
                except Exception as err:
                    self._failed(index, err)

        return QueryIterator(source, self)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        def attempt(index: int, member: CacheBase) -> Callable[[], Digest]:
            def expand() -> Digest:
                if self._down and not self._usable(index):
                    raise KeyError(key)
                try:
                    return member.expand(key)
                except (KeyError, ValueError):
                    raise
                except Exception as err:
                    self._failed(index, err)
                    raise KeyError(key) from err

            return expand

        return merge_expansions(key, [attempt(i, m) for i, m in enumerate(self._members)])

    def referenced(self) -> set[Digest]:
        # docstring inherited
        live: set[Digest] = set()
        for member in self._members:
            live |= member.referenced()
        return live


def _members(caches: Sequence[CacheBase], what: str) -> tuple[CacheBase, ...]:
    """The member caches as a tuple; any object with the cache interface may be one."""
    members = tuple(caches)
    if not members:
        raise ValueError(f"a {what} needs at least one cache")
    return members


def _rebuild(cls: type, members: tuple[CacheBase, ...], options: dict[str, Any]) -> Any:
    return cls(members, **options)
