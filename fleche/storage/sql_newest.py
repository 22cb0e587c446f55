"""Windows of a SQLite store's records newest first, cut by SQLite itself: what a browser pages.

A page of a function's calls must cost the same on page 1 and page 20,000
of a million calls.  The template query cannot give that: it returns a SQL
store's calls by key, which SQLite can only produce by sorting every call
of the function, and a page deep down would read every call before it.
Here a window is one statement of its own: the calls newest first (by
``rowid``, the order they were stored in, which the ``(name, module)``
index already holds), cut with ``LIMIT``/``OFFSET`` over that index
(expired calls keep their place in it but are not returned), the argument
filters joined on the argument index as the template query does.  Every
record returned is checked with :meth:`QueryCall.matches`.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from sqlalchemy import bindparam, false, func, literal_column, select, text

from ..call import DigestedCall, QueryCall
from ..expiry import is_expired
from .sql_metadata import text_ok
from .sql_query import argument_joins, metadata_condition
from .sql_schema import ROW_COLUMNS, calls, decode_row

__all__ = ["Function", "NewestFirst"]

#: Rows read at a time when SQL can only narrow the matches (metadata filters).
CHUNK = 500
#: Calls per function, from the ``(name, module)`` index alone.
COUNTS = "SELECT name, module, count(*) FROM calls GROUP BY name, module"
#: Each function's argument names, with where each was first seen (row, then place).
PARAMETERS = (
    "SELECT calls.name, calls.module, given.key, min(calls.rowid), min(given.id) "
    "FROM calls, json_each(calls.arguments) AS given GROUP BY 1, 2, 3"
)
#: A function as a catalog names it: ``(module, name)``.
Function = tuple[str | None, str]
_ROWID = literal_column("calls.rowid")


class NewestFirst:
    """The records of a SQLite call store newest first, a window at a time (see the module)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def window(
        self, template: QueryCall, start: int, size: int, now: float
    ) -> tuple[list[DigestedCall], bool]:
        """The matches ``start`` to ``start + size`` not expired by ``now``, and whether more follow."""
        template = template.digested()
        if _exact(template):  # SQL selects exactly the stored matches: it cuts the window too
            statement = self._matching(template, _ROWID, calls.c.key, *ROW_COLUMNS)
            rows = self._read(statement.order_by(_ROWID.desc()).limit(size + 1).offset(start))
            return list(self._records(rows[:size], template, now)), len(rows) > size
        found = list(islice(self._narrowed(template, now), start, start + size + 1))
        return found[:size], len(found) > size

    def count(self, template: QueryCall) -> int | None:
        """How many stored records match (expired ones too), when SQL alone can tell."""
        if not _exact(template):
            return None
        return self._read(self._matching(template.digested(), func.count()))[0][0]

    def sample(self, template: QueryCall) -> DigestedCall | None:
        """The newest stored record that matches, expired or not."""
        return next(self._narrowed(template.digested(), None), None)

    def counts(self) -> dict[Function, int]:
        """Stored records per ``(module, name)``, from the index alone."""
        return {(module or None, name): n for name, module, n in self._read(text(COUNTS))}

    def parameters(self) -> dict[Function, tuple[str, ...]]:
        """The argument names of each function's records, in the order first seen."""
        found: dict[Function, list[tuple[int, int, str]]] = {}
        for name, module, argument, row, place in self._read(text(PARAMETERS)):
            found.setdefault((module or None, name), []).append((row, place, argument))
        return {f: tuple(a for *_, a in sorted(seen)) for f, seen in found.items()}

    def _narrowed(self, template: QueryCall, now: float | None) -> Iterator[DigestedCall]:
        """Every match newest first, read :data:`CHUNK` rows at a time and checked in Python."""
        statement = self._matching(template, _ROWID, calls.c.key, *ROW_COLUMNS)
        statement = statement.order_by(_ROWID.desc()).limit(CHUNK)
        before = None
        while True:
            rows = self._read(statement if before is None else statement.where(_ROWID < before))
            yield from self._records(rows, template, now)
            if len(rows) < CHUNK:
                return
            before = rows[-1][0]

    def _matching(self, template: QueryCall, *columns: Any) -> Any:
        """``columns`` of the records SQL finds for ``template`` (a superset with metadata filters)."""
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
        with self._engine.connect() as connection:
            return connection.execute(statement).all()

    @staticmethod
    def _records(rows: list[Any], template: QueryCall, now: float | None) -> Iterator[DigestedCall]:
        """The records of ``rows`` that match ``template`` exactly (not expired by ``now``, if given).

        Damaged rows are left out: ``fleche verify`` reports them.
        """
        for _, key, *row in rows:
            try:
                record = decode_row(key, tuple(row))
            except ValueError:
                continue
            if template.matches(record) and (now is None or not is_expired(record, now)):
                yield record


def _exact(template: QueryCall) -> bool:
    """Whether SQL selects exactly the matches: it does for a function and its arguments.

    Metadata filters are only narrowed in SQL; the other fields of a
    template (never set by a table's URL) are left to the check in Python.
    """
    others = (template.version, template.code, template.result)
    return not template.metadata and all(field is None for field in others)
