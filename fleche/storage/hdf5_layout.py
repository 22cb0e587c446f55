"""The layouts of an HDF5 store: one class per layout, each knowing only its own places.

:class:`PerKeyFiles` (``prefix_length=0``) writes one file per key;
:class:`GroupedFiles` (``prefix_length`` 1–8) groups keys sharing their
first characters in one shared file (see :mod:`fleche.storage.hdf5_shared`
for how those are written safely).  A
:class:`~fleche.storage.bagofholding_file.BagOfHoldingH5FileBackend` holds
the layout its ``prefix_length`` names (:func:`layout_for`), writes
through it, and reads through every layout, its own first, so a store
being moved between layouts stays readable.

A layout is stateless but for its prefix length: every method gets the
storage it works for (its root, its per-key file machinery, its rename).
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..digest import Digest
from . import hdf5_shared as shared
from .file import FileStorage
from .hdf5_entry import write_entries

__all__ = ["MAX_PREFIX_LENGTH", "GroupedFiles", "H5Layout", "PerKeyFiles", "layout_for", "others"]

#: Longest key prefix that may name a shared file.
MAX_PREFIX_LENGTH = 8


class H5Layout(ABC):
    """Where one layout keeps each key, and how it writes and removes entries there."""

    prefix_length: int = 0

    @abstractmethod
    def place(self, storage: Any, key: str, large: bool = False) -> tuple[str, str | None]:
        """The file holding ``key`` here, and its group in it (``None``: the file's root).

        ``large``: the entry is too large for a shared file (see
        :data:`~fleche.storage.hdf5_shared.SHARED_LIMIT`).
        """

    @abstractmethod
    def put_many(self, storage: Any, items: Sequence[tuple[str, Any]]) -> None:
        """Write each ``(key, value)`` here; a value may be a :class:`~.hdf5_shared.Moved` entry."""

    @abstractmethod
    def evict(self, storage: Any, key: str) -> bool:
        """Remove ``key`` from its place here; whether it was there."""

    def put(self, storage: Any, value: Any, key: Digest) -> Digest:
        """Write one entry here; returns its key."""
        self.put_many(storage, [(key, value)])
        return key

    def holds(self, storage: Any, key: str) -> bool:
        """Whether ``key`` is in its place here (a damaged shared file holds nothing)."""
        file, group = self.place(storage, key)
        return os.path.isfile(file) and (group is None or shared.holds(file, group))


@dataclasses.dataclass(frozen=True)
class PerKeyFiles(H5Layout):
    """One file per key, ``root/a3/f9/c1…``, written to a temporary file and renamed."""

    def place(self, storage: Any, key: str, large: bool = False) -> tuple[str, str | None]:
        # docstring inherited
        return storage._file(key), None

    def put_many(self, storage: Any, items: Sequence[tuple[str, Any]]) -> None:
        # docstring inherited
        for key, value in items:
            FileStorage.put(storage, value, Digest(key))

    def evict(self, storage: Any, key: str) -> bool:
        # docstring inherited
        try:
            os.unlink(storage._file(key))
        except FileNotFoundError:
            return False
        return True


@dataclasses.dataclass(frozen=True)
class GroupedFiles(H5Layout):
    """Keys grouped by their first ``prefix_length`` characters in shared files.

    ``root/a.h5`` (1–2 characters), ``root/a3/a3f.h5`` (3–4) or
    ``root/a3/f9/a3f9c.h5`` (5–8); an array or frame too large for a
    shared file gets a per-key file.
    """

    prefix_length: int = 2

    def place(self, storage: Any, key: str, large: bool = False) -> tuple[str, str | None]:
        # docstring inherited
        if large:
            return storage._file(key), None
        return shared_file(storage.root, key[: self.prefix_length]), key

    def put_many(self, storage: Any, items: Sequence[tuple[str, Any]]) -> None:
        # docstring inherited: one rewrite of each shared file for all its new entries
        by_file: dict[str, dict[str, Any]] = {}
        for key, value in items:
            if type(value) is not shared.Moved and shared.too_large(value):
                PerKeyFiles().put(storage, value, Digest(key))
                continue
            by_file.setdefault(self.place(storage, key)[0], {})[key] = value
        for file, entries in by_file.items():
            _add(storage, file, entries)
        storage._damaged.difference_update(k for k, _ in items)

    def evict(self, storage: Any, key: str) -> bool:
        # docstring inherited
        file, _ = self.place(storage, key)
        if not os.path.isfile(file):
            return False
        with shared.locked(file):
            keys = shared.keys_for_update(file, storage._damaged)
            if keys is None or key not in keys:
                return False
            shared.rewrite(file, keys, {key}, None, storage._replace)
        return True


def _add(storage: Any, file: str, entries: dict[str, Any]) -> None:
    """Add ``entries`` to the shared file ``file`` in one rewrite (its lock held).

    A key already there is kept where the storage is content-addressed
    (its content is the same) and the entry is not known to be damaged;
    otherwise it is replaced.
    """
    os.makedirs(os.path.dirname(file), exist_ok=True)
    with shared.locked(file):
        keys = shared.keys_for_update(file, storage._damaged)
        present = set() if keys is None else keys & entries.keys()  # replaced, or kept:
        if storage.content_addressed:
            kept = present - storage._damaged
            entries = {k: v for k, v in entries.items() if k not in kept}
            present -= kept
        if not entries:
            return

        def add(temporary: str) -> None:
            moved = {k: v for k, v in entries.items() if type(v) is shared.Moved}
            shared.copy_in(temporary, moved)
            write_entries(temporary, {k: v for k, v in entries.items() if k not in moved})

        shared.rewrite(file, keys, present, add, storage._replace)


def shared_file(root: Any, prefix: str) -> str:
    """The shared file of the keys starting with ``prefix`` (1 to 8 characters) under ``root``."""
    sep, root = os.sep, str(root)
    if len(prefix) <= 2:
        return f"{root}{sep}{prefix}{shared.SUFFIX}"
    if len(prefix) <= 4:
        return f"{root}{sep}{prefix[:2]}{sep}{prefix}{shared.SUFFIX}"
    return f"{root}{sep}{prefix[:2]}{sep}{prefix[2:4]}{sep}{prefix}{shared.SUFFIX}"


def layout_for(prefix_length: int) -> H5Layout:
    """The layout of ``prefix_length``: 0 for one file per key, 1–8 for shared files."""
    return PerKeyFiles() if prefix_length == 0 else GroupedFiles(prefix_length)


def others(layout: H5Layout) -> tuple[H5Layout, ...]:
    """Every layout but ``layout``: where a store being moved may still hold an entry."""
    lengths = range(MAX_PREFIX_LENGTH + 1)
    return tuple(layout_for(n) for n in lengths if n != layout.prefix_length)
