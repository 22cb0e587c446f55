"""Listing an HDF5 store: per-key files and shared files of every layout, side by side.

A store being moved between layouts holds keys in both, so listing reads
the directory tree once for all of them: one two-character chunk of the
key space at a time (what ``expand`` and ``list`` need, lazily).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..digest import Digest
from . import hdf5_shared as shared
from .hdf5_layout import shared_file

__all__ = ["chunks", "holders", "sorted_keys"]

_HEX = "0123456789abcdef"


def _related(stem: str, prefix: str) -> bool:
    """Whether a shared file for keys starting ``stem`` may hold keys starting ``prefix``."""
    return stem.startswith(prefix) or prefix.startswith(stem)


def sorted_keys(root: str, prefix: str) -> Iterator[Digest]:
    """Stored keys starting with ``prefix``, sorted, one two-character chunk at a time."""
    for chunk in chunks(root, prefix):
        keys: set[str] = set()
        for _, _, held in holders(root, max(chunk, prefix, key=len)):
            keys.update(held)
        yield from (Digest(k) for k in sorted(keys))


def chunks(root: str, prefix: str) -> list[str]:
    """The two-character prefixes under which something may be stored, matching ``prefix``."""
    if len(prefix) >= 2:
        return [prefix[:2]]
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries]
    except FileNotFoundError:
        return []
    found = {n for n in names if shared.is_hex(n, 2)}
    for name in names:
        stem = name[: -len(shared.SUFFIX)]
        if name.endswith(shared.SUFFIX) and shared.is_hex(stem, len(stem)) and 1 <= len(stem) <= 2:
            found.update([stem] if len(stem) == 2 else (stem + c for c in _HEX))
    return sorted(c for c in found if c.startswith(prefix))


def holders(root: str, prefix: str) -> Iterator[tuple[str, str | None, set[str]]]:
    """``(file, group, keys)`` for every file holding keys that start with ``prefix`` (2+ characters).

    ``group`` is ``None`` for a per-key file and ``""`` for a shared
    file (whose groups are its keys).  Reads one fan-out subtree (one
    directory for 4+ characters) and the shared files whose prefix fits.
    """
    sep = os.sep
    files = [shared_file(root, prefix[:1]), shared_file(root, prefix[:2])]
    level = f"{root}{sep}{prefix[:2]}"
    if len(prefix) >= shared.SPLIT:  # one leaf directory: no listing above it
        subdirs = [prefix[2:4]]
        files += [shared_file(root, prefix[:3]), shared_file(root, prefix[:4])]
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
