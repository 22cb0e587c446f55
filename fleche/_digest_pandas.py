"""Digests of pandas objects (imported only when a pandas object is digested).

A DataFrame is its column labels, its row index and one array digest per
column; a Series is its name, index and values; an Index its names and values.
Numpy-backed columns go through the numpy array encoder, so their buffers are
hashed in place. Extension arrays are digested through public, exact views:
codes + categories for categoricals, values + mask for nullable numbers, UTC
values for time-zone aware datetimes, and elements for everything else. The
pandas storage details (blocks, string storage backend, copy-on-write state) do
not enter, and neither do ``DataFrame.attrs`` and ``flags``.

A ``RangeIndex`` keeps its own compact encoding, so it differs from an
``Index`` holding the same integers. String arrays (``StringDtype``, any storage,
including pandas 3's default ``str``) digest as the object array of their
elements, so string labels and columns keep their digests from pandas 2 to 3.
Extension dtypes enter by name (``str(dtype)``), not by class path, which
moves between pandas releases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fleche._digest_numpy import encode_array
from fleche._digest_scheme import (
    Encoder,
    Tag,
    composite,
    encode,
    header,
    leaf,
    relocate,
)
from fleche.errors import Indigestible

_H_DATAFRAME = header(Tag.DATAFRAME)
_H_SERIES = header(Tag.SERIES)
_H_INDEX = header(Tag.INDEX)
_H_RANGEINDEX = header(Tag.RANGEINDEX)
_H_MULTIINDEX = header(Tag.MULTIINDEX)
_H_CATEGORICAL = header(Tag.CATEGORICAL)
_H_EXTARRAY = header(Tag.EXTARRAY)
_H_TIMESTAMP = header(Tag.PD_TIMESTAMP)
_H_TIMEDELTA = header(Tag.PD_TIMEDELTA)
_H_PERIOD = header(Tag.PD_PERIOD)
_H_INTERVAL = header(Tag.PD_INTERVAL)
_H_DTYPE = header(Tag.PD_DTYPE)
_NAT = leaf(header(Tag.PD_NAT), b"")
_NA = leaf(header(Tag.PD_NA), b"")
_MASKED_ARRAYS = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


def _values(obj: pd.Series | pd.Index) -> bytes:
    """Digest of the values of a Series or Index, without the labels."""
    if isinstance(obj.dtype, np.dtype):
        return encode_array(obj.to_numpy(copy=False))
    return encode(obj.array)


def _numpy_columns(frame: pd.DataFrame) -> list[np.ndarray] | None:
    """The columns' arrays as the frame holds them, if all are numpy arrays; else None.

    These are what ``Series.to_numpy(copy=False)`` of each column returns, got
    without building a Series per column (the bulk of a digest's fixed cost).
    ``_iter_column_arrays`` is pandas-internal (1.3 to 3.x), so its absence
    falls back to ``items()``.
    """
    arrays = getattr(frame, "_iter_column_arrays", None)
    if arrays is None:
        return None
    columns = list(arrays())
    return columns if all(type(column) is np.ndarray for column in columns) else None


def _encode_frame(frame: pd.DataFrame) -> bytes:
    arrays = _numpy_columns(frame)
    try:
        if arrays is None:  # items() is ~5x cheaper per column than iloc[:, i]
            parts = [_values(column) for _, column in frame.items()]
        else:
            parts = [encode_array(array) for array in arrays]
    except Indigestible:
        relocate((f"[{label!r}]", column) for label, column in frame.items())
        raise
    return composite(_H_DATAFRAME, [encode(frame.columns), encode(frame.index)] + parts)


def _encode_series(series: pd.Series) -> bytes:
    return composite(_H_SERIES, [encode(series.name), encode(series.index), _values(series)])


def _encode_index(index: pd.Index) -> bytes:
    return composite(_H_INDEX, [encode(tuple(index.names)), _values(index)])


def _encode_range_index(index: pd.RangeIndex) -> bytes:
    bounds = [encode(index.start), encode(index.stop), encode(index.step)]
    return composite(_H_RANGEINDEX, [encode(tuple(index.names))] + bounds)


def _encode_multi_index(index: pd.MultiIndex) -> bytes:
    # By level values, not levels + codes: equal indexes may keep different levels.
    levels = [_values(index.get_level_values(i)) for i in range(index.nlevels)]
    return composite(_H_MULTIINDEX, [encode(tuple(index.names))] + levels)


def _encode_categorical(values: pd.Categorical) -> bytes:
    parts = [encode(values.categories), encode(bool(values.ordered)), encode_array(values.codes)]
    return composite(_H_CATEGORICAL, parts)


def _encode_extension_array(values: Any) -> bytes:
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):  # the object array pandas 2 would have used
        return encode_array(values.to_numpy(dtype=object))
    parts = [encode(str(dtype))]  # the dtype's name, e.g. "Int64", "datetime64[ns, UTC]"
    if isinstance(values, _MASKED_ARRAYS):
        fill = dtype.numpy_dtype.type(0)
        parts.append(encode_array(values.to_numpy(dtype=dtype.numpy_dtype, na_value=fill)))
        parts.append(encode_array(np.asarray(values.isna())))
    elif isinstance(dtype, pd.DatetimeTZDtype):  # instants in UTC; the zone is in str(dtype)
        parts.append(encode_array(values.to_numpy(dtype=f"M8[{dtype.unit}]")))
    else:
        parts.append(encode_array(values.to_numpy(dtype=object)))
    return composite(_H_EXTARRAY, parts)


def _encode_timestamp(stamp: pd.Timestamp) -> bytes:
    zone = None if stamp.tz is None else str(stamp.tz)
    return composite(_H_TIMESTAMP, [encode(stamp.asm8), encode(zone)])


def _encode_dtype(dtype: Any) -> bytes:
    if isinstance(dtype, pd.CategoricalDtype):
        extra = [encode(dtype.categories), encode(bool(dtype.ordered))]
    else:
        extra = []
    return composite(_H_DTYPE, [encode(str(dtype))] + extra)


def resolve(cls: type) -> Encoder | None:
    """The encoder for a class defined by pandas, or None if pandas has no rule for it."""
    rules: list[tuple[type, Encoder]] = [
        (pd.DataFrame, _encode_frame),
        (pd.Series, _encode_series),
        (pd.RangeIndex, _encode_range_index),
        (pd.MultiIndex, _encode_multi_index),
        (pd.Index, _encode_index),
        (pd.Categorical, _encode_categorical),
        (pd.api.extensions.ExtensionArray, _encode_extension_array),
        (pd.api.extensions.ExtensionDtype, _encode_dtype),
        (pd.Timestamp, _encode_timestamp),
        (pd.Timedelta, lambda delta: composite(_H_TIMEDELTA, [encode(delta.asm8)])),
        (type(pd.NaT), lambda _: _NAT),
        (type(pd.NA), lambda _: _NA),
        (
            pd.Period,
            lambda period: composite(_H_PERIOD, [encode(period.ordinal), encode(period.freqstr)]),
        ),
        (
            pd.Interval,
            lambda iv: composite(
                _H_INTERVAL, [encode(iv.left), encode(iv.right), encode(iv.closed)]
            ),
        ),
    ]
    for base, encoder in rules:
        if issubclass(cls, base):
            return encoder
    return None
