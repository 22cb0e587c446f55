"""Leases: which process computes a call, recorded in the store all of them share.

Before running a missed call, a process takes the *lease* of its key (see
:mod:`fleche.single_flight`): a lease file ``<calls root>/leases/<key>``
created exclusively, a lock on one byte of ``<database>-leases`` next to a
SQLite call store, or a row of the ``fleche_leases`` table of a PostgreSQL
one.  Other processes wait until the call is stored or the lease is gone
or has expired, and then take over.

A lease file or row expires :data:`LEASE_SECONDS` after it was last renewed
(the environment variable ``FLECHE_LEASE_SECONDS`` overrides it); the
holder renews it in the background while the body runs, so a long
computation keeps it, and a crashed holder blocks the others for one
expiry at most (less on its own host: a lease whose process is gone is
taken over at once; a lease file its holder was killed before writing
into, after :data:`UNREADABLE_SECONDS`).  A byte lock never expires: the system drops it the
moment its process ends.  Leases decide only who computes, never what is
stored — writes are atomic and content-addressed — so a failure of the
lease machinery costs a :class:`~fleche.errors.CacheWarning` and, at
worst, a duplicate computation, never the user's result.

A cache or a call storage can provide its own lease backend with a
``leases()`` method returning a :class:`LeaseBackend` (or ``None``).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, Protocol

import xxhash

try:
    import fcntl
except ImportError:  # Windows: SQLite stores keep their leases in a table
    fcntl = None  # type: ignore[assignment]

from .caches import Cache, CachePool, CacheStack, RefreshingCache, WrapperCache
from .errors import CacheWarning
from .storage.file import FileStorage

__all__ = [
    "LEASE_SECONDS",
    "FileLeases",
    "LeaseBackend",
    "LockLeases",
    "SqlLeases",
    "lease_seconds",
    "leases_of",
]

#: After how long (seconds) a lease file that holds no readable owner is taken over.
UNREADABLE_SECONDS = 3.0
#: How long (seconds) a lease lasts unless renewed; ``FLECHE_LEASE_SECONDS`` overrides it.
LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    """The lease duration in force: ``FLECHE_LEASE_SECONDS``, else :data:`LEASE_SECONDS`."""
    value = os.environ.get("FLECHE_LEASE_SECONDS")
    try:
        return float(value) if value else LEASE_SECONDS
    except ValueError:
        warnings.warn(
            f"FLECHE_LEASE_SECONDS={value!r} is not a number of seconds; using {LEASE_SECONDS:g}",
            CacheWarning,
            stacklevel=2,
        )
        return LEASE_SECONDS


class LeaseBackend(Protocol):
    """Where the leases of one store are recorded; every method is safe across processes."""

    #: Whether a lease lapses unless renewed (the holder then renews it while the body runs).
    expires: ClassVar[bool]

    def acquire(self, key: str, duration: float) -> Any | None:
        """Take the lease of ``key`` for ``duration`` seconds; a token, or ``None`` if another holds it.

        An expired lease, or one whose holder is known to be dead, is taken over.
        """

    def renew(self, key: str, token: Any, duration: float) -> None:
        """Extend a lease held with ``token`` by ``duration`` seconds from now."""

    def release(self, key: str, token: Any) -> None:
        """Give a lease back (only if ``token`` still holds it)."""


# -- who holds a lease ------------------------------------------------------------


@functools.cache
def _here() -> tuple[str, str]:
    """This host and its pid namespace: where a pid means the same process."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return socket.gethostname(), namespace


def _owner() -> dict[str, Any]:
    host, namespace = _here()
    return {"host": host, "pidns": namespace, "pid": os.getpid(), "nonce": os.urandom(8).hex()}


def _dead(owner: Any) -> bool:
    """Whether the process described by ``owner`` is known to be gone (same host only)."""
    if not isinstance(owner, dict) or [owner.get("host"), owner.get("pidns")] != list(_here()):
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. another user's live process
    return False


