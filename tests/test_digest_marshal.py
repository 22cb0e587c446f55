"""Numbers among Nones and bools, read from marshal's stream: the general path's digests.

``fleche._digest_marshal`` finds the one-byte records (None, True, False) in
the stream by their place modulo the numbers' record size, telling them from
bytes of numbers that look like them. Every case here is one where that could
go wrong: numbers whose bytes are ``N``, ``T``, ``F`` or a type byte, next to
singletons or not; runs of singletons; a singleton first or last; NaN, -0.0,
infinities, subclasses; more look-alikes than the path sorts out.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche import _digest_marshal
from fleche._digest_builtins import BULK_MIN
from fleche._digest_scheme import Tag, header, pack_head
from fleche.digest import digest_raw


def _general_list(values: list) -> bytes:
    payload = b"".join(digest_raw(x) for x in values)  # a scalar never takes a bulk path
    return xxhash.xxh3_128_digest(pack_head(header(Tag.LIST), len(payload)) + payload)


def _float(pattern: bytes) -> float:
    return struct.unpack("<d", pattern)[0]


class _Float(float):
    pass


_LOOK_ALIKES = b"NTFgi"  # singletons' bytes and the type bytes of floats and ints
_ALIKE_FLOATS = st.lists(
    st.sampled_from(list(_LOOK_ALIKES) + [0, 0x3F, 0x40, 0xFF]), min_size=8, max_size=8
).map(lambda b: _float(bytes(b)))
_FLOATS = st.one_of(
    st.floats(allow_nan=True),
    _ALIKE_FLOATS,
    st.sampled_from([math.nan, -math.nan, 0.0, -0.0, math.inf, -math.inf, 1 / 7]),
)
_ALIKE_INTS = st.lists(st.sampled_from(list(_LOOK_ALIKES) + [0, 0xFF]), min_size=4, max_size=4).map(
    lambda b: int.from_bytes(bytes(b), "little", signed=True)
)
_INTS = st.one_of(st.integers(-(2**31), 2**31 - 1), _ALIKE_INTS)
_SINGLETONS = st.sampled_from([None, None, None, True, False])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([_FLOATS, _INTS]).flatmap(lambda numbers: st.lists(numbers, min_size=1)),
    st.lists(_SINGLETONS, min_size=1, max_size=8),
    st.integers(0, 2**32 - 1),
    st.floats(0.01, 0.9),
)
def test_numbers_among_singletons_digest_as_their_elements(numbers, singletons, seed, share):
    rng = np.random.default_rng(seed)
    size = BULK_MIN + int(rng.integers(0, 400))
    values = [numbers[i] for i in rng.integers(0, len(numbers), size)]
    for i in np.flatnonzero(rng.random(size) < share).tolist():
        values[i] = singletons[i % len(singletons)]
    assert digest_raw(values) == _general_list(values)
    assert digest_raw(tuple(values)) == _general_tuple(values)


def _general_tuple(values: list) -> bytes:
    payload = b"".join(digest_raw(x) for x in values)
    return xxhash.xxh3_128_digest(pack_head(header(Tag.TUPLE), len(payload)) + payload)


@pytest.mark.parametrize(
    "pattern", [b"NNNNNNNN", b"gNgNgNgN", b"NgNgNgNg", b"\x00\x00\x00\x00\x00\x00\x00N"]
)
@pytest.mark.parametrize("every", [2, 3, 9, 10, 11])
def test_floats_made_of_look_alike_bytes_next_to_nones(pattern, every):
    value = _float(pattern)
    values = [None if i % every == 0 else value for i in range(BULK_MIN + 100)]
    assert digest_raw(values) == _general_list(values)
    values.reverse()
    assert digest_raw(values) == _general_list(values)


@pytest.mark.parametrize(
    "make",
    [
        lambda i: None if i % 10 == 0 else i / 7,
        lambda i: None if i % 3 else i / 7,  # mostly Nones
        lambda i: (None, True, False)[i % 3] if i % 4 == 0 else float(i),
        lambda i: None if i % 7 == 0 else i - 500,  # int32s
        lambda i: [True, False][i % 2] if i % 5 == 0 else i,
    ],
    ids=["a None in 10", "mostly Nones", "floats with bools", "ints with Nones", "ints with bools"],
)
def test_the_stream_is_read_for_plain_lists(make):
    # Not only the same digests: these take the marshal path (no object array of the list).
    values = [make(i) for i in range(BULK_MIN + 250)]
    numbers = {type(x) for x in values} - {type(None), bool}
    codes = b"NTF"
    assert _digest_marshal.numbers_and_singletons(values, numbers.pop(), codes) is not None
    assert digest_raw(values) == _general_list(values)


@pytest.mark.parametrize(
    "odd",
    [_Float(0.5), 2**31, "1234", b"12", (None,), 1j, np.float64(2.5), ..., [None]],
    ids=["subclass", "past int32", "str", "bytes", "tuple", "complex", "numpy", "Ellipsis", "list"],
)
@pytest.mark.parametrize("where", [0, 1, 250, -1])
def test_anything_else_among_floats_and_nones_is_refused_by_the_stream(odd, where):
    values = [None if i % 10 == 0 else i / 7 for i in range(BULK_MIN + 250)]
    values[where] = odd
    assert _digest_marshal.numbers_and_singletons(values, float, b"NTF") is None
    assert digest_raw(values) == _general_list(values)


@pytest.mark.parametrize("count", [1, 5])
def test_look_alikes_that_pass_the_neighbour_test_are_sorted_out_by_their_place(count):
    # A float of eight N bytes: most of them follow an N and are followed by one,
    # as a None's would be. A few are told apart by their residue; past
    # LOOK_ALIKES_MAX the list is left to the other paths. Same digest either way.
    values = [None if i % 10 == 0 else i / 7 for i in range(BULK_MIN + 300)]
    for i in range(count):
        values[10 * i + 5] = _float(b"NNNNNNNN")
    read = _digest_marshal.numbers_and_singletons(values, float, b"N")
    assert (read is not None) == (count == 1)
    assert digest_raw(values) == _general_list(values)
