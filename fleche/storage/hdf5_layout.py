"""Changing the layout of an HDF5 store: refix, consolidate, relocate, rebag.

A mixin of :class:`~fleche.storage.bagofholding_file.BagOfHoldingH5FileBackend`,
whose layout (``_place``, ``_holders``, ``_chunks``) it moves entries into.
Entries are copied as stored (no decoding, no version check: their
integrity checks travel with them) and every new copy is in place before
the old one is removed, so an interruption loses nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from ..digest import Digest
from . import hdf5_shared as shared
from .file import FileStorage
from .hdf5_entry import is_bag

__all__ = ["LayoutChangesMixin"]


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

    def relocate(self) -> int:
        """Move every entry not where this storage's layout puts it; returns how many moved.

        Finishes an interrupted :meth:`refix` or :meth:`consolidate`.  New
        copies land before old ones go (see :meth:`refix`).
        """
        moved = 0
        for chunk in self._chunks(""):
            moved += self._consolidate(chunk)
        return moved

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

    def _consolidate(self, chunk: str) -> int:
        misplaced: dict[str, dict[str, shared.Moved]] = {}  # target file -> key -> source
        for file, group, held in list(self._holders(chunk)):
            large = group is None and os.path.getsize(file) > shared.SHARED_LIMIT
            for key in held:
                target, _ = self._place(key, large)
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
