"""Small values in the call database: one table, read and written on the store's own connections.

A value storage keeps an entry here instead of in a file or an object when
its encoded bytes are small (:mod:`.small_values`), as diskcache keeps
small values in its SQLite file: a miss then writes no file.  The rows
hold exactly the bytes a pickle file would (header, check or signature,
payload), so a damaged or forged row is refused as a file would be.

Statements run on the per-thread connection of the call store
(:class:`~fleche.storage.sql_connection.Runtime`), compiled once per
process like the records' own.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..digest import Digest
from .sql_connection import Runtime
from .sql_schema import PAGE, small_values

__all__ = ["SmallValueTable"]

_KEY = bindparam("key")
_first = itemgetter(0)
#: Keys read by one statement of :meth:`SmallValueTable.get_many` (below every driver's limit).
CHUNK = 500
#: A scan for many keys stops when fewer than one row in this many of a page is asked for.
SPARSE = 4


class SmallValueTable:
    """The ``small_values`` table of one process's connection to a call database."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        dialect = runtime.engine.dialect
        insert = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(
            small_values
        )
        table = small_values.c

        def text(statement: Any) -> str:
            return str(statement.compile(dialect=dialect))

        # A content-addressed put: the first write wins; a later one only says "used now".
        self._touch = text(
            insert.on_conflict_do_update(
                index_elements=[table.key], set_={"stored": insert.excluded.stored}
            )
        )
        # Over an entry read as damaged: its bytes replaced.
        self._replace = text(
            insert.on_conflict_do_update(
                index_elements=[table.key],
                set_={"data": insert.excluded.data, "stored": insert.excluded.stored},
            )
        )
        self._get = text(select(table.data).where(table.key == _KEY))
        pair = select(table.key, table.data)
        self._in = text(pair.where(table.key.in_([bindparam(f"k{n}") for n in range(CHUNK)])))
        self._page = (
            text(pair.where(table.key > bindparam("after")).order_by(table.key)) + f" LIMIT {PAGE}"
        )
        self._bytes = "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM small_values"
        self._count = "SELECT count(*) FROM small_values"
        self._stored = text(select(table.stored).where(table.key == _KEY))
        self._delete = text(delete(small_values).where(table.key == _KEY))
        self._unused = text(
            delete(small_values).where(table.key == _KEY, table.stored <= bindparam("horizon"))
        )
        self._range = (
            text(
                select(table.key)
                .where(
                    table.key >= bindparam("low"),
                    table.key > bindparam("after"),
                    table.key < bindparam("high"),
                )
                .order_by(table.key)
            )
            + f" LIMIT {PAGE}"
        )

    def put(
        self, key: str, data: bytes, replace: bool = False, hold: bool | list[Any] = False
    ) -> None:
        """Store ``data`` under ``key`` (kept if stored already, unless ``replace``): one statement.

        With ``hold``, the statement runs with this thread's next write on this
        database, in its transaction (:meth:`~.sql_connection.Runtime.hold`);
        a list ``hold`` collects it instead (for :meth:`~.sql_connection.Runtime.give_held`).
        """
        # Exact types sqlite3 binds without an adapter lookup, which costs a raised and
        # cleared AttributeError per Digest or bytes parameter (CPython 3.11): ~1 us a put.
        parameters = {"key": str(key), "data": bytearray(data), "stored": time.time()}
        statement = self._replace if replace else self._touch
        if type(hold) is list:
            hold.append((statement, parameters))
        elif hold:
            self.runtime.hold(statement, parameters)
        else:
            self.runtime.write(statement, parameters)

    def flush(self) -> None:
        """Write the entries this thread holds now (see :meth:`put`)."""
        self.runtime.flush()

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``; ``None`` if it has no row."""
        rows = self.runtime.read(self._get, {"key": str(key)})  # exact str: see put
        if not rows:
            return None
        data = rows[0][0]
        return data if type(data) is bytes else bytes(data)  # psycopg gives a memoryview

    def get_many(self, keys: Collection[str]) -> Iterator[list[tuple[str, bytes]]]:
        """The rows (key and bytes) of those of ``keys`` that have one, a list at a time.

        Many keys (a table of a store's calls asks for most of its values)
        are read by scanning the table a page at a time, in key order,
        keeping the rows asked for: no sort, no lookup per key.  Once a page
        holds few of them, the keys left are looked up a chunk per
        statement (``IN``), as are a few keys from the start.
        """
        wanted = keys if isinstance(keys, (set, frozenset)) else set(keys)
        after = ""
        if len(wanted) > CHUNK:
            for rows in self.runtime.pages(self._page, {"after": after}, PAGE):
                kept = list(compress(rows, map(wanted.__contains__, map(_first, rows))))
                yield self._bytes_of(kept)
                if len(rows) < PAGE:
                    return
                after = rows[-1][0]
                if len(kept) * SPARSE < len(rows):
                    break
        rest = sorted(k for k in wanted if k > after)
        for start in range(0, len(rest), CHUNK):
            chunk = rest[start : start + CHUNK]
            padded = chain(chunk, repeat(chunk[-1], CHUNK - len(chunk)))
            rows = self.runtime.read(self._in, {f"k{n}": k for n, k in enumerate(padded)})
            yield self._bytes_of(rows)

    def scan(self) -> list[tuple[str, bytes]]:
        """Every row (key and bytes), sorted by key: read a page per statement."""
        rows: list[tuple[str, bytes]] = []
        for page in self.runtime.pages(self._page, {"after": ""}, PAGE):
            rows += self._bytes_of(page)
        return rows

    def count(self) -> int:
        """How many entries are kept here."""
        return int(self.runtime.read(self._count, {})[0][0])

    def _bytes_of(self, rows: list[Any]) -> list[tuple[str, bytes]]:
        """Rows with their data as ``bytes`` (psycopg gives a memoryview)."""
        if self.runtime.sqlite:
            return rows
        return [(key, bytes(data)) for key, data in rows]

    def size(self) -> int:
        """The bytes of every entry kept here."""
        return int(self.runtime.read(self._bytes, {})[0][0])

    def stored_at(self, key: str) -> float | None:
        """When ``key`` was last written or found stored again; ``None`` if it has no row."""
        rows = self.runtime.read(self._stored, {"key": key})
        return rows[0][0] if rows else None

    def delete(self, key: str) -> bool:
        """Remove the row of ``key``; whether there was one."""
        return bool(self.runtime.write(self._delete, {"key": key}))

    def delete_unused(self, key: str, horizon: float) -> bool:
        """Remove the row of ``key`` unless it was stored after ``horizon``: one atomic statement."""
        return bool(self.runtime.write(self._unused, {"key": key, "horizon": horizon}))

    def keys(self, prefix: str = "") -> Iterator[Digest]:
        """The keys starting with ``prefix``, sorted: an index range scan, a page at a time."""
        bounds = {"low": prefix, "high": prefix + "g", "after": ""}  # keys are hex: below 'g'
        return self.runtime.keys(self._range, bounds, PAGE)

    def rows(self, low: str, high: str) -> Iterator[tuple[str, bytes, float]]:
        """``(key, bytes, stored)`` of the keys from ``low`` to ``high``, sorted, a page at a time.

        What verify reads small values with: one range scan of the key
        index instead of a statement per key.  No connection is held
        between pages.
        """
        bounds = {"low": low, "high": high, "after": ""}
        for rows in self.runtime.pages(self._rows_statement(), bounds, PAGE):
            for key, data, stored in rows:
                yield key, data if type(data) is bytes else bytes(data), stored

    def _rows_statement(self) -> str:
        """The paged range statement of :meth:`rows`, compiled once per table."""
        statement = self.__dict__.get("_rows_text")
        if statement is None:
            table = small_values.c
            query = (
                select(table.key, table.data, table.stored)
                .where(
                    table.key >= bindparam("low"),
                    table.key > bindparam("after"),
                    table.key <= bindparam("high"),
                )
                .order_by(table.key)
            )
            dialect = self.runtime.engine.dialect
            statement = self._rows_text = f"{query.compile(dialect=dialect)} LIMIT {PAGE}"
        return statement
