"""Shared HDF5 files: many keys in one file, written copy-on-write under a file lock.

h5py cannot open a file that another process is writing, and HDF5 marks a
file it has open for writing, so a writer killed mid-write would leave the
whole file, and every entry in it, unreadable.  So a shared file is never
written in place: the writer holds a :class:`filelock.FileLock`, writes a
copy with the change, flushes it to the device and renames it over the old
file.  Readers take no lock: they open the old file or the new one.  The
lock files (``.<name>.lock``) stay: one cannot be removed safely while
another process may be waiting on it.

Every shared file records the key prefix it is for (the stem of its name,
in the attribute :data:`~fleche.storage.hdf5_check.PREFIX`), so a shared
file swapped with another prefix's, or replaced by a foreign one, is told
apart from one that just lacks a key: reads warn, and the next write sets
it aside.  Files made before the prefix was recorded are not checked.

Also here: reading the directory tree of an HDF5 store (fan-out
directories, per-key files and shared files side by side).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
from filelock import FileLock

from ..digest import DIGEST_LENGTH
from ..errors import CorruptEntryWarning
from .file import sync
from .file_leftovers import temporary_sibling
from .hdf5_check import PREFIX, read_attribute
from .hdf5_entry import copy_entry

__all__ = [
    "SHARED_LIMIT",
    "SUFFIX",
    "Moved",
    "ForeignFile",
    "copy_in",
    "foreign",
    "holds",
    "is_hex",
    "keys_for_update",
    "listed",
    "locked",
    "rewrite",
    "scan",
    "too_large",
]

#: The file name suffix of a shared file (per-key files have none).
SUFFIX = ".h5"
#: Characters of a key spent on the two fan-out directories; the rest names a per-key file.
SPLIT = 4
_HEX = frozenset("0123456789abcdef")
#: Arrays and frames larger than this (bytes) get a file of their own in a grouped
#: layout: adding one to a shared file would copy every entry already there.
SHARED_LIMIT = 1 << 20


def too_large(value: Any) -> bool:
    """Whether ``value`` is an array or frame too large for a shared file (see :data:`SHARED_LIMIT`)."""
    size = getattr(value, "nbytes", None)  # numpy arrays, pandas Series
    if size is None and hasattr(value, "memory_usage") and hasattr(value, "columns"):
        size = int(value.memory_usage(index=False).sum())  # a DataFrame
    return type(size) is int and size > SHARED_LIMIT


def is_hex(name: str, length: int) -> bool:
    """Whether ``name`` is ``length`` lowercase hex characters."""
    return len(name) == length and _HEX.issuperset(name)


@dataclasses.dataclass(frozen=True)
class Moved:
    """An entry to copy as it is (no decoding) from ``file``: its group ``group``, or its root."""

    file: str
    group: str | None


def locked(file: str) -> FileLock:
    """The lock every writer of a shared file holds (a hidden sibling file)."""
    directory, name = os.path.split(file)
    return FileLock(os.path.join(directory, f".{name}.lock"))


class ForeignFile(ValueError):
    """A shared file is another prefix's: swapped with it, or copied over this one."""


def _prefix(file: str) -> bytes:
    """The key prefix of the shared file ``file``: the stem of its name."""
    return os.path.basename(file)[: -len(SUFFIX)].encode()


def foreign(file: str, found: bytes | None) -> ForeignFile | None:
    """The error for a shared file that says it is for the prefix ``found``, if that is wrong."""
    if found is None or found == _prefix(file):
        return None  # made before prefixes were recorded, or the right file
    return ForeignFile(
        f"it holds the keys starting {found.decode(errors='replace')!r}, "
        f"not {_prefix(file).decode()!r}: it was swapped with or copied over another shared file"
    )


def _open_keys(file: str) -> tuple[set[str], ForeignFile | None]:
    """The keys in a shared file, and the error if it is another prefix's file."""
    with h5py.File(file, "r") as handle:
        keys = {name for name in handle if is_hex(name, DIGEST_LENGTH)}
        return keys, foreign(file, read_attribute(handle.id, PREFIX.encode()))


def _read_keys(file: str) -> set[str]:
    keys, wrong = _open_keys(file)
    if wrong is not None:
        raise wrong
    return keys


