"""One file per key under a directory: the base of every file-backed storage.

A key ``a3f9c1…`` lives at ``root/a3f/9c1…``: one fan-out level of three
hex characters, 4,096 directories.  A lookup is one path, and a short
digest (``expand``/``shrink``) reads one directory instead of the whole
store: ~245 names at a million keys (about 0.13 ms to list on ext4,
benchmarks/bench_files.py).  Two levels (``a3/f9/…``, 65,536 leaves) would
list only ~15 names there, but a young store would pay one or two
``mkdir`` (as costly as the file itself) for almost every new entry until
it held ~100,000 keys, and at full fan-out hold 256 MiB of directory
blocks; reads of the current level stay below 1 ms up to ~7 million keys.
A prefix shorter than the level walks only the directories it matches.

Writes go to a temporary sibling and are renamed into place, so a reader
sees the old entry, the new one or none, and a killed writer leaves at most
a stray ``.<name>.<random>.tmp`` file, which no operation ever reads and
:meth:`FileStorage.strays` finds (``fleche gc`` removes them, ``fleche
verify`` reports them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import time
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..digest import DIGEST_LENGTH, Digest
from ..errors import CorruptEntryWarning, warn
from .base import StorageBackend
from .file_leases import FileLeases
from .file_leftovers import leftover, remove_unless_used, temporary_sibling

__all__ = ["FileStorage"]

_HEX = frozenset("0123456789abcdef")
#: A field of an instance's own state: not an argument, not shown, not compared.
_state = functools.partial(dataclasses.field, init=False, repr=False, compare=False)


def _sorted_names(directory: str, length: int, prefix: str) -> list[str]:
    """Names in ``directory`` of ``length`` hex characters starting with ``prefix``, sorted.

    ``os.listdir`` rather than ``os.scandir``: only names are needed, and
    it is about three times faster per entry.
    """
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [n for n in names if len(n) == length and n.startswith(prefix)]
    if not _HEX.issuperset("".join(found)):  # all checked at once, else one by one
        found = [n for n in found if _HEX.issuperset(n)]
    found.sort()
    return found


@dataclasses.dataclass(frozen=True)
class FileStorage(StorageBackend):
    """Objects stored one file per key under ``root``, written atomically.

    ``FileStorage(root, lock_timeout=1.0, lock_wait_start=0.001, *, fsync=False)``:
    the three spec fields by position or keyword, the rest by keyword.

    Subclasses write and read one file (``_to_file``/``_from_file``); this
    class owns the layout, atomic replacement and the corrupt-entry rule.

    Parameters
    ----------
    root
        The directory of the store (a ``str`` or a ``Path``); created on the
        first write, so naming a store never touches the disk.
    lock_timeout, lock_wait_start
        How long, and starting from which pause (doubled each try), to
        retry replacing a file that another process holds open — the only
        contention a rename can meet (Windows; never on POSIX).  No file
        lock is needed: every writer renames its own complete temporary
        file into place, so concurrent writers of one key cannot tear it.
    fsync
        Flush each file and its directory to the device before the rename
        returns.  Off by default: without it a killed process still leaves
        a readable store, and after a power loss an entry may be lost or
        read as a miss (the format detects it) but never as a wrong value;
        with it each write costs a few milliseconds more.
    """

    root: Path
    lock_timeout: float = 1.0
    lock_wait_start: float = 0.001
    fsync: bool = dataclasses.field(default=False, kw_only=True)
    #: Keys that read as corrupt in this process: the next put rewrites them.
    _damaged: set[str] = _state(default_factory=set)
    _root: str = _state(default="")
    _wrote: list[bool] = _state(default_factory=list)  # written yet? (see _first_write)

    #: Key characters per fan-out directory level (see the module docstring).
    #: A class constant: a store written with one layout is not read with another.
    fanout: ClassVar[tuple[int, ...]] = (3,)

    persistent: ClassVar[bool] = True
    supports_prefix_range: ClassVar[bool] = True
    atomic_entries: ClassVar[bool] = True  # written aside and renamed into place

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser()
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "_root", str(root))

    def leases(self) -> FileLeases:
        """Lease files under ``root/leases``: call storages of files share this capability.

        (A call storage class takes it with ``leases = FileStorage.leases``.)
        """
        return FileLeases(root=self.root / "leases")

    # -- layout ----------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file of a full key: ``root/abc/<rest>`` (see :attr:`fanout`)."""
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        # The hot path works on plain strings: building a Path costs more than the stat.
        if len(key) != DIGEST_LENGTH:
            raise KeyError(f"{key!r} is not a full digest of {DIGEST_LENGTH} characters")
        parts = [self._root]
        start = 0
        for width in self.fanout:
            parts.append(key[start : start + width])
            start += width
        parts.append(key[start:])
        return os.sep.join(parts)

    def _key_of(self, path: Path | str) -> Digest:
        """The key a file stands for; also for the temporary file written for it."""
        path = Path(path)
        name = path.name
        if name.startswith("."):  # ".<rest>.<random>.tmp" while being written
            name = name[1 : 1 + DIGEST_LENGTH - sum(self.fanout)]
        levels = [p.name for p in path.parents[: len(self.fanout)]]
        return Digest("".join(reversed(levels)) + name)

    # -- primitives ------------------------------------------------------------

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        final = self._file(key)
        if self.content_addressed and key not in self._damaged:
            # The same content may be there: then nothing is written.  Touching
            # it (one system call, as a stat would be) tells a gc running now
            # that it is in use again (see :meth:`evict_unused`).
            try:
                os.utime(final)
                return key
            except FileNotFoundError:
                pass
            except OSError:  # another user's entry, a read-only mount: not ours to touch
                if os.path.exists(final):
                    return key
        if not self._wrote:
            self._wrote.append(True)
            self._first_write()
        return self._store(value, key, final)

    def _first_write(self) -> None:
        """Called once, before this instance's first write (of a new entry); a hook."""

    def _store(self, value: Any, key: Digest, final: str) -> Digest:
        """Write the entry of ``key`` to the file ``final`` atomically, whatever is there."""
        temporary = temporary_sibling(final)
        try:
            try:
                self._write(value, key, temporary)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(final), exist_ok=True)  # first under this prefix
                self._write(value, key, temporary)
            if self.fsync:
                sync(temporary)
            try:
                os.replace(temporary, final)
            except PermissionError:  # the target is held open elsewhere (Windows): retry
                self._replace(temporary, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        if self.fsync:
            sync(os.path.dirname(final))
        self._damaged.discard(key)
        return key

    def get(self, key: Digest) -> Any:
        # docstring inherited
        file = self._file(key)
        try:
            return self._read(key, file)
        except FileNotFoundError:
            raise KeyError(key) from None
        except PermissionError:
            raise  # not corruption: the user must fix access rights
        except Exception as err:
            raise self._unreadable(key, self._root, err) from err

    def _unreadable(self, key: Digest, where: Any, err: Exception) -> KeyError:
        """Note a damaged entry and warn: it reads as a miss and is rewritten when stored again."""
        self._damaged.add(key)
        warn(
            f"fleche: the entry {key} in {where} cannot be read "
            f"({type(err).__name__}: {err}); treating it as a miss (it is rewritten when stored again)",
            CorruptEntryWarning,
        )
        return KeyError(key)

    def _contains(self, key: Digest) -> bool:
        # One stat; a damaged file still counts as stored (``get`` reports it).
        try:
            return os.path.isfile(self._file(key))
        except KeyError:
            return False

    def stored_at(self, key: Digest) -> float | None:
        # docstring inherited
        try:
            return os.stat(self._file(key)).st_mtime
        except (OSError, KeyError):
            return None

    def _evict(self, key: Digest) -> None:
        # Empty fan-out directories are kept: removing one could race with
        # a writer that is about to put its temporary file in it.
        try:
            os.unlink(self._file(key))
        except FileNotFoundError:
            raise KeyError(key) from None
        self._damaged.discard(key)

    def evict_unused(self, key: Digest, horizon: float) -> bool:
        # docstring inherited: set aside first, so a writer touching it now keeps it
        with self._operation_context(key):
            removed = remove_unless_used(self._file(key), horizon)
        self._damaged.discard(key)
        return removed

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        return itertools.chain.from_iterable(self._walk(""))

    def _prefix_range(self, prefix: str) -> Iterator[Digest]:
        # A prefix as long as the fan-out names one leaf directory; a shorter
        # one walks only the fan-out directories it matches, lazily and sorted.
        return itertools.chain.from_iterable(self._walk(prefix.lower()))

    def _walk(
        self, prefix: str, directory: str = "", head: str = "", level: int = 0
    ) -> Iterator[list[Digest]]:
        """The sorted keys starting with ``prefix``, a leaf directory at a time.

        ``directory`` is the fan-out ``level`` named ``head``; a list per
        directory, so a walk of every key costs no generator step per key.
        """
        directory = directory or self._root
        start = len(head)
        if level == len(self.fanout):  # names already checked as hex: no validation
            names = _sorted_names(directory, DIGEST_LENGTH - start, prefix[start:])
            yield list(map(str.__new__, itertools.repeat(Digest), [head + n for n in names]))
            return
        width = self.fanout[level]
        part = prefix[start : start + width]
        # A prefix that names this level's directory goes straight into it, unlisted.
        names = [part] if len(part) == width else _sorted_names(directory, width, part)
        for name in names:
            yield from self._walk(prefix, f"{directory}{os.sep}{name}", head + name, level + 1)

    # -- leftovers -----------------------------------------------------------------

    def strays(self, older_than: float) -> Iterator[Path]:
        """Leftovers of killed writers last changed before ``older_than`` (epoch seconds).

        Temporary files (``.<name>.<unique>.tmp``), entries a killed gc set
        aside (``.<name>.<unique>.aside``, put back by
        :func:`~fleche.storage.file_leftovers.remove_stray` where their place
        is empty), leases set aside (``*.stale``) and empty lock files
        (``.<name>.lock``): nothing reads them, and a writer that is alive
        renames, removes or touches its own long before a grace of an hour
        has passed.
        """
        for directory, _, names in os.walk(self._root):
            for name in filter(leftover, names):
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path)
                except FileNotFoundError:
                    continue
                if info.st_mtime < older_than and (not name.endswith(".lock") or not info.st_size):
                    yield Path(path)

    # -- one file ----------------------------------------------------------------

    @abstractmethod
    def _to_file(self, value: Any, path: Path) -> None:
        """Write ``value`` to the new file ``path`` (a temporary name; create it exclusively).

        Raise on failure; the caller removes the partial file and renames a
        complete one into place, so this need not be atomic.
        """

    @abstractmethod
    def _from_file(self, path: Path) -> Any:
        """The object in the file ``path``.

        ``FileNotFoundError`` means a miss; any other exception (except
        ``PermissionError``) marks the entry corrupt: ``get`` warns and
        reports a miss.  Never return a value the file does not hold.
        """

    def _write(self, value: Any, key: Digest, temporary: str) -> None:
        """Write the entry of ``key`` to the new file ``temporary``; defaults to :meth:`_to_file`.

        Override when the key is useful (to bind a checksum to it) or a ``Path``
        costs too much.  ``FileNotFoundError`` makes the caller create the
        directory and call again: create the file before expensive work.
        """
        self._to_file(value, Path(temporary))

    def _read(self, key: Digest, file: str) -> Any:
        """The entry of ``key`` from ``file``; :meth:`_from_file` unless overridden (no ``Path``)."""
        return self._from_file(Path(file))

    def _replace(self, source: str, target: str) -> None:
        """``os.replace``, retried while the target is held open elsewhere (Windows)."""
        pause = self.lock_wait_start
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                os.replace(source, target)
                return
            except PermissionError:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause *= 2


def sync(path: str) -> None:
    """Flush a file or a directory to the device (directories only on POSIX)."""
    if os.path.isdir(path) and os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
