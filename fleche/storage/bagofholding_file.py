"""HDF5 files through bagofholding and h5py: results your HDF5 tools can open.

Two layouts share one directory tree, chosen by ``prefix_length``:

``prefix_length=0`` (default): one file per key
    ``root/a3/f9/c1…`` as in :class:`~fleche.storage.file.FileStorage`,
    written to a temporary file and renamed.  h5py refuses to open a file
    another process is writing (66 of 80 unlocked concurrent saves into one
    file failed), so one file per write is what makes processes safe.
``prefix_length=n`` (1–8): keys grouped by their first ``n`` characters
    Each key is a group of the shared file ``root/a.h5`` (n ≤ 2),
    ``root/a3/a3f.h5`` (n ≤ 4) or ``root/a3/f9/a3f9c.h5`` (n ≤ 8): fewer,
    larger files for file systems with inode quotas and for browsing.  A
    write holds a :class:`filelock.FileLock` on the shared file, copies it,
    adds the entry to the copy, flushes it to the device and renames it
    into place, so a killed writer never damages the entries already there
    and readers need no lock: they see the old file or the new one.  The
    cost is a copy of the shared file per write; keep shared files small.

Reads find an entry under either layout (this storage's place first), so a
store whose layout is being changed by :meth:`~BagOfHoldingH5FileBackend.refix`
or :meth:`~BagOfHoldingH5FileBackend.consolidate` stays fully readable.
The format of one entry is described in :mod:`fleche.storage.hdf5_entry`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import h5py

from ..digest import Digest
from ..errors import ConfigError
from . import hdf5_shared as shared
from .base import CallMixin, ValueMixin
from .destructuring import INLINE_DEPTH, DestructuringMixin
from .file import FileStorage
from .hdf5_entry import NoEntry, copy_entry, read_entry, write_entry

__all__ = ["BagOfHoldingH5FileBackend", "CallBagOfHoldingH5File", "ValueBagOfHoldingH5File"]

#: Longest key prefix that may name a shared file.
MAX_PREFIX_LENGTH = 8
#: What ``version_validator`` accepts (bagofholding's keywords).
VERSION_VALIDATORS = ("none", "semantic-major", "semantic-minor", "semantic-patch", "exact")
_HEX = "0123456789abcdef"


def _related(stem: str, prefix: str) -> bool:
    """Whether a shared file for keys starting ``stem`` may hold keys starting ``prefix``."""
    return stem.startswith(prefix) or prefix.startswith(stem)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BagOfHoldingH5FileBackend(FileStorage):
    """Objects in HDF5 files under ``root``: arrays and frames as real datasets.

    Numpy arrays are plain datasets, DataFrames one dataset per column,
    plain Python data (container nodes, call records) pickled bytes, and
    every other object goes through :class:`bagofholding.H5Bag` (see
    :mod:`fleche.storage.hdf5_entry`).  :meth:`location` says where an
    entry is.  Layouts, atomic writes and locking: see the module.

    Parameters
    ----------
    root, lock_timeout, lock_wait_start, fsync
        As for :class:`~fleche.storage.file.FileStorage` (``fsync`` for
        per-key files; a shared file is always flushed before its rename,
        since a torn one would lose every entry in it).
    prefix_length
        0 for one file per key, 1–8 to group keys sharing that many leading
        characters in one file.  Change it for a whole store with
        :meth:`refix`.
    version_validator
        How bagofholding checks the package versions recorded with a stored
        object against the installed ones when loading.  bagofholding's own
        default, ``"exact"``, makes every entry unreadable after any upgrade
        of numpy, pandas or even Python (builtins are versioned too), so
        the default here is ``"none"``: load across versions, and if an
        upgrade really changed an object's layout the load fails and reads
        as a miss with a :class:`~fleche.errors.CorruptEntryWarning`, so the
        result is recomputed rather than lost.  ``"semantic-major"``,
        ``"semantic-minor"``, ``"semantic-patch"`` or ``"exact"`` turn the
        check on (a mismatch then also reads as a warned miss).  The format
        of the bag itself is checked with ``"semantic-major"`` plus
        bagofholding's own oldest-readable-version floor.  Arrays, frames
        and pickled plain data record no package versions: their formats
        use only stable public numpy/pandas API.
    """

    prefix_length: int = 0
    version_validator: str = "none"

    #: Pinned: the places of shared files (and ``hdf5_shared.SPLIT``) follow these two levels.
    fanout: ClassVar[tuple[int, ...]] = (2, 2)
    persistent: ClassVar[bool] = True
    supports_prefix_range: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if type(self.prefix_length) is not int or not 0 <= self.prefix_length <= MAX_PREFIX_LENGTH:
            raise ConfigError(
                f"prefix_length must be an int from 0 (one file per key) to {MAX_PREFIX_LENGTH}; "
                f"got {self.prefix_length!r}"
            )
        if self.version_validator not in VERSION_VALIDATORS:
            raise ConfigError(
                f"version_validator must be one of {', '.join(VERSION_VALIDATORS)}; got {self.version_validator!r}"
            )

    # -- layout ----------------------------------------------------------------

    def _shared_file(self, prefix: str) -> str:
        """The shared file of the keys starting with ``prefix`` (1 to 8 characters)."""
        sep, root = os.sep, self._root
        if len(prefix) <= 2:
            return f"{root}{sep}{prefix}{shared.SUFFIX}"
        if len(prefix) <= 4:
            return f"{root}{sep}{prefix[:2]}{sep}{prefix}{shared.SUFFIX}"
        return f"{root}{sep}{prefix[:2]}{sep}{prefix[2:4]}{sep}{prefix}{shared.SUFFIX}"

    def _place(self, key: str) -> tuple[str, str | None]:
        """Where this storage writes ``key``: a file, and the group in it (``None``: its root)."""
        if self.prefix_length == 0:
            return self._file(key), None
        return self._shared_file(key[: self.prefix_length]), key

    def _locations(self, key: str) -> Iterator[tuple[str, str | None]]:
        """Every place ``key`` may be stored, this layout's first: 9 stats at most on a miss."""
        place = self._place(key)
        yield place
        if place[1] is not None:
            yield self._file(key), None
        for length in range(1, MAX_PREFIX_LENGTH + 1):
            if length != self.prefix_length:
                yield self._shared_file(key[:length]), key

    def location(self, key: Digest | str) -> tuple[Path, str]:
        """The HDF5 file and the path of the entry in it holding ``key`` (full or short).

        The way to open a result in other HDF5 tools, e.g.
        ``h5py.File(file)[path]``: a numpy array is its dataset ``array``,
        a DataFrame's columns are the datasets in its group ``columns``.
        ``KeyError`` if nothing is stored under ``key``.
        """
        key = self.expand(key)
        for file, group in self._locations(key):
            if os.path.isfile(file) and (group is None or shared.holds(file, group)):
                return Path(file), "/" if group is None else f"/{group}"
        raise KeyError(key)

    # -- primitives ------------------------------------------------------------

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        if self.prefix_length == 0:
            return super().put(value, key)
        file, _ = self._place(key)
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with shared.locked(file):
            keys = shared.keys_for_update(file)
            replaced: set[str] = set()
            if keys is not None and key in keys:
                if self.content_addressed and key not in self._damaged:
                    return key  # the same content is already there
                replaced = {key}

            def add(temporary: str) -> None:
                write_entry(temporary, key, value)

            shared.rewrite(file, keys, replaced, add, self._replace)
        self._damaged.discard(key)
        return key

    def get(self, key: Digest) -> Any:
        # docstring inherited
        for file, group in self._locations(key):
            if not os.path.isfile(file):
                continue
            try:
                return read_entry(file, group, self.version_validator)
            except (FileNotFoundError, NoEntry):
                continue  # evicted meanwhile, or not in this shared file
            except PermissionError:
                raise  # not corruption: the user must fix access rights
            except Exception as err:
                raise self._unreadable(key, file, err) from err
        raise KeyError(key)

    def _contains(self, key: Digest) -> bool:
        # A damaged per-key file still counts (``get`` reports it); a damaged shared file does not.
        for file, group in self._locations(key):
            if os.path.isfile(file) and (group is None or shared.holds(file, group)):
                return True
        return False

    def _evict(self, key: Digest) -> None:
        found = False
        for file, group in self._locations(key):
            if not os.path.isfile(file):
                continue
            if group is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file)
                    found = True
                continue
            with shared.locked(file):
                keys = shared.keys_for_update(file)
                if keys is not None and key in keys:
                    shared.rewrite(file, keys, {key}, None, self._replace)
                    found = True
        if not found:
            raise KeyError(key)
        self._damaged.discard(key)

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        return self._sorted_keys("")

    def _prefix_range(self, prefix: str) -> Iterator[Digest]:
        # Two or more characters read one fan-out directory and the few shared
        # files whose prefix fits; a shorter prefix walks its chunks lazily.
        return self._sorted_keys(prefix.lower())

    # -- one per-key file --------------------------------------------------------

    def _to_file(self, value: Any, path: Path) -> None:
        # docstring inherited
        if type(value) is shared.Moved:
            with h5py.File(path, "w-") as target, h5py.File(value.file, "r") as source:
                copy_entry(source if value.group is None else source[value.group], target)
            return
        # Create the file exclusively; an existing file also tells bagofholding
        # where the HDF5 file ends and a group path inside it would begin.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write_entry(str(path), None, value)

    def _from_file(self, path: Path) -> Any:
        # docstring inherited
        return read_entry(str(path), None, self.version_validator)

    # -- listing -----------------------------------------------------------------

    def _sorted_keys(self, prefix: str) -> Iterator[Digest]:
        """Stored keys starting with ``prefix``, sorted, one two-character chunk at a time."""
        for chunk in self._chunks(prefix):
            keys: set[str] = set()
            for _, _, held in self._holders(max(chunk, prefix, key=len)):
                keys.update(held)
            yield from (Digest(k) for k in sorted(keys))

    def _chunks(self, prefix: str) -> list[str]:
        """The two-character prefixes under which something may be stored, matching ``prefix``."""
        if len(prefix) >= 2:
            return [prefix[:2]]
        try:
            with os.scandir(self._root) as entries:
                names = [e.name for e in entries]
        except FileNotFoundError:
            return []
        chunks = {n for n in names if shared.is_hex(n, 2)}
        for name in names:
            stem = name[: -len(shared.SUFFIX)]
            if (
                name.endswith(shared.SUFFIX)
                and shared.is_hex(stem, len(stem))
                and 1 <= len(stem) <= 2
            ):
                chunks.update([stem] if len(stem) == 2 else (stem + c for c in _HEX))
        return sorted(c for c in chunks if c.startswith(prefix))

    def _holders(self, prefix: str) -> Iterator[tuple[str, str | None, set[str]]]:
        """``(file, group, keys)`` for every file holding keys that start with ``prefix`` (2+ characters).

        ``group`` is ``None`` for a per-key file and ``""`` for a shared
        file (whose groups are its keys).  Reads one fan-out subtree (one
        directory for 4+ characters) and the shared files whose prefix fits.
        """
        sep, root = os.sep, self._root
        files = [self._shared_file(prefix[:1]), self._shared_file(prefix[:2])]
        level = f"{root}{sep}{prefix[:2]}"
        if len(prefix) >= shared.SPLIT:  # one leaf directory: no listing above it
            subdirs = [prefix[2:4]]
            files += [self._shared_file(prefix[:3]), self._shared_file(prefix[:4])]
        else:
            subdirs, _, stems = shared.scan(level)
            files += [f"{level}{sep}{s}{shared.SUFFIX}" for s in stems if _related(s, prefix)]
        for second in subdirs:
            if not second.startswith(prefix[2:4]):
                continue
            leaf = f"{level}{sep}{second}"
            _, names, stems = shared.scan(leaf)
            head = prefix[:2] + second
            for name in names:
                if (head + name).startswith(prefix):
                    yield f"{leaf}{sep}{name}", None, {head + name}
            files += [f"{leaf}{sep}{s}{shared.SUFFIX}" for s in stems if _related(s, prefix)]
        for file in files:
            if os.path.isfile(file):
                held = {k for k in shared.listed(file) if k.startswith(prefix)}
                if held:
                    yield file, "", held

    # -- changing the layout -------------------------------------------------------

    def refix(self, prefix_length: int) -> BagOfHoldingH5FileBackend:
        """Move every entry into the layout of ``prefix_length``; returns the storage for it.

        Each entry is copied (as stored: no decoding, no version check) and
        the new file is in place before the old copy is removed, so an
        interruption loses nothing: run it again, or :meth:`consolidate` on
        the returned storage, to finish.  Run it while no other process
        writes to the store.
        """
        target = dataclasses.replace(self, prefix_length=prefix_length)
        target.consolidate()
        return target

    def consolidate(self) -> int:
        """Move every entry not where this storage's layout puts it; returns how many moved.

        E.g. gather the per-key files a cluster job wrote with
        ``prefix_length=0`` into shared files, or finish an interrupted
        :meth:`refix`.  New copies land before old ones go (see :meth:`refix`).
        """
        moved = 0
        for chunk in self._chunks(""):
            moved += self._consolidate(chunk)
        return moved

    def _consolidate(self, chunk: str) -> int:
        misplaced: dict[str, dict[str, shared.Moved]] = {}  # target file -> key -> source
        for file, group, held in list(self._holders(chunk)):
            for key in held:
                target, _ = self._place(key)
                if target != file:
                    misplaced.setdefault(target, {})[key] = shared.Moved(
                        file, None if group is None else key
                    )
        for target, entries in misplaced.items():
            self._copy_in(target, entries)
        done: dict[str, set[str]] = {}  # shared source file -> keys moved out of it
        for entries in misplaced.values():
            for key, source in entries.items():
                if source.group is None:
                    _unlink(source.file)
                else:
                    done.setdefault(source.file, set()).add(key)
        for file, keys in done.items():
            with shared.locked(file):
                present = shared.keys_for_update(file)
                if present is not None and keys & present:
                    shared.rewrite(file, present, keys & present, None, self._replace)
        return sum(len(entries) for entries in misplaced.values())

    def _copy_in(self, target: str, entries: dict[str, shared.Moved]) -> None:
        """Copy entries into their place ``target`` unless already there (then the copy there wins)."""
        if self.prefix_length == 0:
            for key, source in entries.items():
                if not os.path.isfile(target):
                    FileStorage.put(self, source, Digest(key))
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with shared.locked(target):
            keys = shared.keys_for_update(target)
            new = {k: s for k, s in entries.items() if keys is None or k not in keys}
            if new:
                shared.rewrite(
                    target,
                    keys,
                    set(),
                    lambda temporary: shared.copy_in(temporary, new),
                    self._replace,
                )


def _unlink(file: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(file)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValueBagOfHoldingH5File(ValueMixin, DestructuringMixin, BagOfHoldingH5FileBackend):
    """Values in HDF5 files, e.g. ``ValueBagOfHoldingH5File(root="store/values")``.

    Containers are split into deduplicated children (a dict of arrays is
    one small node plus one dataset per array); an entry already stored is
    never rewritten (its name is its content).
    """

    content_addressed = True
    remaining_depth: int = dataclasses.field(default=INLINE_DEPTH, kw_only=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CallBagOfHoldingH5File(CallMixin, BagOfHoldingH5FileBackend):
    """Call records in HDF5 files, e.g. ``CallBagOfHoldingH5File(root="store/calls")``.

    Saving a call again (a rerun) replaces its record atomically.
    """
