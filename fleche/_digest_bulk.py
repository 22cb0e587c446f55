"""Digests of many scalars of one kind at once: long lists of ints, floats or strs.

The scheme gives every element of a list its own node (see
:mod:`fleche._digest_scheme`), so a list of 100,000 ints is 100,000 xxh3 calls
from Python. Here the same node bytes are built column-wise in numpy and
hashed by :mod:`fleche._digest_xxh3`, which gives the very digests the
per-element encoders give (``tests/test_digest_bulk.py`` and
``tests/test_digest_fast_paths.py`` check this). Lists, tuples, dict keys
and dict values of exact ``int`` (within int64), exact ``float`` or exact
``str`` take this path; floats are type-checked and read from their objects
(:mod:`fleche._digest_memory`), ints within int32 (and floats elsewhere than
CPython) in one ``marshal`` pass, strs in one UTF-8 encode of them all. Lists
mixing kinds are sorted by kind in :mod:`fleche._digest_mixed`.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Iterator
from itertools import compress
from operator import countOf, itemgetter
from typing import Any

import numpy as np

from fleche._digest_memory import LAYOUT, floats
from fleche._digest_scheme import Tag, encode, header, pack_head
from fleche._digest_xxh3 import (
    MAX_LENGTH,
    MIN_LENGTH,
    Load,
    collect,
    messages_digests,
    words_digests,
)

INT_PREFIX = pack_head(header(Tag.INT), 8)
FLOAT_PREFIX = pack_head(header(Tag.FLOAT), 8)
_H_STR = header(Tag.STR)
_HEAD_BYTES = len(INT_PREFIX)
_NAN_BITS = struct.unpack("<Q", struct.pack("<d", float("nan")))[0]
GROUP_MIN = 512
"""Fewer strs than this of one length are cheaper to hash one by one."""


def _int_column(values: list[Any]) -> np.ndarray | None:
    try:
        return np.fromiter(values, dtype=np.int64, count=len(values))
    except OverflowError:  # a big int: its node is longer, leave the list to the general path
        return None


def _float_column(values: list[Any]) -> np.ndarray:
    return np.fromiter(values, dtype=np.float64, count=len(values))


def loader(column: np.ndarray, places: np.ndarray | None = None) -> Load:
    """Loads the words of the element nodes from ``column`` (ints, or floats' bits).

    With ``places``, element ``i`` is ``column[places[i]]``: gathered a chunk
    at a time, while the chunk is in the cache.
    """

    def read(rows: slice) -> np.ndarray:
        return column[rows] if places is None else column[places[rows]]

    if column.dtype.kind != "f":
        return lambda rows, into: np.copyto(into, read(rows), casting="unsafe")

    def load_floats(rows: slice, into: np.ndarray) -> None:
        floats = into.view(np.float64)
        np.copyto(floats, read(rows))
        nan = np.isnan(floats)
        if nan.any():  # every NaN is the one quiet NaN, as for a single float
            into[nan] = _NAN_BITS

    return load_floats


def str_digests(values: list[str], out: np.ndarray) -> None:
    """Strs of one UTF-8 length are hashed together; lengths met rarely, one by one."""
    data, starts, lengths = _utf8(values)
    padded = np.frombuffer(data + bytes(8), dtype=np.uint8)  # 8 bytes read at any start
    rest = np.ones(len(values), dtype=bool)
    slots = out.view("V16")[:, 0]  # digests moved whole: ~10 times faster than rows of bytes
    for rows in _length_groups(lengths):
        group = _str_group(padded, starts[rows], int(lengths[rows[0]]))
        if len(rows) == len(values):
            collect(len(rows), group, out)
            return
        slots[rows] = collect(len(rows), group).view("V16")[:, 0]
        rest[rows] = False
    left = np.flatnonzero(rest)
    slots[left] = encoded(pick(values, left)).view("V16")[:, 0]


def _str_group(padded: np.ndarray, starts: np.ndarray, length: int) -> Iterator[np.ndarray]:
    """Digests of the strs of UTF-8 ``length`` at ``starts`` in ``padded``, in pieces.

    The nodes are never built: each 8-byte word XXH3 reads is the header's
    (a constant), the UTF-8 read in place, or the header's tail followed by
    the str's first bytes (a shift and an or).
    """
    head = pack_head(_H_STR, length)
    run = starts[-1] - starts[0] == (len(starts) - 1) * (length + 1)  # strs one after another

    def utf8_word(rows: slice, at: int, into: np.ndarray) -> np.ndarray:
        if run:
            view = np.ndarray((len(starts),), "<u8", padded, int(starts[0]) + at, (length + 1,))
            np.copyto(into, view[rows])
            return into
        anywhere = np.ndarray((len(padded) - 7,), "<u8", padded, 0, (1,))
        return np.take(anywhere, starts[rows] + at, out=into)

    def word(rows: slice, offset: int, into: np.ndarray) -> np.ndarray:
        if offset >= _HEAD_BYTES:
            return utf8_word(rows, offset - _HEAD_BYTES, into)
        known = int.from_bytes(head[offset:], "little")  # the header's bytes from offset on
        if offset + 8 <= _HEAD_BYTES:
            into.fill(known)
            return into
        utf8_word(rows, 0, into)
        np.left_shift(into, np.uint64(8 * (_HEAD_BYTES - offset)), out=into)
        return np.bitwise_or(into, np.uint64(known), out=into)

    return messages_digests(len(starts), _HEAD_BYTES + length, word)


def _utf8(values: list[str]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The UTF-8 of the strs joined by NULs, where each begins and how many bytes it has.

    One encode for all: UTF-8 has a 0 byte only for a NUL, so the NULs found
    are the separators, unless a str holds one (then each is encoded alone).
    """
    data = "\0".join(values).encode("utf-8", "surrogatepass")
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
    if len(ends) == len(values) - 1:  # each str begins after a NUL: no sum of lengths
        starts = np.concatenate(([0], ends + 1))
        return data, starts, np.diff(starts, append=len(data) + 1) - 1
    encoded = (s.encode("utf-8", "surrogatepass") for s in values)
    lengths = np.fromiter(map(len, encoded), np.int64, len(values))
    return data, np.cumsum(lengths + 1) - lengths - 1, lengths


def _length_groups(lengths: np.ndarray) -> list[np.ndarray]:
    """Indices of the strs sharing a length, for lengths met often with a node of 9..128 bytes."""
    low, high = max(0, MIN_LENGTH - _HEAD_BYTES), MAX_LENGTH - _HEAD_BYTES
    counts = np.bincount(np.minimum(lengths, high + 1))[: high + 1]
    return [np.flatnonzero(lengths == n) for n in np.flatnonzero(counts >= GROUP_MIN) if n >= low]


def encoded(values: list[Any]) -> np.ndarray:
    """The ``(n, 16)`` digests of ``values``, one by one."""
    return np.frombuffer(b"".join([encode(x) for x in values]), dtype=np.uint8).reshape(-1, 16)


_NUMBERS = {int: (INT_PREFIX, _int_column), float: (FLOAT_PREFIX, _float_column)}
Words = tuple[bytes, int, Load]
"""A list of numbers as :func:`fleche._digest_xxh3.words_digests` takes it."""


def words(values: Any) -> Words | None:
    """The node prefix, count and word loader of ``values`` if all are ints or all floats."""
    kind = type(values[0]) if values else None
    found = _NUMBERS.get(kind)
    if found is None:
        return None
    sample = values[:: max(1, len(values) // SAMPLE)]
    if countOf(map(type, sample), kind) != len(sample):
        return None  # others met: neither marshal nor a type check of them all
    if kind is float and LAYOUT:  # read from the floats themselves, else from marshal
        found = floats(values)
        if found is None or len(found[1]):
            return None  # others met: the mixed path reads them
        return FLOAT_PREFIX, len(values), loader(found[0])
    if kind is float or _INT32_MIN <= values[0] <= _INT32_MAX:
        marshalled = _marshalled(values)
        if marshalled is not None:
            return marshalled
    if countOf(map(type, values), kind) != len(values):
        return None
    prefix, convert = found
    column = convert(values)
    return None if column is None else (prefix, len(values), loader(column))


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
SAMPLE = 64  # elements whose types are looked at before a pass over all of them
_MARSHAL_HEAD = 5  # a list or tuple in marshal format 2: a type byte, then its length (u32)
_MARSHAL_RECORDS = {5: (b"i", "<i4", INT_PREFIX), 9: (b"g", "<f8", FLOAT_PREFIX)}
"""Record size -> its type byte and value in marshal format 2: int32 ints, and floats."""


def _marshalled(values: Any) -> Words | None:
    """The words of ``values`` if all are ints within int32, or all floats, read from marshal.

    ``marshal`` writes exact ints and floats only (a subclass or a bool is
    another record or an error), each int32 as 5 bytes and float as 9, so one
    C pass both checks the types and converts: if every record at the stride
    of the length has the type byte, the elements are all of that type.
    """
    try:
        data = marshal.dumps(values, 2)
    except ValueError:  # something marshal refuses, e.g. an int subclass
        return None
    size, rest = divmod(len(data) - _MARSHAL_HEAD, len(values))
    record = _MARSHAL_RECORDS.get(size)
    if rest or record is None:
        return None
    tag, dtype, prefix = record
    if data[_MARSHAL_HEAD::size] != tag * len(values):
        return None
    column = np.ndarray(len(values), dtype, data, _MARSHAL_HEAD + 1, (size,))
    return prefix, len(values), loader(column)


def all_strs(values: Any) -> bool:
    """Whether every element of ``values`` is an exact str (a sample is looked at first)."""
    if not values or type(values[0]) is not str:
        return False
    sample = values[:: max(1, len(values) // SAMPLE)]
    if countOf(map(type, sample), str) != len(sample):
        return False  # a mixed list: no pass over all of it
    return countOf(map(type, values), str) == len(values)


def bulk_digests(values: list[Any], out: np.ndarray) -> bool:
    """The digests of ``values`` into ``out`` if all are strs, all ints or all floats."""
    if all_strs(values):
        str_digests(values, out)
        return True
    found = words(values)
    if found is not None:
        collect(len(values), words_digests(*found), out)
    return found is not None


def pick(values: Any, places: np.ndarray) -> Any:
    """The elements of ``values`` at the indices ``places``, in one C loop."""
    if len(places) == len(values):
        return values
    if len(places) < 2:  # itemgetter needs one index and gives a tuple from two
        return [values[i] for i in places.tolist()]
    if len(places) > len(values) * PICK_BY_MASK:  # compress costs ~8 ns an element, all read
        mask = np.zeros(len(values), dtype=np.uint8)
        mask[places] = 1
        return list(compress(values, mask.tobytes()))  # bytes: no list of bools is made
    return itemgetter(*places.tolist())(values)  # ~20 ns an element picked


PICK_BY_MASK = 0.4
"""Above this share of a list, its elements are picked by a mask rather than by index."""
