"""One value as one HDF5 group: the entry format of the HDF5 storages.

An entry is the root group of a file or a group named by its key inside a
shared file, in one of four formats, chosen by the value:

``array``
    A numpy array of a numeric or boolean dtype: the dataset ``array``,
    written and read by h5py directly (the speed of raw h5py).
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
    ``index``, so HDF5 tools show the data.  bagofholding stores a frame
    through its pickle protocol, which is slow (a 100,000-row string column
    takes minutes) and ties the file to pandas internals.
(no ``fleche_format`` attribute)
    Everything else, through :class:`bagofholding.H5Bag`: browsable trees
    of the objects' reduced state (arrays inside them are datasets), with
    the versions of the packages that made them.

``benchmarks/bench_hdf5.py`` measures each path against raw h5py.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import pathlib
import pickle
import sys
import uuid
from typing import Any

import h5py
import numpy as np
from bagofholding import H5Bag

from ..call import Call, DigestedCall
from ..digest import Digest
from .destructuring import DigestedAttrs, DigestedDataclass, DigestedDict, DigestedIterable

__all__ = [
    "FORMAT",
    "NoEntry",
    "UnreadableEntry",
    "copy_entry",
    "is_plain",
    "read_entry",
    "write_entry",
]

#: Attribute naming the format of a fleche-written entry (absent for bags).
FORMAT = "fleche_format"
_FORMAT = FORMAT.encode()
#: How strictly the bagofholding version of a stored bag must match: the
#: library's own floor (``min_compatible_version``) applies on top of it.
BAG_VERSION_VALIDATOR = "semantic-major"
_PROTOCOL = 5
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
#: Array dtypes stored as a dataset as they are (h5py's native types).
_ARRAY_TYPES = frozenset(
    np.dtype(c).type
    for c in ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
)
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_RECORDS = frozenset(
    {DigestedIterable, DigestedDict, DigestedDataclass, DigestedAttrs, Call, DigestedCall}
)


class UnreadableEntry(ValueError):
    """An entry's bytes are not something this reader can decode (internal)."""


class NoEntry(LookupError):
    """A shared file holds no entry under the key asked for (internal: a miss, not damage)."""


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


def write_entry(file: str, group: str | None, value: Any) -> None:
    """Write ``value`` as the entry at ``group`` of ``file`` (``None``: a new file's root).

    A shared file must exist and must not hold ``group`` yet.
    """
    array = type(value) is np.ndarray and value.dtype.type in _ARRAY_TYPES
    payload = None if array else _pickled(value)
    frame = None if array or payload is not None else _frame_parts(value)
    if not array and payload is None and frame is None:
        H5Bag.save(value, file if group is None else f"{file}/{group}")
        return
    with h5py.File(file, "w" if group is None else "r+") as handle:
        target = handle if group is None else handle.create_group(group)
        if array:
            target.attrs[FORMAT] = np.bytes_("array")
            target.create_dataset("array", data=value)
        elif payload is not None:
            target.attrs[FORMAT] = np.bytes_("pickle")
            target.create_dataset("pickle", data=np.frombuffer(payload, dtype=np.uint8))
        else:
            _write_frame(target, frame)


