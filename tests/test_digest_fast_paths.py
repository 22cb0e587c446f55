"""Edge cases of the bulk digest paths: each must give the digest the general path gives.

Long lists of exact ints or floats are type-checked and read in one ``marshal``
pass, strs in one UTF-8 encode, and the element digests come from a numpy
XXH3; every case here is one where a shortcut could misread a value (a bool
for an int, a subclass, an int past 32 or 64 bits, a NaN, a NUL inside a str).
The expected digests are built from the frozen node framing and per-element
``digest_raw`` (a scalar never takes a bulk path).
"""

from __future__ import annotations

import enum
import math
import threading
from collections import deque

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche import _digest_items, _digest_mixed
from fleche._digest_builtins import BULK_MIN, DICT_BULK_MIN
from fleche._digest_scheme import Tag, header, pack_head
from fleche.digest import digest_raw
from fleche.errors import Indigestible

_N = max(BULK_MIN, DICT_BULK_MIN, _digest_mixed.STR_LIST_MIN) + 37  # every bulk path


def _node(tag: Tag, payload: bytes) -> bytes:
    return xxhash.xxh3_128_digest(pack_head(header(tag), len(payload)) + payload)


def _general_list(values: list, tag: Tag = Tag.LIST) -> bytes:
    return _node(tag, b"".join(digest_raw(x) for x in values))


def _general_dict(mapping: dict) -> bytes:
    return _node(
        Tag.DICT, b"".join(sorted(digest_raw(k) + digest_raw(v) for k, v in mapping.items()))
    )


class _Int(int):
    pass


class _Float(float):
    pass


class _Str(str):
    pass


class _Colour(enum.IntEnum):
    RED = 1


_INT32 = 1 << 31
_ODD_ONES_OUT = {
    "bool": True,
    "int subclass": _Int(5),
    "IntEnum": _Colour.RED,
    "int just past int32": _INT32,
    "int just below int32": -_INT32 - 1,
    "int past int64": 1 << 64,
    "negative int past int64": -(1 << 70),
    "float among ints": 5.0,
    "numpy int": np.int64(5),
    "None": None,
    "nested list": [1, 2],
    "str": "5",
}


