"""The ``frame`` entry format: a pandas DataFrame or Series as one dataset per column.

Columns that are numeric, datetime, string or nullable arrays are stored
under ``columns/`` (named by position, the label in an attribute), the row
index under ``index``, so HDF5 tools show the data; anything else is left
to bagofholding (see :mod:`fleche.storage.hdf5_entry`).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

__all__ = ["ARRAY_TYPES", "PROTOCOL", "frame_parts", "read_frame", "write_frame"]

#: The pickle protocol of the small pickled parts of entries.
PROTOCOL = 5
#: Array dtypes stored as a dataset as they are (h5py's native types).
ARRAY_TYPES = frozenset(
    np.dtype(c).type
    for c in ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
)


def frame_parts(value: Any, is_plain: Callable[[Any], bool]) -> dict[str, Any] | None:
    """A DataFrame or Series split into encoded arrays, if the ``frame`` format holds it exactly.

    ``is_plain`` says whether the header (names, labels) pickles without
    naming anything but the standard library.
    """
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
        if dtype.type in ARRAY_TYPES:
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


def write_frame(target: h5py.Group, parts: dict[str, Any]) -> dict[str, Any]:
    """Write a frame's parts into ``target``; returns its datasets as a read would give them.

    So that its integrity check is computed without reading them back
    (see :func:`fleche.storage.hdf5_check.read_tree`).
    """
    contents: dict[str, Any] = {}
    target.attrs["header"] = np.void(pickle.dumps(parts["header"], protocol=PROTOCOL))
    _write_array(target, "index", parts["index"], contents)
    value = parts["value"]
    if parts["labels"] is None:
        labels = [value.name]
    else:
        _write_array(target, "column_labels", parts["labels"], contents)
        labels = list(value.columns)
    target.create_group("columns")
    for position, (encoded, label) in enumerate(zip(parts["columns"], labels, strict=True)):
        dataset = _write_array(target, f"columns/{position}", encoded, contents)
        dataset.attrs["label"] = str(label)
    return contents


def _write_array(
    target: h5py.Group,
    path: str,
    encoded: tuple[np.ndarray, dict[str, Any]],
    contents: dict[str, Any],
) -> h5py.Dataset:
    data, attributes = encoded
    attributes = dict(attributes)
    mask = attributes.pop("mask", None)
    if attributes["kind"] in ("object", "string"):
        dataset = target.create_dataset(path, data=data, dtype=h5py.string_dtype())
    else:
        dataset = target.create_dataset(path, data=data)
    contents[path] = data
    if mask is not None and mask.any():
        target.create_dataset(f"{path}_mask", data=mask)
        contents[f"{path}_mask"] = mask
    for key, item in attributes.items():
        dataset.attrs[key] = item
    return dataset


def read_frame(entry: h5py.Group, contents: dict[str, Any]) -> Any:
    """The frame or series of an entry whose datasets were read into ``contents`` (by path)."""
    import pandas as pd

    header = pickle.loads(entry.attrs["header"].tobytes())
    index = _read_index(entry, "index", contents, pd)
    index.names = header["index_names"]
    count = sum(1 for name in entry["columns"] if not name.endswith("_mask"))
    columns = []
    for position in range(count):
        values, dtype = _read_values(entry, f"columns/{position}", contents, pd)
        columns.append(pd.Series(values, index=index, dtype=dtype, copy=False))
    if header["series"]:
        return columns[0].rename(header["name"])
    frame = pd.DataFrame(dict(enumerate(columns)), copy=False)
    frame.columns = _read_index(entry, "column_labels", contents, pd)
    frame.columns.name = header["columns_name"]
    return frame


def _read_index(entry: h5py.Group, path: str, contents: dict[str, Any], pd: Any) -> Any:
    attributes = entry[path].attrs
    if attributes["kind"] == "range":
        return pd.RangeIndex(*(int(x) for x in attributes["range"]))
    values, dtype = _read_values(entry, path, contents, pd)
    index = pd.Index(values, dtype=dtype, copy=False)
    if "freq" in attributes:
        index = type(index)(index, freq=attributes["freq"])
    return index


def _read_values(
    entry: h5py.Group, path: str, contents: dict[str, Any], pd: Any
) -> tuple[Any, Any]:
    """The values of one stored array and the dtype pandas must keep (``None``: theirs)."""
    attributes = entry[path].attrs
    kind = attributes["kind"]
    data = contents[path]
    if kind == "numpy":
        return data, None
    if kind == "time":
        values = data.view(np.dtype(attributes["dtype"]))
        if "tz" in attributes:
            values = pd.DatetimeIndex(values).tz_localize("UTC").tz_convert(attributes["tz"]).array
        return values, None
    if kind == "object":
        return data, object  # pandas would infer its string dtype
    mask = contents.get(f"{path}_mask")
    if mask is None:
        mask = np.zeros(len(data), dtype=bool)
    if kind == "string":
        na = np.nan if attributes["na"] == "nan" else pd.NA
        data[mask] = na
        return pd.array(
            data, dtype=pd.StringDtype(storage=attributes["storage"], na_value=na)
        ), None
    if kind == "masked":
        array_type = pd.api.types.pandas_dtype(attributes["dtype"]).construct_array_type()
        return array_type(data, mask), None
    raise ValueError(f"unknown column kind {kind!r}")
