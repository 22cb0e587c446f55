"""One value as one HDF5 group: the entry format of the HDF5 storages.

An entry is the root group of a file or a group named by its key inside a
shared file, in one of five formats, chosen by the value:

``array``
    A numpy array of a numeric, boolean or fixed-width bytes (``S``)
    dtype: the dataset ``array``, written and read by h5py directly (the
    speed of raw h5py).
``time``
    A numpy ``datetime64`` or ``timedelta64`` array: its ``int64`` counts
    as the dataset ``array``, its dtype (``<M8[ns]``, ...) in the
    attribute ``fleche_dtype``; read at the speed of an ``array`` entry
    (bagofholding, which stored these before, takes ~300 ms for 10 MB).
``pickle``
    Plain Python data (builtins, digests, destructured container nodes,
    call records) as pickled bytes in a ``uint8`` dataset.  bagofholding
    writes one HDF5 object per Python object (a list of 10,000 ints takes
    seconds to save and to load), so the small nodes that make up most
    entries take this fast path.  Their pickles name only the standard
    library and fleche, so no numpy or pandas upgrade breaks them.
``frame``
    A pandas DataFrame or Series whose columns are numeric, datetime,
    string or nullable arrays: one dataset per column under ``columns/``
    (named by position, the label in an attribute) and the row index under
    ``index``, so HDF5 tools show the data (:mod:`.hdf5_frame`).
    bagofholding stores a frame through its pickle protocol, which is slow
    (a 100,000-row string column takes minutes) and ties the file to
    pandas internals.
(no ``fleche_format`` attribute)
    Everything else, through :class:`bagofholding.H5Bag`: browsable trees
    of the objects' reduced state (arrays inside them are datasets), with
    the versions of the packages that made them.

Every entry also carries its integrity check, verified before anything is
decoded (:mod:`.hdf5_check`).

``benchmarks/bench_hdf5.py`` measures each path against raw h5py.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import os
import pathlib
import pickle
import uuid
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
from bagofholding import H5Bag

from ..call import Call, DigestedCall
from ..digest import Digest
from .destructuring import DigestedAttrs, DigestedDataclass, DigestedDict, DigestedIterable
from .hdf5_check import (
    CHECK,
    PREFIX,
    array_seal,
    bytes_seal,
    read_attribute,
    read_check,
    read_tree,
    tree_seal,
)
from .hdf5_frame import ARRAY_TYPES, PROTOCOL, frame_parts, read_frame, write_frame

__all__ = [
    "FORMAT",
    "NoEntry",
    "UnreadableEntry",
    "copy_entry",
    "is_bag",
    "is_plain",
    "read_entry",
    "write_entry",
]

#: Attribute naming the format of a fleche-written entry (absent for bags).
FORMAT = "fleche_format"
_FORMAT = FORMAT.encode()
_PREFIX = PREFIX.encode()
#: Attribute of a ``time`` entry naming the dtype its ``int64`` dataset is a view of.
DTYPE = "fleche_dtype"
_DTYPE = DTYPE.encode()
#: How entries are opened for reading: closing the file closes everything opened in it
#: (as ``h5py.File.close`` does), so no dataset left referenced keeps the file open.
_READING = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
_READING.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
#: How strictly the bagofholding version of a stored bag must match: the
#: library's own floor (``min_compatible_version``) applies on top of it.
BAG_VERSION_VALIDATOR = "semantic-major"
_ATOMS = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        Digest,
        range,
        slice,
        type(Ellipsis),
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
        datetime.timezone,
        decimal.Decimal,
        fractions.Fraction,
        uuid.UUID,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        pathlib.PosixPath,
        pathlib.WindowsPath,
    }
)
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_RECORDS = frozenset(
    {DigestedIterable, DigestedDict, DigestedDataclass, DigestedAttrs, Call, DigestedCall}
)


class UnreadableEntry(ValueError):
    """An entry's bytes are not something this reader can decode (internal)."""


