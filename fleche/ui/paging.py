"""One page of the calls a template matches: cut by the store itself, or from the template query.

A page of a function's calls must cost the same on page 1 and page 20,000
of a million calls.  A store that cuts windows of its records itself (the
capability :meth:`~fleche.caches.CacheBase.newest_first`, a SQLite store's
:class:`~fleche.storage.sql_newest.NewestFirst`) gives its pages newest
first that way.  Any other store cuts the page from
:meth:`~fleche.caches.CacheBase.query` with
:meth:`~fleche.QueryIterator.skip` and :meth:`~fleche.QueryIterator.take`.
Either way every call shown is checked with :meth:`QueryCall.matches`.
"""

from __future__ import annotations

from typing import Any, Protocol

from fleche import LazyCall, QueryCall
from fleche.storage.sql_newest import Function, NewestFirst

__all__ = ["Pages", "QueryPages", "StorePages", "pages_for"]


class Pages(Protocol):
    """Where a function's table reads its pages from."""

    #: Which calls come first, in words, for the page to say.
    order: str

    def window(self, template: QueryCall, start: int, size: int) -> tuple[list[LazyCall], bool]:
        """The matching calls ``start`` to ``start + size`` (less expired ones), and whether more follow."""
        ...

    def count(self, template: QueryCall) -> int | None:
        """How many stored calls match (expired ones too), if that is cheap to know."""
        ...

    def sample(self, template: QueryCall) -> LazyCall | None:
        """One stored call that matches, expired or not (``None`` if there is none)."""
        ...

    def counts(self) -> dict[Function, int] | None:
        """Stored calls per ``(module, name)``, if the store counts them itself."""
        ...

    def parameters(self) -> dict[Function, tuple[str, ...]]:
        """The argument names of each function's calls, if the store lists them itself."""
        ...


class QueryPages:
    """Pages of any cache, cut from its template query (reading every call before the page)."""

    order = "in the store's order"

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def window(self, template: QueryCall, start: int, size: int) -> tuple[list[LazyCall], bool]:
        calls = list(self._cache.query(template).skip(start).take(size + 1))
        return calls[:size], len(calls) > size

    def count(self, template: QueryCall) -> int | None:
        return None

    def sample(self, template: QueryCall) -> LazyCall | None:
        return self._cache.query(template, expired=True).any()

    def counts(self) -> dict[Function, int] | None:
        return None

    def parameters(self) -> dict[Function, tuple[str, ...]]:
        return {}


class StorePages:
    """Pages of a cache whose store cuts windows of its records itself, newest first."""

    order = "newest first"

    def __init__(self, windows: NewestFirst, cache: Any) -> None:
        self._windows, self._cache = windows, cache

    def window(self, template: QueryCall, start: int, size: int) -> tuple[list[LazyCall], bool]:
        records, more = self._windows.window(template, start, size, self._cache.now())
        return [LazyCall(record, self._cache.values) for record in records], more

    def count(self, template: QueryCall) -> int | None:
        return self._windows.count(template)

    def sample(self, template: QueryCall) -> LazyCall | None:
        record = self._windows.sample(template)
        return None if record is None else LazyCall(record, self._cache.values)

    def counts(self) -> dict[Function, int] | None:
        return self._windows.counts()

    def parameters(self) -> dict[Function, tuple[str, ...]]:
        return self._windows.parameters()


def pages_for(cache: Any) -> Pages:
    """:class:`StorePages` where the cache's store cuts windows itself, else :class:`QueryPages`."""
    windows = cache.newest_first()
    return QueryPages(cache) if windows is None else StorePages(windows, cache)
