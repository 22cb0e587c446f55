"""Leases as files in a directory beside a file store's call records.

The lease of a key is the file ``<calls root>/leases/<key>``, created
exclusively: whoever creates it holds the lease.  It names its owner, so a
lease whose process is gone is taken over at once on its host, and it
expires unless its holder renews it (see :mod:`fleche.storage.leases`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import ClassVar

from .leases import holder_gone, lease_owner

__all__ = ["UNREADABLE_SECONDS", "FileLeases"]

#: After how long (seconds) a lease file that holds no readable owner is taken over.
UNREADABLE_SECONDS = 3.0


@dataclasses.dataclass(eq=False)
class FileToken:
    """A lease file this process created: its open descriptor and the owner written into it."""

    fd: int
    owner: str
    released: bool = False  # its descriptor is closed (and its number maybe reused)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileLeases:
    """Leases as files ``root/<key>``, created with ``O_CREAT | O_EXCL``.

    The file holds its owner (host, boot id, pid namespace, pid) and its
    duration; it expires ``duration`` seconds after its modification time,
    which the holder renews through its open descriptor (so it can never
    renew a lease another process took over).  They are made for a store
    on one host: on a directory that several hosts share (NFS), a holder
    elsewhere is judged by expiry alone and the hosts' clocks (and the file
    server's) must agree to well within a lease duration; a store shared by
    many hosts keeps its calls in PostgreSQL instead
    (:class:`~fleche.storage.sql_leases.SqlLeases`).
    """

    root: Path
    expires: ClassVar[bool] = True
    across_hosts: ClassVar[bool] = False

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key)

    def acquire(self, key: str, duration: float) -> FileToken | None:
        # docstring inherited
        path = self._path(key)
        owner = json.dumps({**lease_owner(), "duration": duration})
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
            return FileToken(fd, owner)
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
        if seen.st_mtime + duration > time.time() and not holder_gone(found):
            return False
        return _set_aside(path, seen)

    def renew(self, key: str, token: FileToken, duration: float) -> None:
        # docstring inherited
        if token.released:
            return
        if os.utime in os.supports_fd:
            os.utime(token.fd)
        else:  # pragma: no cover - platforms without futimens
            os.utime(self._path(key))

    def release(self, key: str, token: FileToken) -> None:
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


def _set_aside(path: str, seen: os.stat_result) -> bool:
    """Remove the stale lease ``seen`` at ``path``; whether the way is free now.

    It is moved aside first, so that of several processes taking over only
    one succeeds, and checked to still be the lease that was judged stale.
    """
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
