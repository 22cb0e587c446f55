"""One process's side of a SQL store: the engine, and a connection per thread.

The hot paths (save, load) run compiled SQL text on a raw DB-API connection
that each thread keeps for its lifetime; everything is re-created in a
forked child, and nothing of it is pickled.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .sql_schema import Statements, check_schema

__all__ = ["Runtime", "resolve_url"]

#: Attempts at a write that hit a lock or a deadlock (after SQLite's own busy wait).
ATTEMPTS = 5
BUSY_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    """Every SQLite connection: wait for locks, WAL, no fsync per commit, foreign keys."""
    cursor = dbapi_connection.cursor()
    for pragma in (
        f"busy_timeout = {BUSY_MS}",
        "journal_mode = WAL",
        "synchronous = NORMAL",
        "foreign_keys = ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def transient(err: BaseException) -> bool:
    """A lock timeout, a busy database or a deadlock: worth running the transaction again."""
    if getattr(err, "sqlstate", None) in ("40001", "40P01"):  # serialization failure, deadlock
        return True
    text = str(err).lower()
    return type(err).__name__ == "OperationalError" and ("locked" in text or "busy" in text)


class _Handle:
    """One thread's raw DB-API connection and cursor, closed when the thread lets go of it."""

    __slots__ = ("connection", "cursor", "pid")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.cursor = connection.cursor()
        self.pid = os.getpid()

    def __del__(self, _getpid: Callable[[], int] = os.getpid) -> None:
        # Never close a connection inherited through fork: it belongs to the parent.
        # ``os.getpid`` is bound at definition: module globals may be gone at shutdown.
        if self.pid == _getpid():
            try:
                self.connection.close()
            except Exception:  # noqa: BLE001 - a connection that will not close is dropped anyway
                pass


def _dispose(engine: Engine, pid: int) -> None:
    engine.dispose(close=pid == os.getpid())


def sqlite_file(path: Path) -> URL:
    """The URL of a SQLite file, its directory created."""
    path = path.expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return URL.create("sqlite", database=str(path))


def resolve_url(url: str | None, scratch: Callable[[], Path]) -> tuple[URL, str]:
    """The URL to connect to for ``Sql(url=...)`` and how to name the store in messages.

    ``scratch()`` gives the file of a private database, for ``None`` and
    in-memory SQLite URLs: every thread has its own connection, and an
    in-memory database is private to one connection.
    """
    if url is None:
        return sqlite_file(scratch()), "a scratch SQLite database"
    url = os.fspath(url)  # a pathlib.Path is a bare path too
    if "://" not in url:
        return sqlite_file(Path(url)), url
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return sqlite_file(scratch()), url
        if not parsed.database.startswith("file:"):
            return sqlite_file(Path(parsed.database)).set(query=parsed.query), url
    return parsed, parsed.render_as_string(hide_password=True)


class Runtime:
    """What one process holds for a store: the engine, compiled statements, per-thread connections."""

    def __init__(self, url: URL, where: str, echo: bool) -> None:
        self.pid = os.getpid()
        self.where = where
        self.sqlite = url.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"paramstyle": "named"} if self.sqlite else {}
        # Overflow connections instead of waiting: threads each hold their own anyway.
        self.engine = create_engine(url, echo=echo, max_overflow=-1, **options)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.statements = Statements(self.engine.dialect)
        self.local = threading.local()
        weakref.finalize(self, _dispose, self.engine, self.pid)
        for attempt in range(ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    check_schema(connection, where)
                break
            except DBAPIError:  # another process creating the same tables
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def handle(self) -> _Handle:
        """This thread's connection, opened on first use (with the engine's connect events)."""
        handle = getattr(self.local, "handle", None)
        if handle is None:
            proxied = self.engine.raw_connection()
            connection = proxied.driver_connection
            proxied.detach()  # ours for the thread's lifetime, not the pool's
            if self.sqlite:
                connection.isolation_level = None  # we issue BEGIN IMMEDIATE ourselves
            else:
                connection.autocommit = True  # reads need no transaction to close
            handle = self.local.handle = _Handle(connection)
        return handle

    def drop(self) -> None:
        """Forget this thread's connection (after it broke)."""
        self.local.__dict__.pop("handle", None)

    def read(self, statement: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of one statement on this thread's connection."""
        handle = self.handle()
        try:
            handle.cursor.execute(statement, parameters)
            return handle.cursor.fetchall()
        except BaseException:
            self._recover(handle)
            raise

    def write(self, work: Callable[[Any, Statements], int], transaction: bool = True) -> int:
        """Run ``work(cursor, statements)`` in one transaction, again if it met a lock.

        ``transaction=False`` for work that is a single statement (atomic by itself).
        """
        for attempt in range(ATTEMPTS):
            handle = self.handle()
            cursor = handle.cursor
            try:
                if transaction:
                    cursor.execute(self.statements.begin)
                done = work(cursor, self.statements)
                if transaction:
                    handle.connection.commit()
                return done
            except BaseException as err:
                self._recover(handle)
                if attempt == ATTEMPTS - 1 or not transient(err):
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _recover(self, handle: _Handle) -> None:
        try:
            handle.connection.rollback()
        except Exception:
            self.drop()  # a broken connection: the next operation opens a new one
            return
        if getattr(handle.connection, "closed", False):
            self.drop()
