"""The parts of the containers a store of files holds, known without opening every file.

gc keeps the parts of every container it keeps.  Finding them by opening
each value costs a read per value (a million values: over a minute), so
the value storage of pickle files writes, before each container that has
parts, one record ``<time> <container> <count> <part>…`` to a log beside
the values: ``root/children/<writer>.log``, one file per process (no two
writers ever share one, on a network file system too), each record one
``write`` of one line.  The record comes first, so a container on disk
always has one; a record whose container was never written, or was removed
since, only keeps its parts while that container is kept (or, for a
record younger than gc's grace, while the container may be being written).

The logs are complete only if every container was written by a writer
keeping them: ``root/children/complete`` says so.  A writer that found the
store empty at its first write creates it with its first record; in a
store written by an older fleche (or one with no container yet), the
first gc opens every value once, writes what it found as a log of its
own, then the marker.  A store shared with processes running a fleche older than
this must not be collected by a newer one: their containers are not logged.

A writer that finds an old, unreferenced part already stored, after gc
read the logs, touches it instead of writing it again; gc's removal sets
each value aside and reads its time again, so such a part is kept (see
:meth:`~fleche.storage.keys.KeyManagement.evict_unused`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Iterator

from ..digest import DIGEST_LENGTH, Digest
from .base import StorageBackend
from .file import sync

__all__ = ["COMPLETE", "LOGS", "ChildrenLog"]

#: The directory of the logs, under the root of the values.
LOGS = "children"
#: The marker saying the logs name the parts of every container stored.
COMPLETE = "complete"
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)

# One log per process: a random name, drawn again in a forked child.
_writer = os.urandom(8).hex()


def _new_writer() -> None:
    global _writer
    _writer = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_writer)


def _records(data: bytes, since: float | None) -> Iterator[tuple[str, list[str], bool]]:
    """``(container, parts, young)`` of each whole record in a log (a torn one is skipped)."""
    for line in data.decode("ascii", "replace").split("\n"):
        fields = line.split()
        if len(fields) < 4 or not fields[2].isdigit() or int(fields[2]) != len(fields) - 3:
            continue
        if any(len(f) != DIGEST_LENGTH for f in fields[1:2] + fields[3:]):
            continue
        try:
            written = float(fields[0])
        except ValueError:
            continue
        yield fields[1], fields[3:], since is not None and written >= since


@dataclasses.dataclass(frozen=True)
class ChildrenLog(StorageBackend):
    """Logs the parts of each container written; answers ``reachable`` from the logs.

    A mixin between :class:`~fleche.storage.destructuring.DestructuringMixin`
    (which tells it of each entry with parts it writes) and a
    :class:`~fleche.storage.file.FileStorage` backend (it uses the backend's
    ``root`` and ``fsync``, and learns of its first write).
    """

    #: Whether the store held no value at this instance's first write (then: marker still due).
    _new_store: list[bool] = dataclasses.field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def _first_write(self) -> None:
        # Called by the file backend before its first write: is the store new?
        if not self._new_store:
            self._new_store.append(next(iter(self.list()), None) is None)

    def _writing_parts(self, key: Digest, parts: list[Digest]) -> None:
        # Called by DestructuringMixin before it writes an entry that has parts.
        self._first_write()
        if not self._contains(key):
            self._log(key, parts)

    def _logs(self) -> str:
        return os.path.join(self.root, LOGS)  # type: ignore[attr-defined]

    def _log(self, key: Digest, parts: list[Digest]) -> None:
        """Append the record of one container to this process's log, before the container."""
        line = f"\n{int(time.time())} {key} {len(parts)} {' '.join(parts)}".encode()
        path = os.path.join(self._logs(), _writer + ".log")
        try:
            fd = os.open(path, _APPEND, 0o666)
        except FileNotFoundError:
            os.makedirs(self._logs(), exist_ok=True)
            fd = os.open(path, _APPEND, 0o666)
        try:
            if os.write(fd, line) != len(line):
                raise OSError(f"fleche: a short write to {path} (is the disk full?)")
            if self.fsync:  # type: ignore[attr-defined]
                os.fsync(fd)
        finally:
            os.close(fd)
        if self._new_store[0]:  # every container of this store is logged: say so, once
            _mark_complete(self._logs())
            self._new_store[0] = False

    def _reachable(self, roots: Iterable[Digest], since: float | None) -> set[Digest]:
        # The parts of every container from the logs, then set operations: no value is opened.
        parts, young = self._index(since)
        found = set(roots)
        found.update(young)
        frontier = found.intersection(parts)
        while frontier:
            below = {Digest._trusted(k) for key in frontier for k in parts[key]}
            below -= found
            found |= below
            frontier = below.intersection(parts)
        return found

    def _index(self, since: float | None) -> tuple[dict[str, list[str]], list[Digest]]:
        """The parts of each logged container, and the containers logged since ``since``."""
        logs = self._logs()
        parts = {} if os.path.exists(os.path.join(logs, COMPLETE)) else self._build()
        young: list[Digest] = []
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else ():
            if not name.endswith(".log"):
                continue
            try:
                with open(os.path.join(logs, name), "rb") as log:
                    data = log.read()
            except FileNotFoundError:
                continue
            for key, keys, recent in _records(data, since):
                parts[key] = keys
                if recent:
                    young.append(Digest._trusted(key))
        return parts, young

    def _build(self) -> dict[str, list[str]]:
        """The parts of a store written before logs were kept, each value opened once; kept as a log."""
        parts = {}
        for key in self.list():
            try:
                with self._operation_context(key):
                    found = self._children(key)
            except KeyError:
                continue  # removed meanwhile, or unreadable (warned): nothing to keep below it
            if found:
                parts[key] = found
        self.index_children(parts)
        return parts

    def index_children(self, parts: dict[str, list[str]]) -> None:
        """Keep ``parts``, every container listed and its parts, as the log of a store without one.

        What gc would otherwise build by opening every value: a full
        ``verify`` (which reads them all anyway) hands it over.
        """
        logs = self._logs()
        if os.path.exists(os.path.join(logs, COMPLETE)):
            return
        final = os.path.join(logs, f"built-{_writer}.log")
        temporary = os.path.join(logs, f".built-{_writer}.log.tmp")  # a stray for gc if killed
        with contextlib.suppress(OSError):  # a store this process may not write to: not kept
            os.makedirs(logs, exist_ok=True)
            with open(temporary, "w", encoding="ascii") as log:
                log.writelines(f"\n0 {k} {len(v)} {' '.join(v)}" for k, v in parts.items())
            if self.fsync:  # type: ignore[attr-defined]
                sync(temporary)
            os.replace(temporary, final)
            _mark_complete(logs)


def _mark_complete(logs: str) -> None:
    os.close(os.open(os.path.join(logs, COMPLETE), os.O_WRONLY | os.O_CREAT, 0o666))
