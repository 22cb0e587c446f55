"""The files beside the entries of a file storage: temporary names, leftovers, entries set aside.

Every write goes to a temporary sibling (``.<name>.<unique>.tmp``) renamed
into place; a killed writer leaves one behind.  gc sets an entry aside
(``.<name>.<unique>.aside``) for an instant before removing it
(:func:`remove_unless_used`); a gc killed in that instant leaves a complete
entry aside.  Nothing reads those;
:meth:`FileStorage.strays <fleche.storage.file.FileStorage.strays>` finds
them and :func:`remove_stray` removes them, putting back an entry set
aside whose place is empty (it may be in use again).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: a lock file cannot be removed while open anyway
    fcntl = None  # type: ignore[assignment]

__all__ = ["leftover", "remove_stray", "remove_unless_used", "temporary_sibling"]

# Temporary names are unique per process (a random tag, drawn again in a forked
# child) and per write (a counter): no random bytes, so no system call, per write.
_tag = os.urandom(6).hex()
_writes = itertools.count()


def _new_tag() -> None:
    global _tag, _writes
    _tag, _writes = os.urandom(6).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_tag)


def temporary_sibling(final: str) -> str:
    """A fresh name beside ``final`` to write it under before renaming: ``.<name>.<unique>.tmp``."""
    directory, sep, name = final.rpartition(os.sep)  # the miss path: no os.path calls
    if os.altsep and os.altsep in name:  # Windows, written with the other separator
        (directory, name), sep = os.path.split(final), os.sep
    return f"{directory}{sep}.{name}.{_tag}{next(_writes):x}.tmp"


def leftover(name: str) -> bool:
    """Whether a file name is one a killed writer or gc may leave behind (see ``FileStorage.strays``)."""
    hidden = name.startswith(".")
    return (hidden and name.endswith((".tmp", ".lock", ".aside"))) or name.endswith(".stale")


def remove_unless_used(file: str, horizon: float) -> bool:
    """Remove the entry ``file`` unless it was written or touched after ``horizon``; whether it was.

    A writer that finds an entry already stored touches it instead of
    writing it again.  Setting the entry aside first (one atomic rename)
    makes the check and the removal one step for such writers: one that
    touches before the rename moves the time checked here, so the entry is
    put back; one that comes after finds no entry and writes it anew.
    """
    aside = temporary_sibling(file)[: -len(".tmp")] + ".aside"
    try:
        os.rename(file, aside)
        if os.stat(aside).st_mtime > horizon:
            os.replace(aside, file)  # in use again: the same content goes back
            return False
        os.unlink(aside)
    except FileNotFoundError:  # gone, or put back by a sweep of leftovers meanwhile
        return False
    return True


def remove_stray(path: Path) -> bool:
    """Remove a leftover found by ``FileStorage.strays``; whether it was removed.

    A lock file is removed only while locked here (``flock``, as
    :mod:`filelock` does), so one in use is never pulled from under its holder.
    """
    if path.name.endswith(".aside"):
        return _put_back_or_remove(path)
    if path.name.endswith(".lock") and fcntl is not None:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False  # held right now: not a leftover after all
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)  # drops the lock
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _put_back_or_remove(path: Path) -> bool:
    """An entry gc set aside and never finished with: back in its place if that is empty."""
    final = path.with_name(path.name[1:].rsplit(".", 2)[0])  # ".<name>.<unique>.aside"
    try:
        if final.exists():
            os.unlink(path)
        else:
            os.rename(path, final)  # an unused entry costs a later gc; a lost one, a result
    except FileNotFoundError:
        return False
    return True
