"""One page of the calls a template matches: cut by SQLite itself, or from the template query.

A page of a function's calls must cost the same on page 1 and page 20,000
of a million calls.  The template query cannot give that: it returns a SQL
store's calls by key, which SQLite can only produce by sorting every call
of the function, and a page deep down would read every call before it.
On a SQLite store a page is therefore one statement of its own: the calls
newest first (by ``rowid``, the order they were stored in, which the
``(name, module)`` index already holds), cut with ``LIMIT``/``OFFSET``
over that index (expired calls keep their place in it but are not shown),
the argument filters joined on the argument index as the template query
does.  Any other store
cuts the page from :meth:`~fleche.caches.CacheBase.query` with
:meth:`~fleche.QueryIterator.skip` and :meth:`~fleche.QueryIterator.take`.
Either way every call shown is checked with :meth:`QueryCall.matches`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, Protocol

from sqlalchemy import bindparam, false, func, literal_column, select, text

from fleche import Cache, LazyCall, QueryCall
from fleche.expiry import is_expired
from fleche.storage.sql import Sql
from fleche.storage.sql_metadata import text_ok
from fleche.storage.sql_query import argument_joins, metadata_condition
from fleche.storage.sql_schema import ROW_COLUMNS, calls, decode_row

__all__ = ["Pages", "QueryPages", "SqlitePages", "pages_for"]

#: Rows read at a time when SQL can only narrow the matches (metadata filters).
CHUNK = 500
#: Calls per function, from the ``(name, module)`` index alone.
COUNTS = "SELECT name, module, count(*) FROM calls GROUP BY name, module"
#: Each function's argument names, with where each was first seen (row, then place).
PARAMETERS = (
    "SELECT calls.name, calls.module, given.key, min(calls.rowid), min(given.id) "
    "FROM calls, json_each(calls.arguments) AS given GROUP BY 1, 2, 3"
)
#: A function as the catalog names it: ``(module, name)``.
Function = tuple[str | None, str]
_ROWID = literal_column("calls.rowid")


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


class SqlitePages:
    """Pages of a :class:`~fleche.Cache` whose call records are in SQLite, newest first."""

    order = "newest first"

    def __init__(self, storage: Sql, values: Any, clock: Callable[[], float]) -> None:
        self._storage, self._values, self._clock = storage, values, clock

    def window(self, template: QueryCall, start: int, size: int) -> tuple[list[LazyCall], bool]:
        now, template = self._clock(), template.digested()
        if _exact(template):  # SQL selects exactly the stored matches: it cuts the page too
            statement = self._matching(template, _ROWID, calls.c.key, *ROW_COLUMNS)
            rows = self._read(statement.order_by(_ROWID.desc()).limit(size + 1).offset(start))
            return list(self._calls(rows[:size], template, now)), len(rows) > size
        found = list(islice(self._narrowed(template, now), start, start + size + 1))
        return found[:size], len(found) > size

    def count(self, template: QueryCall) -> int | None:
        if not _exact(template):
            return None
        statement = self._matching(template.digested(), func.count())
        return self._read(statement)[0][0]

    def sample(self, template: QueryCall) -> LazyCall | None:
        return next(self._narrowed(template.digested(), None), None)

    def counts(self) -> dict[Function, int] | None:
        rows = self._read(text(COUNTS))
        return {(module or None, name): n for name, module, n in rows}

    def parameters(self) -> dict[Function, tuple[str, ...]]:
        found: dict[Function, list[tuple[int, int, str]]] = {}
        for name, module, argument, row, place in self._read(text(PARAMETERS)):
            found.setdefault((module or None, name), []).append((row, place, argument))
        return {f: tuple(a for *_, a in sorted(seen)) for f, seen in found.items()}

    def _narrowed(self, template: QueryCall, now: float | None) -> Iterator[LazyCall]:
        """Every match newest first, read :data:`CHUNK` rows at a time and checked in Python."""
        statement = self._matching(template, _ROWID, calls.c.key, *ROW_COLUMNS)
        statement = statement.order_by(_ROWID.desc()).limit(CHUNK)
        before = None
        while True:
            rows = self._read(statement if before is None else statement.where(_ROWID < before))
            yield from self._calls(rows, template, now)
            if len(rows) < CHUNK:
                return
            before = rows[-1][0]

    def _matching(self, template: QueryCall, *columns: Any) -> Any:
        """``columns`` of the calls SQL finds for ``template`` (a superset with metadata filters)."""
        statement = select(*columns).select_from(calls)
        # With argument filters, "+column" keeps SQLite from walking the function's
        # (name, module) index in rowid order instead of starting from the argument index.
        prefix = "+" if template.arguments else ""
        for field in ("name", "module"):
            want = getattr(template, field)
            if want is None:
                continue
            if not isinstance(want, str) or not text_ok(want):
                return statement.where(false())
            column = literal_column(f"{prefix}calls.{field}")
            statement = statement.where(column == bindparam(f"want_{field}", want))
        statement = argument_joins(statement, template.arguments)
        for namespace, entries in (template.metadata or {}).items():
            condition = metadata_condition(namespace, entries, postgres=False)
            if condition is not None:
                statement = statement.where(condition)
        return statement

    def _read(self, statement: Any) -> list[Any]:
        with self._storage.engine.connect() as connection:
            return connection.execute(statement).all()

    def _calls(self, rows: list[Any], template: QueryCall, now: float | None) -> Iterator[LazyCall]:
        """The calls of ``rows`` that match ``template`` exactly (not expired by ``now``, if given).

        Damaged rows are left out.
        """
        for _, key, *row in rows:
            try:
                record = decode_row(key, tuple(row))
            except ValueError:
                continue  # ``fleche verify`` reports it
            if template.matches(record) and (now is None or not is_expired(record, now)):
                yield LazyCall(record, self._values)


def _exact(template: QueryCall) -> bool:
    """Whether SQL selects exactly the matches: it does for a function and its arguments.

    Metadata filters are only narrowed in SQL; the other fields of a
    template (never set by a table's URL) are left to the check in Python.
    """
    others = (template.version, template.code, template.result)
    return not template.metadata and all(field is None for field in others)


def pages_for(cache: Any) -> Pages:
    """:class:`SqlitePages` for a :class:`~fleche.Cache` over SQLite, else :class:`QueryPages`."""
    if isinstance(cache, Cache) and isinstance(cache.calls, Sql):
        if cache.calls.engine.dialect.name == "sqlite":
            return SqlitePages(cache.calls, cache.values, cache.clock)
    return QueryPages(cache)
