"""The bulk digest paths (long lists, dicts, non-C-order arrays) give the general path's digests.

Long lists of numbers and big dicts are digested column-wise in numpy
(``fleche._digest_bulk``) and non-C-order arrays are copied in blocks; the
digests are stored keys, so these paths must never diverge from the scheme.
Each test builds the expected digest from the frozen node framing (version,
tag, u64 length, children's raw digests) and per-element ``digest_raw``, which
never takes a bulk path for a scalar.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import threading
from collections import Counter

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche import _digest_numpy
from fleche._digest_builtins import BULK_MIN, DICT_BULK_MIN
from fleche._digest_scheme import Tag, header, pack_head
from fleche._digest_xxh3 import MAX_LENGTH, MIN_LENGTH, collect, rows_digests, words_digests
from fleche.digest import digest, digest_raw
from fleche.errors import Indigestible

_BITS = st.integers(0, 2**64 - 1)
_ANY_FLOAT = _BITS.map(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0])
_INT64 = st.integers(-(2**63), 2**63 - 1)
_SCALARS = st.one_of(
    st.booleans(),
    _INT64,
    st.integers(),  # big ints too
    _ANY_FLOAT,  # every NaN payload, -0.0, infinities
    st.sampled_from([math.nan, -math.nan, 0.0, -0.0, 1, 1.0, True, None]),
    st.text(max_size=40),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=8)


def _node(tag: Tag, payload: bytes) -> bytes:
    return xxhash.xxh3_128_digest(pack_head(header(tag), len(payload)) + payload)


def _expected_sequence(tag: Tag, values: list) -> bytes:
    return _node(tag, b"".join(digest_raw(x) for x in values))


def _expected_dict(mapping: dict) -> bytes:
    return _node(
        Tag.DICT, b"".join(sorted(digest_raw(k) + digest_raw(v) for k, v in mapping.items()))
    )


def _long(base: list, size: int) -> list:
    """``base`` repeated to ``size`` elements: long enough for the bulk path."""
    return (base * (size // len(base) + 1))[:size]


_SIZE = st.integers(BULK_MIN, BULK_MIN + 300)
_DICT_SIZE = st.integers(DICT_BULK_MIN, DICT_BULK_MIN + 300)


@settings(max_examples=60, deadline=None)
@given(st.lists(_INT64, min_size=1, max_size=30), _SIZE)
def test_long_int_lists_digest_as_their_elements(base, size):
    values = _long(base, size)
    assert digest_raw(values) == _expected_sequence(Tag.LIST, values)
    assert digest_raw(tuple(values)) == _expected_sequence(Tag.TUPLE, values)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ANY_FLOAT, min_size=1, max_size=30), _SIZE)
def test_long_float_lists_digest_as_their_elements(base, size):
    values = _long(base, size)
    assert digest_raw(values) == _expected_sequence(Tag.LIST, values)


@settings(max_examples=60, deadline=None)
@given(st.lists(_VALUES, min_size=1, max_size=30), _SIZE)
def test_long_mixed_lists_digest_as_their_elements(base, size):
    values = _long(base, size)  # bools among ints, big ints, nested tuples: no shortcut
    assert digest_raw(values) == _expected_sequence(Tag.LIST, values)


@settings(max_examples=40, deadline=None)
@given(
    st.text(max_size=12),
    st.lists(st.text(max_size=130), max_size=20),
    st.lists(_VALUES, min_size=1, max_size=10),
    _DICT_SIZE,
)
def test_big_dicts_of_str_keys_digest_as_their_items(prefix, extra, base, size):
    keys = [f"{prefix}{i:06d}" for i in range(size)] + extra  # a few lengths, many keys each
    values = _long(base, len(keys))
    mapping = dict(zip(keys, values, strict=True))
    assert digest_raw(mapping) == _expected_dict(mapping)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(_INT64, st.integers(), _ANY_FLOAT), min_size=1, max_size=20), _DICT_SIZE)
def test_big_dicts_of_number_keys_digest_as_their_items(base, size):
    mapping = {i: v for i, v in enumerate(_long(base, size))}
    mapping.update({float(i) + 0.5: -i for i in range(10)})
    assert digest_raw(mapping) == _expected_dict(mapping)
    floats = {float(i) * 1.5: v for i, v in mapping.items() if isinstance(i, int)}
    assert digest_raw(floats) == _expected_dict(floats)


def test_bool_values_are_not_ints_in_bulk():
    ints = list(range(BULK_MIN))
    with_bool = [*ints[:-1], True]
    assert digest_raw(with_bool) != digest_raw([*ints[:-1], 1])
    assert digest_raw(with_bool) == _expected_sequence(Tag.LIST, with_bool)


@settings(max_examples=50, deadline=None)
@given(st.integers(MIN_LENGTH, MAX_LENGTH), st.integers(1, 40), st.randoms())
def test_vectorised_xxh3_equals_xxhash(length, rows, rnd):
    block = np.frombuffer(rnd.randbytes(length * rows), dtype=np.uint8).reshape(rows, length)
    got = collect(rows, rows_digests(block))
    assert [bytes(row) for row in got] == [xxhash.xxh3_128_digest(bytes(r)) for r in block]


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=10, max_size=10), st.lists(_BITS, min_size=1, max_size=40))
def test_vectorised_xxh3_of_words_equals_xxhash(prefix, words):
    column = np.array(words, dtype=np.uint64)

    def load(rows: slice, into: np.ndarray) -> None:
        np.copyto(into, column[rows])

    got = collect(len(words), words_digests(prefix, len(words), load))
    expected = [xxhash.xxh3_128_digest(prefix + struct.pack("<Q", w)) for w in words]
    assert [bytes(row) for row in got] == expected


_SHAPES = st.lists(st.integers(2, 9), min_size=2, max_size=4).map(tuple)


@settings(max_examples=80, deadline=None)
@given(
    _SHAPES,
    st.sampled_from(["<f8", ">f8", "<i2", ">c16", "|u1", "<M8[s]"]),
    st.sampled_from(["F", "transposed", "F-strided"]),
    st.sampled_from(
        [(8, (1, 1), 8), (16, (2, 3), 64), (64, (5, 2), 1 << 20), (1 << 18, (128, 64), 1 << 25)]
    ),
    st.randoms(),
)
def test_fortran_order_arrays_digest_as_their_c_order_copy(shape, dtype, layout, tiles, rnd):
    data = rnd.randbytes(math.prod(shape) * np.dtype(dtype).itemsize)
    c_order = np.frombuffer(data, dtype=dtype).reshape(shape)
    if layout == "F":
        arr = np.asfortranarray(c_order)
    elif layout == "transposed":
        arr = np.ascontiguousarray(c_order.T).T
    else:
        arr = np.asfortranarray(np.repeat(c_order, 2, axis=-1))[..., ::2]
    assert arr.tobytes() == c_order.tobytes()
    assert not arr.flags.c_contiguous
    with pytest.MonkeyPatch.context() as patch:  # small tiles: many tiles, rows split
        for name, value in zip(("TILE_BYTES", "BLOCK_ROWS", "BLOCK_BYTES"), tiles, strict=True):
            patch.setattr(_digest_numpy, name, value)
        assert digest_raw(arr) == digest_raw(np.ascontiguousarray(c_order))


def test_numpy_is_imported_only_for_very_long_containers():
    # A program without numpy digests a 600-int list element by element (and its
    # digest is the one the bulk path gives here); 70,000 ints are worth the import.
    script = (
        "import sys\n"
        "from fleche.digest import digest\n"
        "print(digest(list(range(600))), 'numpy' in sys.modules)\n"
        "print(digest(list(range(70_000))), 'numpy' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    short, long = (line.split() for line in done.stdout.splitlines())
    assert short == [digest(list(range(600))), "False"]
    assert long == [digest(list(range(70_000))), "True"]


class _Shifted(dict):
    """A dict subclass whose items() is what the digest reads, whatever its keys say."""

    def items(self):
        return ((k, v + 1) for k, v in dict.items(self))


def test_dict_subclass_with_its_own_items_digests_its_items():
    def subclass_node(value: dict, items: dict) -> bytes:
        name = digest_raw(f"{type(value).__module__}.{type(value).__qualname__}")
        return _node(Tag.SUBCLASS, name + _expected_dict(items))

    shifted = _Shifted((i, i) for i in range(DICT_BULK_MIN))
    assert digest_raw(shifted) == subclass_node(shifted, {i: i + 1 for i in range(DICT_BULK_MIN)})
    counts = Counter({f"word{i}": i for i in range(DICT_BULK_MIN)})  # a plain-reading subclass
    assert digest_raw(counts) == subclass_node(counts, dict(counts))


def test_big_dict_names_where_an_indigestible_value_sits():
    mapping = {f"key-{i:05d}": float(i) for i in range(DICT_BULK_MIN)}
    mapping["key-00007"] = threading.Lock()
    with pytest.raises(Indigestible) as caught:
        digest_raw(mapping)
    assert "['key-00007']" in str(caught.value)