# -- files --------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _FileToken:
    fd: int
    owner: str
    released: bool = False  # its descriptor is closed (and its number maybe reused)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileLeases:
    """Leases as files ``root/<key>``, created with ``O_CREAT | O_EXCL``.

    The file holds its owner (host, pid namespace, pid) and its duration;
    it expires ``duration`` seconds after its modification time, which the
    holder renews through its open descriptor (so it can never renew a
    lease another process took over).  Clocks of hosts sharing the
    directory are assumed to agree to well within a lease duration.
    """

    root: Path
    expires: ClassVar[bool] = True

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key)

    def acquire(self, key: str, duration: float) -> _FileToken | None:
        # docstring inherited
        path = self._path(key)
        owner = json.dumps({**_owner(), "duration": duration})
        for _ in range(4):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileNotFoundError:
                os.makedirs(self.root, exist_ok=True)
                continue
            except FileExistsError:
                if not self._take_over(path, duration):
                    return None
                continue
            try:
                os.write(fd, owner.encode())
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            return _FileToken(fd, owner)
        return None

    def _take_over(self, path: str, duration: float) -> bool:
        """Remove the lease at ``path`` if it is stale; whether the way is free now."""
        try:
            seen = os.stat(path)
            with open(path, "rb") as file:
                content = file.read()
        except FileNotFoundError:
            return True
        try:
            found = json.loads(content)
            duration = float(found.get("duration", duration))
        except (ValueError, TypeError, AttributeError):
            # Being written right now (for microseconds), or its writer was killed
            # between creating and writing it: dead once a live writer would have
            # long finished, not after a whole expiry.
            found, duration = None, min(duration, UNREADABLE_SECONDS)
        if seen.st_mtime + duration > time.time() and not _dead(found):
            return False
        # Move it aside first, so that of several processes taking over only one
        # succeeds, and check it is still the stale lease that was judged.
        aside = f"{path}.{os.urandom(6).hex()}.stale"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True
        moved = os.stat(aside)
        if (moved.st_ino, moved.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            try:  # a fresh lease was moved by mistake: put it back unless replaced
                os.link(aside, path)
            except OSError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    def renew(self, key: str, token: _FileToken, duration: float) -> None:
        # docstring inherited
        if token.released:
            return
        if os.utime in os.supports_fd:
            os.utime(token.fd)
        else:  # pragma: no cover - platforms without futimens
            os.utime(self._path(key))

    def release(self, key: str, token: _FileToken) -> None:
        # docstring inherited
        if token.released:
            return
        token.released = True
        path = self._path(key)
        try:
            mine = os.fstat(token.fd)
            current = os.stat(path)
            if (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino):
                os.unlink(path)
        except FileNotFoundError:
            pass  # taken over after it expired, and released since
        finally:
            os.close(token.fd)


# -- byte locks ---------------------------------------------------------------------

#: Lock file -> this process's descriptor of it, the most recently used last.
_lock_files: dict[str, int] = {}
#: (lock file, key) -> the token of the thread of this process that holds the lease.
_locked: dict[tuple[str, str], tuple[int, int]] = {}
_locks_guard = threading.Lock()
#: Lock files kept open beyond those with a lease held (a process may open many stores).
IDLE_LOCK_FILES = 16


def _lock_file(path: str) -> int:
    """This process's descriptor of the lock file ``path`` (call with ``_locks_guard`` held).

    Closing a file drops every lock the process holds on it, so only files
    on which no lease is held are closed, the least recently used first.
    """
    fd = _lock_files.pop(path, None)
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    _lock_files[path] = fd
    if len(_lock_files) > IDLE_LOCK_FILES:
        busy = {file for file, _ in _locked}
        for file in [f for f in _lock_files if f not in busy][:-IDLE_LOCK_FILES]:
            os.close(_lock_files.pop(file))
    return fd


def _forget_locks() -> None:
    """A forked child holds none of its parent's locks (POSIX locks are not inherited)."""
    global _locks_guard
    for fd in _lock_files.values():
        os.close(fd)  # drops only this child's locks, of which it has none
    _lock_files.clear()
    _locked.clear()
    _locks_guard = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks)


@dataclasses.dataclass(frozen=True)
class LockLeases:
    """Leases as POSIX locks on single bytes of one file, for stores that live on one host.

    The lease of a key is an exclusive ``fcntl`` lock on the byte of ``path``
    at an offset hashed from the key (the file stays empty; two keys share
    a byte by a 2**-62 chance).  Taking and giving back a lease writes
    nothing to disk, and the system drops a process's locks the moment it
    ends, so a lease never expires while its holder lives and never
    outlives it: ``duration`` is not used.  These
    are the locks SQLite itself rests on, so they work wherever a SQLite
    store does.  A POSIX lock belongs to a process, not a thread, and any
    close of the file drops all of them: each process keeps one descriptor
    per lock file, open while it holds a lease there (and a few more), and
    a table of the leases its own threads hold.
    """

    path: Path
    expires: ClassVar[bool] = False

    def acquire(self, key: str, duration: float) -> tuple[int, int] | None:
        # docstring inherited
        path = str(self.path)
        with _locks_guard:
            if (path, key) in _locked:
                return None  # another thread of this process holds it
            fd = _lock_file(path)
            token = (fd, xxhash.xxh3_64_intdigest(key.encode()) >> 2)  # 62 bits: a valid offset
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, token[1])
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EAGAIN):
                    return None  # another process holds it
                raise
            _locked[path, key] = token
            return token

    def renew(self, key: str, token: tuple[int, int], duration: float) -> None:
        # docstring inherited: a lock lasts as long as its process
        return None

    def release(self, key: str, token: tuple[int, int]) -> None:
        # docstring inherited
        slot = (str(self.path), key)
        with _locks_guard:
            if _locked.get(slot) is token:
                del _locked[slot]
                fd, offset = token
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)


