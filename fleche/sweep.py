"""Leftovers of killed writers: found by ``verify``, removed by ``gc``.

A writer killed mid-write leaves its temporary file (never read, never
renamed into place) and, in a shared HDF5 file's directory, an empty lock
file.  Each storage that writes such files declares it with a
``strays(older_than)`` method (:meth:`fleche.storage.file.FileStorage.strays`);
this module asks every storage of a cache, compositions included.
Only leftovers older than a grace (an hour, as for ``gc``) count: a live
writer finishes, or touches its files, long before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .expiry import GC_GRACE, Duration, seconds
from .storage.file_leftovers import remove_stray

__all__ = ["remove_strays", "strays"]


def _storages(cache: Any) -> Iterator[Any]:
    """Every storage under a cache: its own values and calls, or those of the caches it composes."""
    for name in ("values", "calls"):
        storage = getattr(cache, name, None)
        if storage is not None:
            yield storage
    inner = getattr(cache, "cache", None)
    if inner is not None:
        yield from _storages(inner)
    for member in (*getattr(cache, "layers", ()), *getattr(cache, "caches", ())):
        yield from _storages(member)


def strays(cache: Any, grace: Duration | None = None) -> list[Path]:
    """The leftovers of killed writers in ``cache``'s storages, untouched for ``grace`` (an hour)."""
    horizon = time.time() - seconds(GC_GRACE if grace is None else grace, "grace")
    found: dict[Path, None] = {}
    for storage in _storages(cache):
        find = getattr(storage, "strays", None)
        if callable(find):
            found.update(dict.fromkeys(find(horizon)))
    return sorted(found)


def remove_strays(cache: Any, grace: Duration | None = None, dry_run: bool = False) -> list[Path]:
    """Remove the leftovers :func:`strays` finds (only list them with ``dry_run``); those removed."""
    found = strays(cache, grace)
    return found if dry_run else [path for path in found if remove_stray(path)]