def _pickled(value: Any) -> bytes | None:
    if not is_plain(value):
        return None
    try:
        return pickle.dumps(value, protocol=_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None  # e.g. a class that cannot be imported by name: bagofholding says why


def _frame_parts(value: Any) -> dict[str, Any] | None:
    """A DataFrame or Series split into encoded arrays, if the ``frame`` format holds it exactly."""
    pd = sys.modules.get("pandas")
    if pd is None or type(value) not in (pd.DataFrame, pd.Series):
        return None
    if value.attrs or not value.flags.allows_duplicate_labels:
        return None  # kept by bagofholding, which keeps them
    series = type(value) is pd.Series
    header: dict[str, Any] = {"series": series, "index_names": list(value.index.names)}
    if series:
        header["name"] = value.name
        columns = [_encode_array(value, pd)]
        labels = None
    else:
        header["columns_name"] = value.columns.name
        columns = [_encode_array(value.iloc[:, i], pd) for i in range(value.shape[1])]
        labels = _encode_index(value.columns, pd)
        if labels is None:
            return None
    index = _encode_index(value.index, pd)
    if index is None or any(c is None for c in columns) or not is_plain(header):
        return None
    return {"header": header, "index": index, "labels": labels, "columns": columns, "value": value}


def _encode_array(values: Any, pd: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
    """A Series or Index as ``(dataset data, attributes)``, or ``None`` if not exactly kept."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        data = values.to_numpy(copy=False)
        if dtype.type in _ARRAY_TYPES:
            return data, {"kind": "numpy"}
        if dtype.kind in "mM":
            return data.view(np.int64), {"kind": "time", "dtype": dtype.str}
        if dtype.kind == "O" and pd.api.types.infer_dtype(data, skipna=False) in (
            "string",
            "empty",
        ):
            return data, {"kind": "object"}
        return None
    if isinstance(dtype, pd.DatetimeTZDtype):  # instants in UTC, and the zone
        data = values.to_numpy(dtype=f"M8[{dtype.unit}]")
        return data.view(np.int64), {"kind": "time", "dtype": data.dtype.str, "tz": str(dtype.tz)}
    if isinstance(dtype, pd.StringDtype):
        mask = np.asarray(values.isna())
        data = values.to_numpy(dtype=object, na_value="")
        na = "nan" if isinstance(dtype.na_value, float) else "NA"
        return data, {"kind": "string", "storage": dtype.storage, "na": na, "mask": mask}
    if isinstance(
        values.array, (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    ):
        mask = np.asarray(values.isna())
        data = values.to_numpy(dtype=dtype.numpy_dtype, na_value=dtype.numpy_dtype.type(0))
        return data, {"kind": "masked", "dtype": dtype.name, "mask": mask}
    return None


def _encode_index(index: Any, pd: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
    if type(index) is pd.RangeIndex:
        return np.arange(0), {"kind": "range", "range": [index.start, index.stop, index.step]}
    if isinstance(index, pd.MultiIndex | pd.CategoricalIndex | pd.IntervalIndex | pd.PeriodIndex):
        return None
    encoded = _encode_array(index, pd)
    freq = getattr(index, "freqstr", None)  # a DatetimeIndex or TimedeltaIndex
    if encoded is not None and freq is not None:
        encoded[1]["freq"] = freq
    return encoded


def _write_frame(target: h5py.Group, parts: dict[str, Any]) -> None:
    target.attrs[FORMAT] = np.bytes_("frame")
    target.attrs["header"] = np.void(pickle.dumps(parts["header"], protocol=_PROTOCOL))
    _write_array(target, "index", parts["index"])
    value = parts["value"]
    if parts["labels"] is None:
        labels = [value.name]
    else:
        _write_array(target, "column_labels", parts["labels"])
        labels = list(value.columns)
    group = target.create_group("columns")
    for position, (encoded, label) in enumerate(zip(parts["columns"], labels, strict=True)):
        dataset = _write_array(group, str(position), encoded)
        dataset.attrs["label"] = str(label)


def _write_array(
    target: h5py.Group, name: str, encoded: tuple[np.ndarray, dict[str, Any]]
) -> h5py.Dataset:
    data, attributes = encoded
    attributes = dict(attributes)
    mask = attributes.pop("mask", None)
    if attributes["kind"] in ("object", "string"):
        dataset = target.create_dataset(name, data=data, dtype=h5py.string_dtype())
    else:
        dataset = target.create_dataset(name, data=data)
    if mask is not None and mask.any():
        target.create_dataset(f"{name}_mask", data=mask)
    for key, item in attributes.items():
        dataset.attrs[key] = item
    return dataset


# -- reading --------------------------------------------------------------------


def read_entry(file: str, group: str | None, version_validator: str) -> Any:
    """The value of the entry at ``group`` of ``file`` (``None``: the file's root).

    Raises ``FileNotFoundError`` if the file is gone, :class:`NoEntry` if
    the file has no such group, anything else if the entry cannot be decoded.
    """
    # The fast formats are read through h5py's low-level API: the high-level
    # attribute and dataset accessors cost ~200 µs of a ~550 µs small hit
    # (call records, container nodes; benchmarks/bench_hdf5.py).
    with h5py.File(file, "r") as handle:
        if group is None:
            entry = handle.id
        elif group in handle:
            entry = h5py.h5g.open(handle.id, group.encode())
        else:
            raise NoEntry(group)
        kind = _format(entry)
        if kind == b"array":
            return _dataset(entry, b"array")
        if kind == b"pickle":
            return pickle.loads(_dataset(entry, b"pickle"))
        if kind == b"frame":
            return _read_frame(handle if group is None else handle[group])
        if kind is not None:
            raise UnreadableEntry(f"unknown entry format {kind!r} (written by a newer fleche?)")
    bag = H5Bag(
        file if group is None else f"{file}/{group}", bag_version_validator=BAG_VERSION_VALIDATOR
    )
    return bag.load(version_validator=version_validator)


def _format(entry: Any) -> bytes | None:
    """The ``fleche_format`` attribute of an entry (a low-level group id); ``None`` for a bag."""
    if not h5py.h5a.exists(entry, _FORMAT):
        return None
    attribute = h5py.h5a.open(entry, _FORMAT)
    if attribute.dtype.kind != "S":
        raise UnreadableEntry(f"the {FORMAT} attribute has type {attribute.dtype}")
    value = np.empty((), dtype=attribute.dtype)
    attribute.read(value)
    return value.item()


def _dataset(entry: Any, name: bytes) -> np.ndarray:
    """A whole dataset of an entry (a low-level group id), as a new array of its own dtype."""
    dataset = h5py.h5d.open(entry, name)
    out = np.empty(dataset.shape, dtype=dataset.dtype)
    if out.size:
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _read_frame(entry: h5py.Group) -> Any:
    import pandas as pd

    header = pickle.loads(entry.attrs["header"].tobytes())
    index = _read_index(entry, "index", pd)
    index.names = header["index_names"]
    group = entry["columns"]
    count = sum(1 for name in group if not name.endswith("_mask"))
    columns = []
    for position in range(count):
        values, dtype = _read_values(group, str(position), pd)
        columns.append(pd.Series(values, index=index, dtype=dtype, copy=False))
    if header["series"]:
        return columns[0].rename(header["name"])
    frame = pd.DataFrame(dict(enumerate(columns)), copy=False)
    frame.columns = _read_index(entry, "column_labels", pd)
    frame.columns.name = header["columns_name"]
    return frame


def _read_index(entry: h5py.Group, name: str, pd: Any) -> Any:
    dataset = entry[name]
    if dataset.attrs["kind"] == "range":
        return pd.RangeIndex(*(int(x) for x in dataset.attrs["range"]))
    values, dtype = _read_values(entry, name, pd)
    index = pd.Index(values, dtype=dtype, copy=False)
    if "freq" in dataset.attrs:
        index = type(index)(index, freq=dataset.attrs["freq"])
    return index


def _read_values(group: h5py.Group, name: str, pd: Any) -> tuple[Any, Any]:
    """The values of one stored array and the dtype pandas must keep (``None``: theirs)."""
    dataset = group[name]
    kind = dataset.attrs["kind"]
    if kind == "numpy":
        return dataset[()], None
    if kind == "time":
        values = dataset[()].view(np.dtype(dataset.attrs["dtype"]))
        if "tz" in dataset.attrs:
            values = (
                pd.DatetimeIndex(values).tz_localize("UTC").tz_convert(dataset.attrs["tz"]).array
            )
        return values, None
    if kind == "object":
        return dataset.asstr()[()], object  # pandas would infer its string dtype
    data = dataset.asstr()[()] if kind == "string" else dataset[()]
    mask = group[f"{name}_mask"][()] if f"{name}_mask" in group else np.zeros(len(data), dtype=bool)
    if kind == "string":
        na = np.nan if dataset.attrs["na"] == "nan" else pd.NA
        data[mask] = na
        return pd.array(
            data, dtype=pd.StringDtype(storage=dataset.attrs["storage"], na_value=na)
        ), None
    if kind == "masked":
        array_type = pd.api.types.pandas_dtype(dataset.attrs["dtype"]).construct_array_type()
        return array_type(data, mask), None
    raise UnreadableEntry(f"unknown column kind {kind!r}")


# -- moving ---------------------------------------------------------------------


def copy_entry(source: h5py.Group, target: h5py.Group) -> None:
    """Copy an entry's attributes and members as they are (no decoding, no version check)."""
    for name, item in source.attrs.items():
        target.attrs[name] = item
    for name in source:
        source.copy(source[name], target, name=name)
