"""Lazy, re-iterable, chainable views over stored calls.

A :class:`QueryIterator` holds a recipe, not results: every iteration asks
the storage again, and every chained method returns a new view.  Nothing
is loaded until iterated, and argument/result values of each call load
only when read (they are :class:`~fleche.call.LazyCall` objects).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .call import LazyCall

if TYPE_CHECKING:
    import pandas

    from .caches import Cache

__all__ = ["QueryIterator"]

Source = Callable[[], Iterable[LazyCall]]


def _created(call: LazyCall) -> float:
    return call.created


class QueryIterator:
    """Stored calls matching a query; iterate it as often as you like."""

    def __init__(self, source: Source, cache: Cache) -> None:
        self._source = source
        self.cache = cache

    def __iter__(self) -> Iterator[LazyCall]:
        return iter(self._source())

    def _then(self, step: Callable[[Iterable[LazyCall]], Iterable[LazyCall]]) -> QueryIterator:
        return QueryIterator(lambda: step(self._source()), self.cache)

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

    def sorted(
        self, key: Callable[[LazyCall], Any] = _created, reverse: bool = False
    ) -> QueryIterator:
        """The calls in order of ``key`` (by default the time they were stored)."""
        return self._then(lambda calls: sorted(calls, key=key, reverse=reverse))

    def unique(self, key: Callable[[LazyCall], Hashable] | None = None) -> QueryIterator:
        """The first call of each ``key(call)`` (by default, of each result digest)."""
        key = key or (lambda c: c.digested_call.result)

        def step(calls: Iterable[LazyCall]) -> Iterator[LazyCall]:
            seen: set[Hashable] = set()
            for call in calls:
                k = key(call)
                if k not in seen:
                    seen.add(k)
                    yield call

        return self._then(step)

    # -- answers -------------------------------------------------------------

    def groupby(self, key: Callable[[LazyCall], Hashable]) -> dict[Hashable, list[LazyCall]]:
        """The calls grouped by ``key(call)``, in order of first appearance."""
        groups: dict[Hashable, list[LazyCall]] = {}
        for call in self:
            groups.setdefault(key(call), []).append(call)
        return groups

    def count(self) -> int:
        """How many calls match."""
        return sum(1 for _ in self)

    def any(self) -> bool:
        """Whether any call matches."""
        return next(iter(self), None) is not None

    def only(self) -> LazyCall:
        """The one matching call; ``LookupError`` if there are none or several."""
        found = list(itertools.islice(self, 2))
        if len(found) != 1:
            what = "no call matches" if not found else "more than one call matches"
            raise LookupError(f"{what} the query; narrow it (or use .latest())")
        return found[0]

    def latest(self) -> LazyCall | None:
        """The most recently stored matching call, or ``None``."""
        return max(self, key=_created, default=None)

    def oldest(self) -> LazyCall | None:
        """The first stored matching call, or ``None``."""
        return min(self, key=_created, default=None)

    def evict(self) -> int:
        """Remove every matching call from the cache; returns how many."""
        keys = [call.key() for call in self]
        for key in keys:
            self.cache.evict(key)
        return len(keys)

    def transfer(self, target: Cache) -> int:
        """Copy every matching call, with its values, into ``target``; returns how many."""
        n = 0
        for call in self:
            target.save(call.load())
            n += 1
        return n

    def table(self, values: bool = True) -> pandas.DataFrame:
        """One row per call: key, function, arguments, result and metadata columns.

        Metadata columns are namespaced (``runtime.walltime``).  With
        ``values=False`` arguments and result are shown as digests and no
        value is loaded.
        """
        import pandas

        rows = []
        for call in self:
            record = call.digested_call
            source = call if values else record
            row: dict[str, Any] = {"key": call.key(), "function": record.qualified_name}
            row.update(source.arguments)
            row["result"] = source.result
            row["created"] = pandas.Timestamp(record.created, unit="s")
            for namespace, entries in record.metadata.items():
                for name, value in entries.items():
                    row[f"{namespace}.{name}"] = value
            rows.append(row)
        return pandas.DataFrame(rows)