class NoEntry(LookupError):
    """A shared file holds no entry under the key asked for (internal).

    ``prefix`` is the key prefix the file says it is for (``None`` if it
    says none): a miss, unless the file is another prefix's.
    """

    def __init__(self, group: str, prefix: bytes | None) -> None:
        super().__init__(group)
        self.prefix = prefix


def is_plain(value: Any) -> bool:
    """Whether ``value`` is built only of builtins, stdlib atoms and fleche records.

    Such values pickle without naming numpy, pandas or user modules (apart
    from the class of a destructured dataclass, which any format must name).
    """
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind in _ATOMS:
            continue
        if kind in _SEQUENCES:
            todo.extend(item)
        elif kind is dict:
            todo.extend(item.keys())
            todo.extend(item.values())
        elif kind in _RECORDS:
            todo.extend(getattr(item, name) for name in kind.__dataclass_fields__)
        elif kind is type and item.__module__ not in ("__main__", "builtins"):
            continue  # a class rebuilt from its fields, pickled by reference
        else:
            return False
    return True


# -- writing --------------------------------------------------------------------


def write_entry(file: str, group: str | None, value: Any, key: str) -> None:
    """Write ``value`` as the entry of ``key`` at ``group`` of ``file`` (``None``: a new file's root).

    A shared file must exist and must not hold ``group`` yet.  The entry
    gets its integrity check (:mod:`.hdf5_check`).
    """
    kind, data = _kind(value)
    if kind == "bag":
        H5Bag.save(value, file if group is None else f"{file}/{group}")
    with h5py.File(file, "w" if group is None and kind != "bag" else "r+") as handle:
        if group is None:
            target = handle
        else:
            target = handle[group] if kind == "bag" else handle.create_group(group)
        _fill(target, key, value, kind, data)


def write_entries(file: str, entries: Mapping[str, Any]) -> None:
    """Write each ``key: value`` as the group ``key`` of the existing shared file ``file``.

    As :func:`write_entry`, but the file is opened once for all of them.
    """
    kinds = {key: _kind(value) for key, value in entries.items()}
    for key, (kind, _) in kinds.items():
        if kind == "bag":
            H5Bag.save(entries[key], f"{file}/{key}")
    with h5py.File(file, "r+") as handle:
        for key, (kind, data) in kinds.items():
            target = handle[key] if kind == "bag" else handle.create_group(key)
            _fill(target, key, entries[key], kind, data)


def _kind(value: Any) -> tuple[str, Any]:
    """The format an entry of ``value`` gets, and what it is written from."""
    if type(value) is np.ndarray:
        dtype = value.dtype
        if dtype.type in ARRAY_TYPES or (dtype.kind == "S" and dtype.itemsize):
            return "array", None
        if dtype.kind in "mM":
            return "time", value.view(np.int64)
    payload = _pickled(value)
    if payload is not None:
        return "pickle", payload
    frame = frame_parts(value, is_plain)
    return ("bag", None) if frame is None else ("frame", frame)


def _fill(target: h5py.Group, key: str, value: Any, kind: str, data: Any) -> None:
    """Write the entry's datasets (all but a bag's, already written) and its integrity check."""
    if kind in ("array", "time"):
        target.attrs[FORMAT] = np.bytes_(kind)
        target.create_dataset("array", data=value if data is None else data)
        if kind == "time":
            target.attrs[DTYPE] = np.bytes_(value.dtype.str)
        target.attrs[CHECK] = array_seal(key, value)
    elif kind == "pickle":
        target.attrs[FORMAT] = np.bytes_("pickle")
        target.create_dataset("pickle", data=np.frombuffer(data, dtype=np.uint8))
        target.attrs[CHECK] = bytes_seal(key, b"pickle", data)
    else:
        contents = None
        if kind == "frame":
            target.attrs[FORMAT] = np.bytes_("frame")
            contents = write_frame(target, data)
        target.attrs[CHECK] = tree_seal(key, target, contents)


