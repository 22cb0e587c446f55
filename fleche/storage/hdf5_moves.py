"""Changing the layout of an HDF5 store: refix, consolidate, relocate, rebag.

A move between layouts is the generic transfer
(:func:`fleche.storage.transfer.copy_entries`) from the entries that are
not where the storage's layout puts them (:class:`Misplaced`) to that
layout (:class:`Placed`), removing each from its old place once the new
copy is in.  Entries travel as stored (no decoding, no version check:
their integrity checks travel with them), a shared file is rewritten once
per batch, and an interruption loses nothing: run it again to finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import hdf5_shared as shared
from .hdf5_entry import is_bag
from .hdf5_listing import chunks, holders
from .transfer import copy_entries

__all__ = ["LayoutChangesMixin", "Misplaced", "Placed"]


class Misplaced:
    """The entries of an HDF5 storage that are not where its layout puts them (a transfer source)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.found: dict[str, list[shared.Moved]] = {}

    def keys(self) -> Iterator[str]:
        layout, root = self.storage.layout, self.storage.root
        for chunk in chunks(str(root), ""):
            for file, group, held in list(holders(str(root), chunk)):
                large = group is None and os.path.getsize(file) > shared.SHARED_LIMIT
                for key in sorted(held):
                    if layout.place(self.storage, key, large)[0] == file:
                        continue
                    if key not in self.found:
                        yield key
                    source = shared.Moved(file, None if group is None else key)
                    self.found.setdefault(key, []).append(source)

    def has(self, key: str) -> bool:
        return key in self.found

    def read(self, key: str) -> shared.Moved:
        return self.found[key][0]

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        raise TypeError("misplaced entries are a source only")

    def remove(self, keys: Sequence[str]) -> None:
        """Remove every misplaced copy of ``keys``: per-key files, then one rewrite per shared file."""
        drop: dict[str, set[str]] = {}
        for key in keys:
            for source in self.found.pop(key, ()):
                if source.group is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(source.file)
                else:
                    drop.setdefault(source.file, set()).add(key)
        for file, gone in drop.items():
            with shared.locked(file):
                present = shared.keys_for_update(file)
                if present is not None and gone & present:
                    shared.rewrite(file, present, gone & present, None, self.storage._replace)


class Placed:
    """The entries of an HDF5 storage in its layout's places (a transfer target)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def keys(self) -> Iterator[str]:
        return iter(())  # only ever a target

    def has(self, key: str) -> bool:
        return self.storage.layout.holds(self.storage, key)

    def read(self, key: str) -> Any:
        raise KeyError(key)

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        self.storage.layout.put_many(self.storage, items)

    def remove(self, keys: Sequence[str]) -> None:
        raise TypeError("placed entries are a target only")


class LayoutChangesMixin:
    """``refix``, ``consolidate``, ``relocate`` and ``rebag`` of an HDF5 storage."""

    def refix(self, prefix_length: int) -> Any:
        """Move every entry into the layout of ``prefix_length``; returns the storage for it.

        Each entry is copied (as stored: no decoding, no version check) and
        the new file is in place before the old copy is removed, so an
        interruption loses nothing: run it again, or :meth:`relocate` on
        the returned storage, to finish.  Run it while no other process
        writes to the store.
        """
        target = dataclasses.replace(self, prefix_length=prefix_length)
        target.relocate()
        return target

    @classmethod
    def consolidate(cls, root: Path | str, prefix_length: int = 2, **options: Any) -> Any:
        """The storage of ``root`` in the grouped layout of ``prefix_length``, entries moved there.

        E.g. gather the per-key files a cluster job wrote into shared files:
        ``ValueBagOfHoldingH5File.consolidate("store/values")``.  ``options``
        are the other fields of the storage.  See :meth:`refix`.
        """
        storage = cls(root, prefix_length=prefix_length, **options)
        storage.relocate()
        return storage

    def relocate(self, progress: Any = None) -> int:
        """Move every entry not where this storage's layout puts it; returns how many moved.

        Finishes an interrupted :meth:`refix` or :meth:`consolidate`.  New
        copies land before old ones go (see :meth:`refix`);
        ``progress(done, total)`` is called as batches are moved.
        """
        tally = copy_entries(Misplaced(self), Placed(self), remove=True, progress=progress)
        return tally.copied + tally.skipped

    def rebag(self, version_validator: str | None = None) -> int:
        """Rewrite every bagofholding entry with the installed package versions; returns how many.

        Each bag is loaded under ``version_validator`` (default: this
        storage's) and written again, replacing the old one atomically,
        so that after an upgrade the entries a strict validator would
        refuse are readable again.  Arrays, frames and plain data record
        no versions and are left as they are; an entry that cannot be
        loaded is left too (with a :class:`~fleche.errors.CorruptEntryWarning`).
        """
        reader = dataclasses.replace(self, version_validator=version_validator or self._validator)
        count = 0
        for key in list(self.list()):
            file, path = self.location(key)
            if not is_bag(str(file), None if path == "/" else path[1:]):
                continue
            try:
                value = reader.get(key)
            except KeyError:
                continue
            self._damaged.add(key)  # what put replaces even where content names the key
            self.put(value, key)
            count += 1
        return count
