"""Leases as POSIX byte locks on a file beside a SQLite database: nothing written, nothing to expire.

A SQLite store lives on one host, so the lease of a key can be a lock the
system holds for the process and drops the moment it ends, however it ends.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import threading
from pathlib import Path
from typing import ClassVar

import xxhash

try:
    import fcntl
except ImportError:  # Windows: SQLite stores keep their leases in a table
    fcntl = None  # type: ignore[assignment]

__all__ = ["IDLE_LOCK_FILES", "LOCKS_AVAILABLE", "LockLeases"]

#: Whether this platform has POSIX byte locks (``fcntl``).
LOCKS_AVAILABLE = fcntl is not None
#: Lock files kept open beyond those with a lease held (a process may open many stores).
IDLE_LOCK_FILES = 16

# Bound once: two leases a miss.
_offset = xxhash.xxh3_64_intdigest
if fcntl is not None:
    _lockf, _TRY_EXCLUSIVE, _UNLOCK = fcntl.lockf, fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN

#: Lock file -> this process's descriptor of it, the most recently used last.
_lock_files: dict[str, int] = {}
#: (lock file, key) -> the token of the thread of this process that holds the lease.
_locked: dict[tuple[str, str], tuple[int, int]] = {}
_locks_guard = threading.Lock()


def _open_lock_file(path: str) -> int:
    """Open the lock file ``path`` for this process and keep its descriptor (``_locks_guard`` held).

    Closing a file drops every lock the process holds on it, so only files
    on which no lease is held are closed, the least recently used first.
    """
    fd = _lock_files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
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
    outlives it: ``duration`` is not used.  These are the locks SQLite
    itself rests on, so they work wherever a SQLite store does.  A POSIX
    lock belongs to a process, not a thread, and any close of the file
    drops all of them: each process keeps one descriptor per lock file,
    open while it holds a lease there (and a few more), and a table of the
    leases its own threads hold.
    """

    path: Path
    expires: ClassVar[bool] = False
    across_hosts: ClassVar[bool] = False

    @functools.cached_property
    def _file(self) -> str:
        return str(self.path)

    def acquire(self, key: str, duration: float) -> tuple[int, int] | None:
        # docstring inherited
        path = self._file
        slot = (path, key)
        with _locks_guard:
            if slot in _locked:
                return None  # another thread of this process holds it
            fd = _lock_files.pop(path, None)
            if fd is None:
                fd = _open_lock_file(path)
            else:
                _lock_files[path] = fd  # now the most recently used
            token = (fd, _offset(key.encode()) >> 2)  # 62 bits: a valid offset
            try:
                _lockf(fd, _TRY_EXCLUSIVE, 1, token[1])
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EAGAIN):
                    return None  # another process holds it
                raise
            _locked[slot] = token
            return token

    def renew(self, key: str, token: tuple[int, int], duration: float) -> None:
        # docstring inherited: a lock lasts as long as its process
        return None

    def release(self, key: str, token: tuple[int, int]) -> None:
        # docstring inherited
        slot = (self._file, key)
        with _locks_guard:
            if _locked.get(slot) is token:
                del _locked[slot]
                _lockf(token[0], _UNLOCK, 1, token[1])
