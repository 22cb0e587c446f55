"""Floats among Nones and bools read from the objects' memory: the general path's digests.

``fleche._digest_memory`` reads a list's element addresses, their types and
the floats' values straight from CPython's objects. Every case here checks
the digest against the element-by-element one, and that anything but exact
floats, None, True and False is refused (left to the other paths).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche import _digest_memory, _digest_mixed
from fleche._digest_builtins import BULK_MIN
from fleche._digest_scheme import Tag, header, pack_head
from fleche.digest import digest_raw

pytestmark = pytest.mark.skipif(
    sys.implementation.name != "cpython", reason="the layout is CPython's"
)


def _general(values: list, tag: Tag = Tag.LIST) -> bytes:
    payload = b"".join(digest_raw(x) for x in values)  # a scalar never takes a bulk path
    return xxhash.xxh3_128_digest(pack_head(header(tag), len(payload)) + payload)


class _Float(float):
    pass


def test_the_layout_is_recognised_here():
    assert _digest_memory.LAYOUT


_FLOATS = st.one_of(
    st.floats(allow_nan=True),
    st.sampled_from([math.nan, -math.nan, 0.0, -0.0, math.inf, -math.inf, 1 / 7]),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_FLOATS, min_size=1, max_size=20),
    st.lists(st.sampled_from([None, None, True, False]), min_size=1, max_size=6),
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 0.95),
)
def test_floats_among_singletons_digest_as_their_elements(numbers, singletons, seed, share):
    rng = np.random.default_rng(seed)
    size = BULK_MIN + int(rng.integers(0, 400))
    values = [numbers[i] for i in rng.integers(0, len(numbers), size)]
    for i in np.flatnonzero(rng.random(size) < share).tolist():
        values[i] = singletons[i % len(singletons)]
    assert _digest_memory.floats(values) is not None
    assert digest_raw(values) == _general(values)
    assert digest_raw(tuple(values)) == _general(values, Tag.TUPLE)


@pytest.mark.parametrize("first", [None, 1.5])
def test_the_first_and_last_elements_may_be_singletons(first):
    values = [first] + [i / 7 if i % 5 else True for i in range(BULK_MIN)] + [None]
    assert digest_raw(values) == _general(values)


@pytest.mark.parametrize(
    "odd",
    [_Float(0.5), 1, 2**70, "1.5", (None,), 1j, np.float64(2.5), ..., [None]],
    ids=[
        "subclass",
        "int",
        "big int",
        "str",
        "tuple",
        "complex",
        "numpy",
        "Ellipsis",
        "list",
    ],
)
@pytest.mark.parametrize("where", [0, 1, 250, -1])
def test_anything_else_among_floats_and_nones_is_refused(odd, where):
    values = [None if i % 10 == 0 else i / 7 for i in range(BULK_MIN + 250)]
    values[where] = odd
    assert _digest_memory.floats(values) is None
    assert digest_raw(values) == _general(values)


def test_singletons_alone_or_an_empty_list_are_refused():
    assert _digest_memory.floats([None, True, False] * 200) is None
    assert _digest_memory.floats([]) is None
    assert _digest_memory.floats([1.5, object(), None]) is None


def test_the_marshal_path_gives_the_same_digests_without_the_layout(monkeypatch):
    values = [None if i % 10 == 0 else i / 7 for i in range(BULK_MIN + 250)]
    read = digest_raw(values)
    monkeypatch.setattr(_digest_mixed, "LAYOUT", False)
    assert digest_raw(values) == read == _general(values)
