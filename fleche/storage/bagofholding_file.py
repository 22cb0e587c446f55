"""HDF5 files through bagofholding and h5py: results your HDF5 tools can open.

Two layouts share one directory tree, chosen by ``prefix_length``, each a
class of :mod:`fleche.storage.hdf5_layout` that the storage writes through:

``prefix_length=0``: one file per key (:class:`~.hdf5_layout.PerKeyFiles`)
    ``root/a3/f9/c1…`` as in :class:`~fleche.storage.file.FileStorage`,
    written to a temporary file and renamed.  h5py refuses to open a file
    another process is writing (66 of 80 unlocked concurrent saves into one
    file failed), so one file per write is what makes processes safe.
``prefix_length=n`` (1–8, default 2): keys grouped by their first ``n`` characters (:class:`~.hdf5_layout.GroupedFiles`)
    Each key is a group of the shared file ``root/a.h5`` (n ≤ 2),
    ``root/a3/a3f.h5`` (n ≤ 4) or ``root/a3/f9/a3f9c.h5`` (n ≤ 8): fewer,
    larger files for file systems with inode quotas and for browsing.  A
    write holds a :class:`filelock.FileLock` on the shared file, copies it, adds the entry to the copy, flushes
    it to the device and renames it into place, so a killed writer never
    damages the entries already there and readers need no lock: they see
    the old file or the new one.  The cost is a copy of the shared file
    per write, so shared files are kept small: an array or frame of more
    than :data:`~fleche.storage.hdf5_shared.SHARED_LIMIT` bytes gets a file of its own in any layout.

Reads find an entry under either layout (this storage's place first), so a
store whose layout is being changed by :meth:`~BagOfHoldingH5FileBackend.refix`
or :meth:`~BagOfHoldingH5FileBackend.consolidate` stays fully readable.
The format of one entry is described in :mod:`fleche.storage.hdf5_entry`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import h5py

from ..digest import Digest
from ..errors import ConfigError
from . import hdf5_shared as shared
from .base import CallMixin, KeyManagement, ValueMixin
from .destructuring import INLINE_DEPTH, DestructuringMixin
from .file import FileStorage
from .hdf5_entry import NoEntry, copy_entry, read_entry, write_entry
from .hdf5_layout import MAX_PREFIX_LENGTH, H5Layout, layout_for, others
from .hdf5_listing import sorted_keys
from .hdf5_moves import LayoutChangesMixin

__all__ = ["BagOfHoldingH5FileBackend", "CallBagOfHoldingH5File", "ValueBagOfHoldingH5File"]

#: What ``version_validator`` accepts (bagofholding's keywords).
VERSION_VALIDATORS = ("none", "semantic-major", "semantic-minor", "semantic-patch", "exact")
#: The pending writes of :meth:`BagOfHoldingH5FileBackend.batched`, per thread and storage.
_batches = threading.local()
_LOST = LookupError("it read as damaged in this process and has not been stored again since")


def _assign(storage: Any, given: dict[str, Any]) -> None:
    """Set every field of the dataclass ``storage`` from ``given`` or its default, then check it.

    What a generated ``__init__`` does, for classes whose positional order
    (the 0.22 one) differs from the order their fields are inherited in.
    """
    for field in dataclasses.fields(storage):
        if field.init and field.name in given:
            value = given.pop(field.name)
        elif field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            raise TypeError(f"{type(storage).__name__}() needs the argument {field.name!r}")
        object.__setattr__(storage, field.name, value)
    if given:
        raise TypeError(f"{type(storage).__name__}() got unexpected arguments {sorted(given)}")
    storage.__post_init__()


@dataclasses.dataclass(frozen=True, init=False)
class BagOfHoldingH5FileBackend(LayoutChangesMixin, FileStorage):
    """Objects in HDF5 files under ``root``: arrays and frames as real datasets.

    ``BagOfHoldingH5FileBackend(root, version_validator=None, prefix_length=2,
    lock_timeout=1.0)``, by position or keyword; other fields by keyword.

    Numpy arrays are plain datasets, DataFrames one dataset per column,
    plain Python data (container nodes, call records) pickled bytes, and
    every other object goes through :class:`bagofholding.H5Bag` (see
    :mod:`fleche.storage.hdf5_entry`).  :meth:`location` says where an
    entry is.  Layouts, atomic writes and locking: see the module.

    Parameters
    ----------
    root, lock_wait_start, fsync
        As for :class:`~fleche.storage.file.FileStorage` (``fsync`` for
        per-key files; a shared file is always flushed before its rename,
        since a torn one would lose every entry in it).
    lock_timeout
        As for :class:`~fleche.storage.file.FileStorage`: how long to
        retry a rename another process blocks.
    prefix_length
        0 for one file per key, 1–8 (default 2) to group keys sharing that
        many leading characters in one file.  Change it for a whole store
        with :meth:`refix`.
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
        use only stable public numpy/pandas API.  ``None`` is ``"none"``.
        After an upgrade, :meth:`rebag` rewrites the bags with the
        installed versions.
    """

    version_validator: str | None = None
    prefix_length: int = 2
    #: Where this storage writes: the layout ``prefix_length`` names (see :mod:`.hdf5_layout`).
    layout: H5Layout | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    #: Where it reads: its layout first, then every other one.
    _layouts: tuple[H5Layout, ...] = dataclasses.field(
        default=(), init=False, repr=False, compare=False
    )

    def __init__(
        self,
        root: Path | str,
        version_validator: str | None = None,
        prefix_length: int = 2,
        lock_timeout: float = 1.0,
        **options: Any,
    ) -> None:
        _assign(
            self,
            dict(
                options,
                root=root,
                version_validator=version_validator,
                prefix_length=prefix_length,
                lock_timeout=lock_timeout,
            ),
        )

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
        if self.version_validator is not None and self.version_validator not in VERSION_VALIDATORS:
            raise ConfigError(
                f"version_validator must be one of {', '.join(VERSION_VALIDATORS)}; got {self.version_validator!r}"
            )
        layout = layout_for(self.prefix_length)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "_layouts", (layout, *others(layout)))

    # -- layout ----------------------------------------------------------------

    @property
    def _validator(self) -> str:
        return self.version_validator or "none"

    def _locations(self, key: str) -> Iterator[tuple[str, str | None]]:
        """Every place ``key`` may be stored, this layout's first: 9 stats at most on a miss."""
        for layout in self._layouts:
            yield layout.place(self, key)

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
        pending = _batches.__dict__.get(id(self))
        if pending is not None:
            pending.append((key, value))
            return key
        return self.layout.put(self, value, key)

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Writes of this thread inside go to their files together at the end.

        A shared file is rewritten once for all its new entries instead of
        once per entry (what makes copying many small values into the
        grouped layout fast).  Entries written inside are not readable
        before the end; if the block raises, none is written.
        """
        if id(self) in _batches.__dict__:
            yield  # nested: the outer batch writes
            return
        pending: list[tuple[str, Any]] = []
        _batches.__dict__[id(self)] = pending
        try:
            yield
        finally:
            del _batches.__dict__[id(self)]
        self.layout.put_many(self, pending)

    def get(self, key: Digest) -> Any:
        # docstring inherited
        swapped: tuple[str, Exception] | None = None  # the first shared file of another prefix
        for file, group in self._locations(key):
            if not os.path.isfile(file):
                continue
            try:
                return read_entry(file, group, self._validator, key)
            except FileNotFoundError:
                continue  # evicted meanwhile
            except NoEntry as missing:  # not in this shared file: is it another prefix's?
                wrong = shared.foreign(file, missing.prefix)
                swapped = swapped or (None if wrong is None else (file, wrong))
                continue
            except PermissionError:
                raise  # not corruption: the user must fix access rights
            except Exception as err:
                raise self._unreadable(key, file, err) from err
        if swapped is not None:  # the key may have been in it: warn, and rewrite it when stored
            raise self._unreadable(key, *swapped)
        if key in self._damaged:  # e.g. it was in a foreign shared file set aside since
            raise self._unreadable(key, self._root, _LOST)
        raise KeyError(key)

    def _contains(self, key: Digest) -> bool:
        # A damaged per-key file still counts (``get`` reports it); a damaged shared file does not.
        return any(layout.holds(self, key) for layout in self._layouts)

    def _evict(self, key: Digest) -> None:
        found = [layout.evict(self, key) for layout in self._layouts]
        if not any(found):
            raise KeyError(key)
        self._damaged.discard(key)

    # An entry may live in a shared file: not set aside by a rename, its age read again instead.
    evict_unused = KeyManagement.evict_unused

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        return sorted_keys(self._root, "")

    def _prefix_range(self, prefix: str) -> Iterator[Digest]:
        # Two or more characters read one fan-out directory and the few shared
        # files whose prefix fits; a shorter prefix walks its chunks lazily.
        return sorted_keys(self._root, prefix.lower())

    # -- one per-key file --------------------------------------------------------

    def _write(self, value: Any, key: Digest, temporary: str) -> None:
        # docstring inherited
        if type(value) is shared.Moved:
            with h5py.File(temporary, "w-") as target, h5py.File(value.file, "r") as source:
                copy_entry(source if value.group is None else source[value.group], target)
            return
        # Create the file exclusively; an existing file also tells bagofholding
        # where the HDF5 file ends and a group path inside it would begin.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write_entry(temporary, None, value, key)

    def _read(self, key: Digest, file: str) -> Any:
        # docstring inherited
        return read_entry(file, None, self._validator, key)

    def _to_file(self, value: Any, path: Path) -> None:
        # docstring inherited
        self._write(value, self._key_of(path), str(path))

    def _from_file(self, path: Path) -> Any:
        # docstring inherited
        return self._read(self._key_of(path), str(path))


@dataclasses.dataclass(frozen=True, init=False)
class ValueBagOfHoldingH5File(ValueMixin, DestructuringMixin, BagOfHoldingH5FileBackend):
    """Values in HDF5 files, e.g. ``ValueBagOfHoldingH5File(root="store/values")``.

    Containers are split into deduplicated children (a dict of arrays is
    one small node plus one dataset per array); an entry already stored is
    never rewritten (its name is its content).
    """

    content_addressed = True
    remaining_depth: int = dataclasses.field(default=INLINE_DEPTH, kw_only=True)
    __init__ = BagOfHoldingH5FileBackend.__init__  # not DestructuringMixin's


@dataclasses.dataclass(frozen=True, init=False)
class CallBagOfHoldingH5File(CallMixin, BagOfHoldingH5FileBackend):
    """Call records in HDF5 files, e.g. ``CallBagOfHoldingH5File(root="store/calls")``.

    Saving a call again (a rerun) replaces its record atomically.
    """

    __init__ = BagOfHoldingH5FileBackend.__init__
    leases = FileStorage.leases  # lease files beside the records, not CallStorage's none