def _pickled(value: Any) -> bytes | None:
    if not is_plain(value):
        return None
    try:
        return pickle.dumps(value, protocol=PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None  # e.g. a class that cannot be imported by name: bagofholding says why


# -- reading --------------------------------------------------------------------


def read_entry(file: str, group: str | None, version_validator: str, key: str) -> Any:
    """The value of the entry of ``key`` at ``group`` of ``file`` (``None``: the file's root).

    Raises ``FileNotFoundError`` if the file is gone, :class:`NoEntry` if
    the file has no such group (with the prefix the file is for), anything else if the entry cannot be
    decoded or fails its integrity check.
    """
    # The file and the fast formats go through h5py's low-level API: the
    # high-level file object, attribute and dataset accessors cost ~200 µs
    # of a ~550 µs small hit (call records, container nodes) and ~0.5 ms of
    # a 10 MB array hit (benchmarks/bench_hdf5.py, bench_big_values.py).
    fid = h5py.h5f.open(os.fsencode(file), h5py.h5f.ACC_RDONLY, _READING)
    try:
        entry = fid if group is None else _group(fid, group)
        kind = read_attribute(entry, _FORMAT)  # None for a bag
        check = read_check(entry)
        if check is None:
            raise UnreadableEntry("it has no integrity check (written by an older fleche)")
        if kind in (b"array", b"time"):
            array = _dataset(entry, b"array")
            if kind == b"time":
                array = array.view(_time_dtype(entry, array))
            _verify(check, array_seal(key, array))
            return array
        if kind == b"pickle":
            payload = _dataset(entry, b"pickle")
            _verify(check, bytes_seal(key, b"pickle", payload))
            return pickle.loads(payload)
        if kind is not None and kind != b"frame":
            raise UnreadableEntry(f"unknown entry format {kind!r} (written by a newer fleche?)")
        with h5py.File(fid) as handle:
            tree = handle if group is None else handle[group]
            contents = read_tree(tree) if kind == b"frame" else None
            _verify(check, tree_seal(key, tree, contents))
            if kind == b"frame":
                return read_frame(tree, contents)
    finally:
        fid.close()  # and, by its close degree, everything opened in it
    bag = H5Bag(
        file if group is None else f"{file}/{group}", bag_version_validator=BAG_VERSION_VALIDATOR
    )
    return bag.load(version_validator=version_validator)


def _group(fid: Any, group: str) -> Any:
    """The group ``group`` of a shared file (a low-level file id); :class:`NoEntry` if it has none."""
    root = h5py.h5g.open(fid, b"/")
    name = group.encode()
    if name not in root:
        raise NoEntry(group, read_attribute(fid, _PREFIX))
    return h5py.h5g.open(root, name)


def _time_dtype(entry: Any, counts: np.ndarray) -> np.dtype:
    """The ``datetime64``/``timedelta64`` dtype a ``time`` entry's ``counts`` are a view of."""
    name = read_attribute(entry, _DTYPE)
    dtype = np.dtype(name.decode("ascii")) if name is not None else None
    if counts.dtype != np.int64 or dtype is None or dtype.kind not in "mM" or dtype.itemsize != 8:
        raise UnreadableEntry(f"a time entry of {counts.dtype} counts with the dtype {name!r}")
    return dtype


def _verify(stored: bytes, computed: np.void) -> None:
    if stored != computed.tobytes():
        raise UnreadableEntry(
            "its integrity check fails: its bytes changed after it was written, "
            "or it is another key's entry (a swapped file)"
        )


def _dataset(entry: Any, name: bytes) -> np.ndarray:
    """A whole dataset of an entry (a low-level group id), as a new array of its own dtype."""
    dataset = h5py.h5d.open(entry, name)
    out = np.empty(dataset.shape, dtype=dataset.dtype)
    if out.size:
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def is_bag(file: str, group: str | None) -> bool:
    """Whether the entry at ``group`` of ``file`` is a bagofholding bag (it records package versions)."""
    with h5py.File(file, "r") as handle:
        return FORMAT not in (handle if group is None else handle[group]).attrs


# -- moving ---------------------------------------------------------------------


def copy_entry(source: h5py.Group, target: h5py.Group) -> None:
    """Copy an entry's attributes and members as they are (no decoding, no version check)."""
    for name, item in source.attrs.items():
        target.attrs[name] = item
    for name in source:
        source.copy(source[name], target, name=name)
