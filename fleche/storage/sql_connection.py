"""One process's side of a SQL store: the engine, and a connection per thread.

The hot paths (save, load) run compiled SQL text on a raw DB-API connection
that each thread keeps for its lifetime; everything is re-created in a
forked child, and nothing of it is pickled.

A SQLite commit only appends pages to the write-ahead log; copying them into
the database (a *checkpoint*, with a sync to disk) is done by a background
thread every :data:`CHECKPOINT_EVERY` commits, as SQLite's documentation
suggests, instead of by whichever commit crosses SQLite's threshold.
SQLite's own automatic checkpoint stays on, at :data:`WAL_LIMIT_PAGES`, in
case the background one cannot keep up (e.g. a reader holds on to old pages).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ..digest import DIGEST_LENGTH, Digest
from .sql_metadata import to_json
from .sql_migrations import check_schema
from .sql_schema import Statements
from .sqlite_wal import enter_wal

__all__ = ["Runtime", "resolve_url"]

#: A statement's DB-API parameters: by name, or by position (a record's save on SQLite).
Parameters = dict[str, Any] | tuple[Any, ...]

_new_str = str.__new__

#: Attempts at a write that hit a lock or a deadlock (after SQLite's own busy wait).
ATTEMPTS = 5
BUSY_MS = 30_000
#: Commits of one process between two background checkpoints of a SQLite store.
CHECKPOINT_EVERY = 100
#: Log pages after which a SQLite commit checkpoints by itself (40 MB with 4 KiB pages).
WAL_LIMIT_PAGES = 10_000
#: Seconds without a checkpoint to run after which the checkpoint thread ends.
CHECKPOINT_IDLE = 5.0


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    """Every SQLite connection: wait for locks, WAL, no fsync per commit, foreign keys."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
    enter_wal(cursor)
    for pragma in (
        "synchronous = NORMAL",
        "foreign_keys = ON",
        f"wal_autocheckpoint = {WAL_LIMIT_PAGES}",
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

    __slots__ = ("__weakref__", "connection", "cursor", "pid")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.cursor = connection.cursor()
        self.pid = os.getpid()
        # A finalizer, not ``__del__``: when the store is collected as part of a
        # reference cycle, it runs before the connection's own ``__del__`` (which
        # would warn that it was dropped open).
        weakref.finalize(self, _close, connection, self.pid)


def _close(connection: Any, pid: int, _getpid: Callable[[], int] = os.getpid) -> None:
    # Never close a connection inherited through fork: it belongs to the parent.
    # ``os.getpid`` is bound at definition: module globals may be gone at shutdown.
    if pid == _getpid():
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - a connection that will not close is dropped anyway
            pass


def _own_connection(engine: Engine) -> Any:
    """A raw DB-API connection of ``engine`` (set up by its connect events), taken from its pool."""
    proxied = engine.raw_connection()
    connection = proxied.driver_connection
    proxied.detach()  # ours for good, not the pool's
    return connection


#: Held while a checkpoint thread is inside SQLite, and by a fork: a child forked while
#: another thread is inside SQLite may inherit one of its mutexes held, and hang.
_CHECKPOINTING = threading.Lock()
os.register_at_fork(
    before=_CHECKPOINTING.acquire,
    after_in_parent=_CHECKPOINTING.release,
    after_in_child=_CHECKPOINTING.release,
)


class _Checkpointer:
    """A thread that checkpoints one SQLite store when asked, and ends when not asked for a while.

    Passive checkpoints never block writers or readers; one that finds
    another process checkpointing simply copies less.  A failure is left to
    SQLite's automatic checkpoint: nothing is lost by skipping one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.wanted = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def request(self) -> None:
        with self.lock:
            self.wanted.set()
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="fleche-sqlite-checkpoint", daemon=True
                )
                self.thread.start()

    def _run(self) -> None:
        connection = None
        try:
            while True:
                self.wanted.wait(CHECKPOINT_IDLE)
                with self.lock:
                    if not self.wanted.is_set():
                        self.thread = None
                        return
                    self.wanted.clear()
                with _CHECKPOINTING:  # never inside SQLite while the process forks
                    if connection is None:
                        connection = _own_connection(self.engine)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # noqa: BLE001 - e.g. the store was removed; SQLite checkpoints itself
            with self.lock:
                self.thread = None
        finally:
            if connection is not None:
                connection.close()


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
        self.engine = create_engine(
            url, echo=echo, max_overflow=-1, json_serializer=to_json, **options
        )
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.statements = Statements(self.engine.dialect)
        self.local = threading.local()
        self.commits = 0
        self.checkpointer = _Checkpointer(self.engine) if self.sqlite else None
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
            connection = _own_connection(self.engine)  # for the thread's lifetime
            if self.sqlite:
                connection.isolation_level = None  # autocommit: each write is one statement
            else:
                connection.autocommit = True  # reads need no transaction to close
            handle = self.local.handle = _Handle(connection)
        return handle

    def drop(self) -> None:
        """Forget this thread's connection (after it broke)."""
        self.local.__dict__.pop("handle", None)

    def read(self, statement: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of one statement on this thread's connection."""
        handle = getattr(self.local, "handle", None) or self.handle()
        try:
            handle.cursor.execute(statement, parameters)
            return handle.cursor.fetchall()
        except BaseException:
            self._recover(handle)
            raise

    def pages(self, statement: str, bounds: dict[str, str], page: int) -> Iterator[list[Any]]:
        """The rows of a paged statement keyed in order, ``page`` at a time after ``bounds['after']``.

        No connection is held between pages.  A range's lower bound
        (``bounds['low']``) moves up with ``after``: SQLite seeks by one of
        the two, and by ``low`` alone every page would scan from the start.
        """
        while True:
            rows = self.read(statement, bounds)
            yield rows
            if len(rows) < page:
                return
            bounds["after"] = rows[-1][0]
            if "low" in bounds:
                bounds["low"] = bounds["after"]

    def keys(self, statement: str, bounds: dict[str, str], page: int) -> Iterator[Digest]:
        """The keys a paged key statement reads (:meth:`pages`), as digests."""
        for rows in self.pages(statement, bounds, page):
            keys = [key for (key,) in rows]
            yield from map(_new_str, repeat(Digest), keys) if _digests(keys) else map(Digest, keys)

    def hold(self, statement: str, parameters: dict[str, Any]) -> None:
        """Keep a changing statement for this thread's next :meth:`write`, in its transaction.

        What lets a miss commit its small values with its record: one
        transaction, and a record never visible without its values.
        """
        held = self.local.__dict__.setdefault("held", [])
        held.append((statement, parameters))

    def flush(self) -> None:
        """Run the statements this thread holds (:meth:`hold`) now, in one transaction."""
        held = self.local.__dict__.pop("held", None)
        if held:
            self._written(held)

    def give_held(self, held: list[tuple[str, Parameters]]) -> None:
        """Hold the statements ``held`` (collected in any thread) for this thread's next write."""
        self.local.__dict__.setdefault("held", []).extend(held)

    def write(self, statement: str, parameters: Parameters) -> int:
        """Run one changing statement (atomic by itself), again if it met a lock; rows changed.

        With statements held by this thread, they run first, in one transaction with it.
        The first attempt is made here: the miss path runs two Python calls per write.
        """
        held = self.local.__dict__.pop("held", None)
        if held:
            held.append((statement, parameters))
            writes = held
        else:
            writes = [(statement, parameters)]
        try:
            return self._attempt(writes)
        except BaseException as err:
            if not transient(err):
                raise
        return self._written(writes, 1)

    def _written(self, writes: list[tuple[str, Parameters]], first: int = 0) -> int:
        """:meth:`_attempt` again after a pause each time it meets a lock, from attempt ``first``."""
        for attempt in range(first, ATTEMPTS):
            if attempt:
                time.sleep(0.01 * 2 ** (attempt - 1))
            try:
                return self._attempt(writes)
            except BaseException as err:
                if attempt == ATTEMPTS - 1 or not transient(err):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, writes: list[tuple[str, Parameters]]) -> int:
        """Run ``writes`` once on this thread's connection: one statement, or a transaction of all.

        Returns the rows the last one changed; a failure is rolled back
        (the connection dropped if broken) before it is raised.
        """
        handle = getattr(self.local, "handle", None) or self.handle()
        cursor = handle.cursor
        try:
            if len(writes) == 1:
                changed = cursor.execute(*writes[0]).rowcount
            else:
                cursor.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
                for statement, parameters in writes:
                    changed = cursor.execute(statement, parameters).rowcount
                cursor.execute("COMMIT")
        except BaseException:
            if len(writes) == 1:
                self._recover(handle)
            else:
                self._abort(handle)
            raise
        # Not locked: a count lost to a race only delays one checkpoint.
        self.commits += 1
        if self.checkpointer is not None and self.commits % CHECKPOINT_EVERY == 0:
            self.checkpointer.request()
        return changed

    def _abort(self, handle: _Handle) -> None:
        """End a failed explicit transaction (an autocommit connection keeps it open otherwise)."""
        try:
            handle.cursor.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - none open, or a broken connection (dropped below)
            pass
        self._recover(handle)

    def _recover(self, handle: _Handle) -> None:
        try:
            handle.connection.rollback()
        except Exception:
            self.drop()  # a broken connection: the next operation opens a new one
            return
        if getattr(handle.connection, "closed", False):
            self.drop()


def _digests(keys: list[str]) -> bool:
    """Whether ``keys`` are all full lowercase hex digests: a page checked at once, not key by key."""
    joined = "".join(keys)
    if len(joined) != DIGEST_LENGTH * len(keys) or joined.lower() != joined:
        return False
    try:  # hex digits only: whitespace, which fromhex skips, would give fewer bytes
        return len(bytes.fromhex(joined)) * 2 == len(joined)
    except ValueError:
        return False