# -- SQL ----------------------------------------------------------------------------

_TABLES_MADE: set[tuple[int, str]] = set()
_TABLES_LOCK = threading.Lock()


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
    transaction around it.  Expiry uses the clock of the process (hosts are
    assumed to agree to well within a duration).
    """

    store: Any  # a fleche.storage.Sql
    expires: ClassVar[bool] = True

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
        owner = json.dumps(_owner())
        now = time.time()
        values = {"key": key, "owner": owner, "expires": now + duration, "now": now}
        if self._change("take", values) == 1:
            return owner
        runtime = self.store._runtime()
        rows = runtime.read(_statements(runtime.engine.dialect)["holder"], {"key": key})
        holder = rows[0][0] if rows else None
        if holder is None or not _dead(_parse(holder)):
            return None
        values = {"key": key, "owner": owner, "expires": now + duration, "holder": holder}
        return owner if self._change("take_from", values) == 1 else None

    def renew(self, key: str, token: str, duration: float) -> None:
        # docstring inherited
        self._change("renew", {"key": key, "owner": token, "expires": time.time() + duration})

    def release(self, key: str, token: str) -> None:
        # docstring inherited
        self._change("release", {"key": key, "owner": token})


@functools.cache
def _statements(dialect: Any) -> dict[str, str]:
    """The lease statements as DB-API text in the paramstyle of ``dialect``, compiled once."""
    from sqlalchemy import text

    statements = {
        # One upsert: a new row, or an expired one taken over; a live lease is left alone.
        "take": 'INSERT INTO fleche_leases ("key", owner, expires) VALUES (:key, :owner, :expires) '
        'ON CONFLICT ("key") DO UPDATE SET owner = excluded.owner, expires = excluded.expires '
        "WHERE fleche_leases.expires < :now",
        "holder": 'SELECT owner FROM fleche_leases WHERE "key" = :key',
        "take_from": 'UPDATE fleche_leases SET owner = :owner, expires = :expires WHERE "key" = :key AND owner = :holder',
        "renew": 'UPDATE fleche_leases SET expires = :expires WHERE "key" = :key AND owner = :owner',
        "release": 'DELETE FROM fleche_leases WHERE "key" = :key AND owner = :owner',
    }
    return {name: str(text(sql).compile(dialect=dialect)) for name, sql in statements.items()}


def _parse(owner: str) -> Any:
    try:
        return json.loads(owner)
    except ValueError:
        return None


# -- which store holds the leases of a cache ------------------------------------------


def leases_of(cache: Any) -> LeaseBackend | None:
    """The lease backend of the store a cache writes its call records to, if it has one.

    Files under a directory (``root``) and SQL stores have leases; memory
    and void stores, read-only and refreshing caches and pools of caches
    have none (``None``: only in-process deduplication).
    A stack uses the lowest layer that has leases: the one shared widest.
    """
    provide = getattr(cache, "leases", None)
    if callable(provide):
        return provide()
    if cache.read_only or isinstance(cache, (RefreshingCache, CachePool)):
        return None
    if isinstance(cache, WrapperCache):
        return leases_of(cache.cache)
    if isinstance(cache, CacheStack):
        for layer in reversed(cache.layers):
            found = leases_of(layer)
            if found is not None:
                return found
        return None
    if isinstance(cache, Cache):
        return _storage_leases(cache.calls)
    return None


def _storage_leases(storage: Any) -> LeaseBackend | None:
    provide = getattr(storage, "leases", None)
    if callable(provide):
        return provide()
    if not storage.persistent:
        return None
    if isinstance(storage, FileStorage):
        return FileLeases(root=Path(storage.root) / "leases")
    return None


def sql_leases(store: Any) -> LeaseBackend | None:
    """The leases of a :class:`~fleche.storage.Sql` store (it asks once per process).

    A SQLite file lives on one host, so its leases are byte locks on a file
    beside it (:class:`LockLeases`); a PostgreSQL store may be shared by
    many hosts, so its leases are rows of its database (:class:`SqlLeases`),
    as are those of SQLite where POSIX locks are missing or the database is
    named by a ``file:`` URI.
    """
    url = store.engine.url
    backend = url.get_backend_name()
    if backend == "sqlite" and fcntl is not None:
        database = url.database or ""
        if database and not database.startswith("file:"):
            return LockLeases(Path(database + "-leases"))
    if backend in ("sqlite", "postgresql"):
        return SqlLeases(store=store)
    return None