def holds(file: str, key: str) -> bool:
    """Whether a shared file has an entry for ``key``; a damaged or vanished file has none."""
    try:
        with h5py.File(file, "r") as handle:
            return key in handle
    except PermissionError:
        raise
    except Exception:
        return False  # ``get`` warns about a damaged file


def listed(file: str) -> set[str]:
    """The keys in a shared file; a damaged one is reported and lists nothing."""
    try:
        return _read_keys(file)
    except FileNotFoundError:
        return set()
    except PermissionError:
        raise
    except Exception as err:
        warnings.warn(
            f"fleche: the shared file {file} cannot be read ({type(err).__name__}: {err}); "
            "its entries read as misses (the next write to it sets it aside)",
            CorruptEntryWarning,
            stacklevel=4,
        )
        return set()


def keys_for_update(file: str, lost: set[str] | None = None) -> set[str] | None:
    """The keys of a shared file about to be rewritten (lock held); ``None`` if there is no file.

    A damaged or foreign file is renamed aside (``.<name>.corrupt-<random>``)
    with a warning, so that writes go on; its entries were unreadable
    anyway.  The keys a foreign file held are added to ``lost``: their own
    file may have lost them (two files swapped), so their misses warn too.
    """
    try:
        keys, err = _open_keys(file)
        if err is None:
            return keys
        if lost is not None:
            lost.update(keys)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise
    except Exception as error:
        err = error
    directory, name = os.path.split(file)
    aside = os.path.join(directory, f".{name}.corrupt-{os.urandom(4).hex()}")
    os.replace(file, aside)
    warnings.warn(
        f"fleche: the shared file {file} cannot be read ({type(err).__name__}: {err}); "
        f"moved aside to {aside} and starting a new one",
        CorruptEntryWarning,
        stacklevel=4,
    )
    return None


def rewrite(
    file: str,
    keys: set[str] | None,
    drop: set[str],
    add: Callable[[str], None] | None,
    replace: Callable[[str, str], None] = os.replace,
) -> None:
    """Replace a shared file (its lock held) by a copy without ``drop``, plus what ``add`` writes.

    ``keys`` are the keys in it now (``None``: no file yet); ``add`` gets
    the path of the copy.  The copy is flushed to the device before it is
    renamed into place, so the entries already there are never at risk;
    a file left with no entry is removed.
    """
    keep = set() if keys is None else keys - drop
    if add is None and not keep:
        os.unlink(file)
        return
    temporary = temporary_sibling(file)
    try:
        if keys is not None and not drop:
            shutil.copyfile(file, temporary)  # only adding: the bytes as they are
        else:
            with h5py.File(temporary, "w-") as target:
                target.attrs[PREFIX] = np.bytes_(_prefix(file))
                if keep:  # copying object by object also drops the space of removed ones
                    with h5py.File(file, "r") as source:
                        for key in sorted(keep):
                            source.copy(source[key], target, name=key)
        if add is not None:
            add(temporary)
        sync(temporary)
        replace(temporary, file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync(os.path.dirname(file))


def copy_in(file: str, entries: dict[str, Moved]) -> None:
    """Copy each entry as it is into the HDF5 file ``file``, as the group named by its key."""
    with h5py.File(file, "r+") as target:
        for key, source in sorted(entries.items()):
            with h5py.File(source.file, "r") as handle:
                entry = handle if source.group is None else handle[source.group]
                copy_entry(entry, target.create_group(key))


def scan(directory: str) -> tuple[list[str], list[str], list[str]]:
    """Fan-out subdirectories (sorted), per-key file names and shared-file stems in ``directory``.

    Hidden files (temporary copies, locks, damaged files set aside) are skipped.
    """
    subdirs: list[str] = []
    names: list[str] = []
    stems: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if is_hex(name, 2):
                    subdirs.append(name)
                elif is_hex(name, DIGEST_LENGTH - SPLIT):
                    names.append(name)
                elif name.endswith(SUFFIX) and is_hex(
                    name[: -len(SUFFIX)], len(name) - len(SUFFIX)
                ):
                    stems.append(name[: -len(SUFFIX)])
    except (FileNotFoundError, NotADirectoryError):
        pass
    subdirs.sort()
    return subdirs, names, stems