@pytest.mark.parametrize("odd", list(_ODD_ONES_OUT.values()), ids=list(_ODD_ONES_OUT))
@pytest.mark.parametrize("where", [0, 1, _N // 2, -1])
def test_a_long_int_list_with_one_odd_element(odd, where):
    values = list(range(-100, _N - 100))
    values[where] = odd
    assert digest_raw(values) == _general_list(values)
    assert digest_raw(tuple(values)) == _general_list(values, Tag.TUPLE)


_ODD_FLOATS = {
    "int among floats": 5,
    "bool": False,
    "float subclass": _Float(0.5),
    "numpy float": np.float64(0.5),
    "None": None,
}


@pytest.mark.parametrize("odd", list(_ODD_FLOATS.values()), ids=list(_ODD_FLOATS))
@pytest.mark.parametrize("where", [0, _N // 2, -1])
def test_a_long_float_list_with_one_odd_element(odd, where):
    values = [i / 3 for i in range(_N)]
    values[where] = odd
    assert digest_raw(values) == _general_list(values)


@pytest.mark.parametrize(
    "values",
    [
        [_INT32 - 1, -_INT32] * (_N // 2),  # the int32 bounds: still one marshal record each
        [2**63 - 1, -(2**63)] * (_N // 2),  # the int64 bounds: past marshal's int32 records
        [0, 2**40] * (_N // 2),  # first small, later wide
        [2**40, 0] * (_N // 2),  # first wide
        [-1] * _N,
    ],
    ids=["int32 bounds", "int64 bounds", "small then wide", "wide then small", "minus ones"],
)
def test_long_int_lists_at_the_width_boundaries(values):
    assert digest_raw(values) == _general_list(values)


@pytest.mark.parametrize(
    "pattern",
    [[0, 2**31, 2**31, None, True, False], [0.5, 2**31, 2**31, 2**31, 2**31, None]],
    ids=["5 bytes each on average", "9 bytes each on average"],
)
def test_marshal_records_that_add_up_to_the_stride_are_not_misread(pattern):
    # marshal writes these as records of 1 and 11 bytes that average exactly an
    # int32's (or a float's) record size: only the type bytes tell them apart.
    values = pattern * (_N // len(pattern) + 1)
    assert digest_raw(values) == _general_list(values)


def test_floats_nan_and_signed_zero_in_bulk():
    payload_nan = np.array([0x7FF8_0000_DEAD_BEEF], dtype=np.uint64).view(np.float64)[0]
    specials = [math.nan, -math.nan, float(payload_nan), 0.0, -0.0, math.inf, -math.inf, 5e-324]
    values = (specials * (_N // len(specials) + 1))[:_N]
    assert digest_raw(values) == _general_list(values)
    assert digest_raw([math.nan] * _N) == digest_raw([-math.nan] * _N)
    assert digest_raw([0.0] * _N) != digest_raw([-0.0] * _N)


def test_ints_and_floats_that_compare_equal_stay_distinct():
    assert digest_raw(list(range(_N))) != digest_raw([float(i) for i in range(_N)])
    assert digest_raw([1] * _N) != digest_raw([True] * _N)


def test_nested_lists_digest_as_their_elements():
    values = [list(range(_N)), [i / 2 for i in range(_N)], (1, 2.0, "3")] * 3
    assert digest_raw(values) == _general_list(values)


_KEY_SETS = {
    "one length": [f"key-{i:05d}" for i in range(_N)],
    "many lengths": [f"k{i}" for i in range(_N)],
    "empty strs among one-letter ones": ["", "a"] * (_N // 2 + 1),
    "two lengths interleaved": [f"a{i:04d}" if i % 2 else f"bb{i:06d}" for i in range(2 * _N)],
    "empty and short": ["", *(chr(65 + i % 26) * (i % 7) + str(i) for i in range(_N))],
    "non-ASCII": [f"clé-{i}-é€😀" for i in range(_N)],
    "lone surrogates": [f"\ud800{i}\udfff" for i in range(_N)],
    "NULs inside": [f"a\0{i}\0" for i in range(_N)],
    "long": [f"{i:0200d}" for i in range(_N)],
    "str subclass among strs": [_Str("sub"), *(f"s{i}" for i in range(_N))],
}


@pytest.mark.parametrize("keys", list(_KEY_SETS.values()), ids=list(_KEY_SETS))
def test_big_dicts_of_str_keys(keys):
    mapping = {k: i / 7 for i, k in enumerate(keys)}
    assert digest_raw(mapping) == _general_dict(mapping)
    flipped = dict(reversed(mapping.items()))  # another insertion order: the same dict
    assert digest_raw(flipped) == digest_raw(mapping)
    as_values = {i: k for i, k in enumerate(keys)}
    assert digest_raw(as_values) == _general_dict(as_values)


@pytest.mark.parametrize("ties_max", [64, 0], ids=["ties broken one by one", "full sort"])
def test_dict_items_whose_key_digests_share_leading_bits_are_fully_sorted(monkeypatch, ties_max):
    # 200,000 keys ordered by 32 bits only: some pairs of key digests tie on
    # them (~4.6 expected), and the whole digests must then decide.
    monkeypatch.setattr(_digest_items, "RADIX_32_MAX", 1 << 20)
    monkeypatch.setattr(_digest_items, "TIES_MAX", ties_max)
    mapping = {f"key{i}": i for i in range(200_000)}
    leading = {digest_raw(k)[:4] for k in mapping}
    assert len(leading) < len(mapping)  # the case this test is about
    assert digest_raw(mapping) == _general_dict(mapping)


def test_a_dict_whose_key_digests_tie_on_32_bits():
    # Two of these keys' digests share their first 4 bytes (the radix sort's 32 bits).
    mapping = {f"key-{i:05d}": i / 7 for i in range(10_000)}
    assert len({digest_raw(k)[:4] for k in mapping}) == len(mapping) - 1
    assert digest_raw(mapping) == _general_dict(mapping)


@pytest.mark.parametrize("strs", list(_KEY_SETS.values()), ids=list(_KEY_SETS))
def test_long_str_lists(strs):
    assert digest_raw(strs) == _general_list(strs)
    assert digest_raw(tuple(strs)) == _general_list(strs, Tag.TUPLE)


def test_big_dict_values_of_every_scalar_kind():
    kinds = [1, -(2**40), 2**70, 0.5, math.nan, -0.0, True, None, "x", _Int(3), _Float(1.5)]
    for kind in kinds:
        mapping = {f"key{i}": kind for i in range(_N)}
        assert digest_raw(mapping) == _general_dict(mapping), kind


def test_threads_digesting_at_once_agree():
    # Each thread keeps its own scratch buffers; a shared one would mix chunks.
    lists = [[(i * 7919 + t) % 10**9 for i in range(20_000)] for t in range(4)]
    expected = [digest_raw(values) for values in lists]
    found: dict[int, list[bytes]] = {t: [] for t in range(4)}

    def work(t: int) -> None:
        for _ in range(5):
            found[t].append(digest_raw(lists[t]))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(found[t] == [expected[t]] * 5 for t in range(4))


def test_a_list_of_long_lists_hashes_each_inner_list_alone():
    # The outer list's elements are hashed while no bulk generator is suspended,
    # but lists of lists nest the bulk path: every inner digest must still match.
    inner = [list(range(t, t + 20_000)) for t in range(3)]
    assert digest_raw(inner) == _general_list(inner)


_DTYPES = ["<f8", ">f4", "<i8", ">u2", "|b1", "<c8", "<f2", "<M8[ns]", "<m8[s]", "<U3", "|S5"]


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("layout", ["F", "transposed view", "sliced view", "negative strides"])
def test_non_c_order_arrays_of_every_dtype_digest_as_their_c_order_copy(dtype, layout):
    rng = np.random.default_rng(len(dtype))
    base = np.frombuffer(rng.bytes(40 * 30 * np.dtype(dtype).itemsize), dtype=dtype)
    base = base.reshape(40, 30)
    arr = {
        "F": np.asfortranarray(base),
        "transposed view": base.T,
        "sliced view": base[::3, 1::2],
        "negative strides": np.asfortranarray(base)[::-1, ::-2],
    }[layout]
    assert digest_raw(arr) == digest_raw(np.ascontiguousarray(arr))


def test_fortran_order_object_and_structured_arrays():
    objects = np.asfortranarray(np.array([[1, "a", None], [2.5, (1,), b"x"]], dtype=object))
    assert digest_raw(objects) == digest_raw(np.ascontiguousarray(objects))
    fields = np.dtype([("a", "<i4"), ("b", ">f8", (2,)), ("c", "U2")])
    structured = np.zeros((20, 7), dtype=fields)
    structured["a"] = np.arange(140).reshape(20, 7)
    structured["b"] = np.arange(280).reshape(20, 7, 2) / 3
    structured["c"] = "xy"
    fortran = np.asfortranarray(structured)
    assert digest_raw(fortran) == digest_raw(structured)
    assert digest_raw(structured.T) == digest_raw(np.ascontiguousarray(structured.T))


_ARRAYS = [
    np.arange(12.0).reshape(3, 4),
    np.arange(12, dtype=">i4").reshape(2, 6),
    np.array(3.5),
    np.zeros((0, 3), dtype="<c16"),
    np.arange(8, dtype="|u1").reshape(1, 2, 1, 4),
    np.array([True, False]),
    np.arange(6, dtype="<f2"),
    np.arange(4).astype("<M8[s]"),
    np.array(["ab", "c"]),
    np.zeros((1,) * 32),
]


@pytest.mark.parametrize("arr", _ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
@pytest.mark.parametrize("writeable", [True, False])
def test_c_order_arrays_digest_as_dtype_shape_and_little_endian_bytes(arr, writeable):
    arr = arr.copy()
    arr.flags.writeable = writeable
    little = arr.astype(arr.dtype.newbyteorder("<"))
    shape = np.array([arr.ndim, *arr.shape], dtype="<u8").tobytes()
    payload = digest_raw(arr.dtype) + shape + little.tobytes()
    assert digest_raw(arr) == _node(Tag.NDARRAY, payload)


_MIXED = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.sampled_from([None, True, False, _Int(3), _Float(0.5), _Str("s"), (1, "a"), 2.5j]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_MIXED, min_size=1, max_size=40), st.integers(0, 2**32 - 1))
def test_long_lists_of_mixed_scalars(pool, seed):
    # Drawn from a small pool, so each type shows up many times in a bulk-long list.
    rng = np.random.default_rng(seed)
    values = [pool[i] for i in rng.integers(0, len(pool), _N)]
    assert digest_raw(values) == _general_list(values)
    assert digest_raw(tuple(values)) == _general_list(values, Tag.TUPLE)
    mapping = {f"k{i}": value for i, value in enumerate(values)}
    assert digest_raw(mapping) == _general_dict(mapping)


def test_an_indigestible_element_of_a_mixed_list_is_located():
    values = [i if i % 3 else str(i) for i in range(_N)]
    values[_N - 5] = object()
    with pytest.raises(Indigestible) as info:
        digest_raw(values)
    assert info.value.path == f"[{_N - 5}]"


_RUN_KINDS = {
    "float": lambda i: i / 7,
    "none": lambda i: None,
    "bool": lambda i: i % 2 == 0,
    "int": lambda i: i - 50,
    "str": lambda i: f"s{i}",
    "other": lambda i: (i,),
}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(_RUN_KINDS)), st.integers(1, 300)), min_size=1))
def test_long_lists_of_runs_of_scalars(runs):
    # Runs of one kind each: floats with Nones, ints with bools, strs with tuples...
    # every kind goes to its own bulk or constant path and back to its place.
    values = [_RUN_KINDS[kind](i) for kind, length in runs for i in range(length)]
    values += [_RUN_KINDS[runs[0][0]](i) for i in range(_N)]
    assert digest_raw(values) == _general_list(values)
    mapping = {i: value for i, value in enumerate(values)}
    assert digest_raw(mapping) == _general_dict(mapping)


_AMONG_FLOATS = [
    math.nan,
    -0.0,
    math.inf,
    True,
    3,
    2**80,
    "2.5",
    "nan",
    "1234",  # a record of nine bytes, as a float's
    b"1234",
    b"1.5",
    1j,
    _Float(0.5),
    np.float64(1.5),
    [1.0],
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_AMONG_FLOATS), max_size=3), st.randoms(use_true_random=False))
def test_floats_with_nones_and_a_few_others(odd_ones, rnd):
    # Floats with Nones are read by numpy as floats (a None as NaN, but a bool, an
    # int or a str of digits too): whatever hides among them, the digest is exact.
    values = [i / 7 if i % 10 else None for i in range(_N)]
    for odd in odd_ones:
        values[rnd.randrange(_N)] = odd
    assert digest_raw(values) == _general_list(values)
    assert digest_raw(tuple(values)) == _general_list(values, Tag.TUPLE)


_AMONG_SINGLETONS = {
    "ints with Nones": lambda i: None if i % 7 == 0 else i - 500,
    "ints with bools": lambda i: i % 3 == 0 if i % 5 == 0 else i,
    "floats with bools and Nones": lambda i: (None, True, False)[i % 3] if i % 4 == 0 else i / 3,
    "mostly Nones": lambda i: i / 3 if i % 50 == 0 else None,
}
_LAST = {
    "None": None,
    "True": True,
    "a number": 7,
    "a float": 7.5,
    "an int past int32": 2**31,
    "a str of a float's record size": "1234",
    "an int subclass": _Int(3),
    "a float subclass": _Float(0.5),
}


@pytest.mark.parametrize("make", list(_AMONG_SINGLETONS.values()), ids=list(_AMONG_SINGLETONS))
@pytest.mark.parametrize("last", list(_LAST.values()), ids=list(_LAST))
def test_numbers_among_nones_and_bools(make, last):
    # One kind of number among singletons is read from marshal's stream at
    # places the singletons' ids give; whatever ends the list, the digest is exact.
    values = [make(i) for i in range(_N)]
    values[-1] = last
    assert digest_raw(values) == _general_list(values)
    values[0] = last
    assert digest_raw(tuple(values)) == _general_list(values, Tag.TUPLE)


def test_mixed_lists_without_object_ids_digest_element_by_element(monkeypatch):
    # Where an id is not an address (not CPython), kinds cannot be sorted by
    # their types' ids: the general path gives the same digests.
    values = [i if i % 3 else str(i) for i in range(_N)] + [None, 2.5, True]
    expected = digest_raw(values)
    monkeypatch.setattr(_digest_mixed, "IDS", False)
    assert digest_raw(values) == expected == _general_list(values)


@pytest.mark.parametrize(
    "values",
    [list(range(_N)), ["a"] * _N, [1, "a"] * _N, [1.5, None] * _N],
    ids=["ints", "strs", "ints and strs", "floats and Nones"],
)
def test_long_deques_digest_as_their_elements(values):
    # A regression: the bulk paths sliced the deque (a TypeError) once numpy was in use.
    elements = deque(values, maxlen=len(values) + 1)
    expected = _node(Tag.DEQUE, digest_raw(len(values) + 1) + _general_list(values))
    assert digest_raw(elements) == expected
