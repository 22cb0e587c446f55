"""The integrity check of an HDF5 entry: an xxh3-128 of its key and of what it stores.

HDF5 reads a flipped bit in a dataset without complaint, and a per-key file
copied over another key's file is a valid file: without a check both would
load as a wrong value.  So every entry carries the attribute
:data:`CHECK`, the xxh3-128 digest of its key and of its stored data, and
a read recomputes it before decoding anything: a mismatch reads as a miss
with a :class:`~fleche.errors.CorruptEntryWarning` (see
:mod:`fleche.storage.bagofholding_file`).

Arrays and pickled bytes, the fast formats, are checked over the bytes the
read produces anyway (xxh3 runs at memory speed: a fraction of the read);
frames and bags over every dataset and attribute of the entry, in name
order, which costs one more pass over data whose decoding costs more.

A shared file (many keys' entries in one file) carries the attribute
:data:`PREFIX`, the key prefix it was made for: a shared file swapped with
another prefix's, or replaced by a foreign one, has none of the keys asked
of it, and the prefix tells that apart from an ordinary miss
(:mod:`.hdf5_shared`).

It guards against accidents (bit rot, torn copies, swapped files), not
against a writer who recomputes it: ``docs/security.rst``.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import xxhash

__all__ = [
    "CHECK",
    "PREFIX",
    "array_seal",
    "bytes_seal",
    "read_attribute",
    "read_check",
    "read_tree",
    "tree_seal",
]

#: The attribute of an entry holding its check (16 raw bytes).
CHECK = "fleche_check"
_CHECK = CHECK.encode()
#: The attribute of a shared file holding the key prefix it is for (bytes).
PREFIX = "fleche_prefix"


def _hasher(key: str, kind: bytes) -> Any:
    hasher = xxhash.xxh3_128()
    hasher.update(key.encode())
    hasher.update(kind)
    return hasher


def _feed(hasher: Any, data: Any) -> None:
    """One length-prefixed part, so that no two sequences of parts hash alike."""
    view = memoryview(data)
    hasher.update(view.nbytes.to_bytes(8, "little"))
    hasher.update(view)


def bytes_seal(key: str, kind: bytes, payload: Any) -> np.void:
    """The check of an entry of ``kind`` stored as the bytes ``payload``."""
    hasher = _hasher(key, kind)
    _feed(hasher, payload)
    return np.void(hasher.digest())


def array_seal(key: str, array: np.ndarray) -> np.void:
    """The check of an ``array`` entry: the dtype, the shape and the bytes of the array."""
    hasher = _hasher(key, b"array")
    _feed(hasher, array.dtype.str.encode())
    _feed(hasher, repr(array.shape).encode())
    _feed(hasher, np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return np.void(hasher.digest())


def read_tree(group: h5py.Group) -> dict[str, Any]:
    """Every dataset under ``group``, read whole, by path: what :func:`tree_seal` and a decoder share.

    Variable-length strings come as ``str`` (decoded by h5py), as a frame's
    text columns are written; a bag's are checked as the bytes h5py reads.
    """
    contents: dict[str, Any] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            text = h5py.check_string_dtype(item.dtype) is not None
            contents[name] = item.asstr()[()] if text else item[()]

    group.visititems(visit)
    return contents


def tree_seal(key: str, group: h5py.Group, contents: dict[str, Any] | None = None) -> np.void:
    """The check of a frame or bag entry: every attribute and dataset under ``group``, by name.

    ``contents`` (from :func:`read_tree`) saves reading the datasets again.
    """
    hasher = _hasher(key, b"tree")
    _feed_attributes(hasher, group, skip=CHECK)

    def visit(name: str, item: Any) -> None:
        _feed(hasher, name.encode())
        _feed_attributes(hasher, item)
        if isinstance(item, h5py.Dataset):
            _feed(hasher, item.dtype.str.encode())
            _feed(hasher, repr(item.shape).encode())
            _feed_value(hasher, item[()] if contents is None else contents[name])

    group.visititems(visit)
    return np.void(hasher.digest())


def _feed_attributes(hasher: Any, item: Any, skip: str = "") -> None:
    for name in sorted(item.attrs):
        if name != skip:
            _feed(hasher, name.encode())
            _feed_value(hasher, item.attrs[name])


def _feed_value(hasher: Any, value: Any) -> None:
    """A dataset's or attribute's value: its bytes, element by element for object arrays."""
    if isinstance(value, str):
        _feed(hasher, value.encode("utf-8", "surrogatepass"))
        return
    if isinstance(value, bytes):
        _feed(hasher, value)
        return
    if isinstance(value, h5py.Empty):
        _feed(hasher, repr(value.dtype).encode())
        return
    array = np.asarray(value)
    if array.dtype.kind != "O":
        _feed(hasher, np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        return
    items = array.reshape(-1).tolist()
    for empty in (b"", ""):  # variable-length strings: C-speed passes, not one per item
        try:
            joined = empty.join(items)
        except TypeError:
            continue
        _feed(hasher, np.fromiter(map(len, items), np.int64, len(items)))
        _feed(hasher, joined if empty == b"" else joined.encode("utf-8", "surrogatepass"))
        return
    for item in items:  # nested arrays, references, text
        if isinstance(item, str | bytes | np.ndarray):
            _feed_value(hasher, item)
        else:
            _feed(hasher, type(item).__name__.encode())


def read_check(entry: Any) -> bytes | None:
    """The check stored on an entry (a low-level group id); ``None`` if it has none."""
    return read_attribute(entry, _CHECK)


def read_attribute(entry: Any, name: bytes) -> bytes | None:
    """The raw bytes of a fixed-size attribute of a low-level group id; ``None`` if absent."""
    try:  # one call, not exists() then open(): this is on every hit
        attribute = h5py.h5a.open(entry, name)
    except KeyError:
        return None
    value = np.empty((), dtype=attribute.dtype)
    attribute.read(value)
    return value.tobytes()
