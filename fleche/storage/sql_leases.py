"""The leases of a SQL call store: byte locks beside a SQLite file, else rows of its database.

:func:`sql_leases` chooses, and :meth:`Sql.leases() <fleche.storage.sql.Sql.leases>`
asks it once per process.  :class:`SqlLeases` keeps leases as rows of a
``fleche_leases`` table, for stores that many hosts share (PostgreSQL) and
for SQLite where POSIX locks are missing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from .leases import LeaseBackend, holder_gone, lease_owner
from .lock_leases import LOCKS_AVAILABLE, LockLeases

__all__ = ["SqlLeases", "sql_leases"]

_TABLES_MADE: set[tuple[int, str]] = set()
_TABLES_LOCK = threading.Lock()


def sql_leases(store: Any) -> LeaseBackend | None:
    """The leases of the :class:`~fleche.storage.Sql` store ``store``.

    A SQLite file lives on one host, so its leases are byte locks on a file
    beside it (:class:`~fleche.storage.lock_leases.LockLeases`); a
    PostgreSQL store may be shared by many hosts, so its leases are rows of
    its database (:class:`SqlLeases`), as are those of SQLite where POSIX
    locks are missing or the database is named by a ``file:`` URI.
    """
    url = store.engine.url
    backend = url.get_backend_name()
    if backend == "sqlite" and LOCKS_AVAILABLE:
        database = url.database or ""
        if database and not database.startswith("file:"):
            return LockLeases(Path(database + "-leases"))
    if backend in ("sqlite", "postgresql"):
        return SqlLeases(store=store)
    return None


@functools.cache
def _lease_table() -> Any:
    from sqlalchemy import Column, Double, MetaData, String, Table

    return Table(
        "fleche_leases",
        MetaData(),
        Column("key", String(64), primary_key=True),
        Column("owner", String(200), nullable=False),
        Column("expires", Double, nullable=False),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SqlLeases:
    """Leases as rows of a ``fleche_leases`` table in the database of a SQL store.

    Taking a lease is one upsert that succeeds only if no row exists or the
    row has expired, so exactly one process wins; taking over from a dead
    holder is one compare-and-set update.  Every statement is atomic by
    itself and runs on the store's own per-thread connection, without a
    transaction around it.  Expiry is reckoned by the database's clock, in
    seconds since the epoch, never by a host's: the hosts sharing a store
    need not agree on the time.
    """

    store: Any  # a fleche.storage.Sql
    expires: ClassVar[bool] = True
    across_hosts: ClassVar[bool] = True

    def __post_init__(self) -> None:
        engine = self.store.engine
        made = (os.getpid(), str(engine.url))
        if made in _TABLES_MADE:
            return
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.schema import CreateTable

        with _TABLES_LOCK:
            for attempt in range(5):
                try:
                    with engine.begin() as connection:
                        connection.execute(CreateTable(_lease_table(), if_not_exists=True))
                    break
                except DBAPIError:  # PostgreSQL: another process creating it at the same instant
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            _TABLES_MADE.add(made)

    def _change(self, statement: str, values: dict[str, Any]) -> int:
        """Run one changing statement; how many rows it changed."""
        runtime = self.store._runtime()
        return runtime.write(_statements(runtime.engine.dialect)[statement], values)

    def acquire(self, key: str, duration: float) -> str | None:
        # docstring inherited
        owner = json.dumps(lease_owner(), separators=(",", ":"))
        values = {"key": key, "owner": owner, "duration": duration}
        if self._change("take", values) == 1:
            return owner
        runtime = self.store._runtime()
        rows = runtime.read(_statements(runtime.engine.dialect)["holder"], {"key": key})
        holder = rows[0][0] if rows else None
        if holder is None or not holder_gone(_parse(holder)):
            return None
        return owner if self._change("take_from", {**values, "holder": holder}) == 1 else None

    def renew(self, key: str, token: str, duration: float) -> None:
        # docstring inherited
        self._change("renew", {"key": key, "owner": token, "duration": duration})

    def release(self, key: str, token: str) -> None:
        # docstring inherited
        self._change("release", {"key": key, "owner": token})


#: The database's clock in seconds since the epoch, as SQL: the one clock all its clients share.
_NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@functools.cache
def _statements(dialect: Any) -> dict[str, str]:
    """The lease statements as DB-API text in the paramstyle of ``dialect``, compiled once."""
    from sqlalchemy import text

    now = _NOW[dialect.name]
    statements = {
        # One upsert: a new row, or an expired one taken over; a live lease is left alone.
        "take": 'INSERT INTO fleche_leases ("key", owner, expires) '
        f"VALUES (:key, :owner, {now} + :duration) "
        'ON CONFLICT ("key") DO UPDATE SET owner = excluded.owner, expires = excluded.expires '
        f"WHERE fleche_leases.expires < {now}",
        "holder": 'SELECT owner FROM fleche_leases WHERE "key" = :key',
        "take_from": f"UPDATE fleche_leases SET owner = :owner, expires = {now} + :duration "
        'WHERE "key" = :key AND owner = :holder',
        "renew": f"UPDATE fleche_leases SET expires = {now} + :duration "
        'WHERE "key" = :key AND owner = :owner',
        "release": 'DELETE FROM fleche_leases WHERE "key" = :key AND owner = :owner',
    }
    return {name: str(text(sql).compile(dialect=dialect)) for name, sql in statements.items()}


def _parse(owner: str) -> Any:
    try:
        return json.loads(owner)
    except ValueError:
        return None
