"""DataFrame digests read numpy columns as pandas stores them: the layout must never show.

The same frame built with one block per dtype, one block per column, strided
columns (a view of a C-order 2-D array) or through ``items()`` alone (pandas
without its internal column iterator) must digest alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche.digest import digest_raw
from fleche.errors import Indigestible

_KINDS = ["<f8", ">f8", "<i4", "|b1", "<M8[ns]", "object", "Int64", "category", "str"]


def _column(kind: str, rows: int, rng: np.random.Generator) -> pd.Series:
    numbers = rng.integers(-5, 5, rows)
    if kind == "object":
        return pd.Series([int(x) if x % 2 else f"s{x}" for x in numbers], dtype=object)
    if kind in ("category", "str"):
        return pd.Series([f"c{x}" for x in numbers], dtype=kind)
    if kind == "Int64":
        return pd.Series(numbers, dtype="Int64").mask(numbers > 2)
    return pd.Series(numbers.astype(kind))


def _one_block_per_column(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for i, (label, column) in enumerate(frame.items()):
        out.insert(i, label, column.copy(), allow_duplicates=True)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(_KINDS), min_size=0, max_size=6),
    st.integers(0, 40),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_frames_digest_alike_in_every_block_layout(kinds, rows, duplicate_labels, seed):
    rng = np.random.default_rng(seed)
    labels = ["x"] * len(kinds) if duplicate_labels else [f"c{i}" for i in range(len(kinds))]
    columns = [_column(kind, rows, rng) for kind in kinds]
    frame = pd.concat(columns, axis=1, keys=range(len(kinds))) if kinds else pd.DataFrame()
    frame = frame.set_axis(labels, axis=1) if kinds else pd.DataFrame(index=range(rows))
    expected = digest_raw(frame)
    assert digest_raw(frame.copy()) == expected  # consolidated: one block per dtype
    assert digest_raw(_one_block_per_column(frame)) == expected
    with pytest.MonkeyPatch.context() as patch:  # a pandas without the column iterator
        patch.delattr(pd.DataFrame, "_iter_column_arrays")
        assert digest_raw(frame) == expected


@pytest.mark.parametrize("dtype", ["<f8", ">i2", "<c16", "|u1"])
def test_strided_columns_digest_as_contiguous_ones(dtype):
    values = np.arange(60).reshape(20, 3).astype(dtype)
    strided = pd.DataFrame(values, columns=list("abc"), copy=False)
    assert not strided["a"].to_numpy().flags.c_contiguous  # the case this test is about
    contiguous = pd.DataFrame({name: values[:, i].copy() for i, name in enumerate("abc")})
    assert digest_raw(strided) == digest_raw(contiguous)


def test_an_indigestible_cell_is_located_on_the_numpy_path():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3, object()]})
    with pytest.raises(Indigestible) as info:
        digest_raw(frame)
    assert info.value.path == "['b'][1]"
