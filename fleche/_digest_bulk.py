"""Digests of many children at once: long lists of numbers or strs, big dicts.

The scheme gives every element of a list its own node (see
:mod:`fleche._digest_scheme`), so a list of 100,000 ints is 100,000 xxh3 calls
from Python. Here the same node bytes are built column-wise in numpy and
hashed by :mod:`fleche._digest_xxh3`, which gives the very digests the
per-element encoders give (``tests/test_digest_bulk.py`` and
``tests/test_digest_fast_paths.py`` check this). Lists, tuples, dict keys
and dict values of exact ``int`` (within int64), exact ``float`` or exact
``str`` take this path; ints within int32 and floats are type-checked and read
in one ``marshal`` pass, strs in one UTF-8 encode of them all. Where these are
mixed with each other or with other values, each kind is digested in bulk and
put back in place, Nones and bools take their constant digests, and the
rest is encoded element by element.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Iterator
from itertools import compress
from operator import countOf, itemgetter
from typing import Any

import numpy as np

from fleche._digest_scheme import Tag, encode, header, pack_head
from fleche._digest_xxh3 import (
    MAX_LENGTH,
    MIN_LENGTH,
    Load,
    collect,
    rows_digests,
    words_digests,
)
from fleche.errors import Indigestible

_INT_PREFIX = pack_head(header(Tag.INT), 8)
_FLOAT_PREFIX = pack_head(header(Tag.FLOAT), 8)
_H_STR = header(Tag.STR)
_HEAD_BYTES = len(_INT_PREFIX)
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


def _loader(column: np.ndarray) -> Load:
    """Loads the words of the element nodes from ``column`` (ints, or floats' bits)."""
    if column.dtype.kind != "f":
        return lambda rows, into: np.copyto(into, column[rows], casting="unsafe")

    def load_floats(rows: slice, into: np.ndarray) -> None:
        floats = into.view(np.float64)
        np.copyto(floats, column[rows])
        nan = np.isnan(floats)
        if nan.any():  # every NaN is the one quiet NaN, as for a single float
            into[nan] = _NAN_BITS

    return load_floats


def _str_digests(values: list[str], out: np.ndarray) -> None:
    """Strs of one UTF-8 length are hashed together; lengths met rarely, one by one."""
    data, starts, lengths = _utf8(values)
    rest = np.ones(len(values), dtype=bool)
    slots = out.view("V16")[:, 0]  # digests moved whole: ~10 times faster than rows of bytes
    for rows in _length_groups(lengths):
        length = int(lengths[rows[0]])
        if rows[-1] - rows[0] == len(rows) - 1:  # a run of strs: the rows of a strided view
            utf8 = np.ndarray((len(rows), length), np.uint8, data, starts[rows[0]], (length + 1, 1))
        else:
            utf8 = np.frombuffer(data, dtype=np.uint8)[starts[rows, None] + np.arange(length)]
        if len(rows) == len(values):
            _str_rows(utf8, out)
            return
        slots[rows] = _str_rows(utf8).view("V16")[:, 0]
        rest[rows] = False
    left = np.flatnonzero(rest)
    slots[left] = _encoded(_pick(values, left)).view("V16")[:, 0]


def _utf8(values: list[str]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The UTF-8 of the strs joined by NULs, where each begins and how many bytes it has.

    One encode for all: UTF-8 has a 0 byte only for a NUL, so the NULs found
    are the separators, unless a str holds one (then each is encoded alone).
    """
    data = "\0".join(values).encode("utf-8", "surrogatepass")
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
    if len(ends) == len(values) - 1:
        lengths = np.diff(ends, prepend=-1, append=len(data)) - 1
    else:
        encoded = (s.encode("utf-8", "surrogatepass") for s in values)
        lengths = np.fromiter(map(len, encoded), np.int64, len(values))
    return data, np.cumsum(lengths + 1) - lengths - 1, lengths


def _str_rows(utf8: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Digests of the strs whose UTF-8 bytes are the rows of ``utf8`` (into ``out`` if given)."""
    count, length = utf8.shape
    block = np.empty((count, _HEAD_BYTES + length), dtype=np.uint8)
    block[:, :_HEAD_BYTES] = np.frombuffer(pack_head(_H_STR, length), dtype=np.uint8)
    block[:, _HEAD_BYTES:] = utf8
    return collect(count, rows_digests(block), out)


def _length_groups(lengths: np.ndarray) -> list[np.ndarray]:
    """Indices of the strs sharing a length, for lengths met often with a node of 9..128 bytes."""
    low, high = max(0, MIN_LENGTH - _HEAD_BYTES), MAX_LENGTH - _HEAD_BYTES
    counts = np.bincount(np.minimum(lengths, high + 1))[: high + 1]
    return [np.flatnonzero(lengths == n) for n in np.flatnonzero(counts >= GROUP_MIN) if n >= low]


def _encoded(values: list[Any]) -> np.ndarray:
    """The ``(n, 16)`` digests of ``values``, one by one."""
    return np.frombuffer(b"".join([encode(x) for x in values]), dtype=np.uint8).reshape(-1, 16)


_NUMBERS = {int: (_INT_PREFIX, _int_column), float: (_FLOAT_PREFIX, _float_column)}
Words = tuple[bytes, int, Load]
"""A list of numbers as :func:`fleche._digest_xxh3.words_digests` takes it."""


def _words(values: Any) -> Words | None:
    """The node prefix, count and word loader of ``values`` if all are ints or all floats."""
    kind = type(values[0]) if values else None
    found = _NUMBERS.get(kind)
    if found is None:
        return None
    sample = values[:: max(1, len(values) // _SAMPLE)]
    if countOf(map(type, sample), kind) != len(sample):
        return None  # others met: neither marshal nor a type check of them all
    if kind is float or _INT32_MIN <= values[0] <= _INT32_MAX:
        marshalled = _marshalled(values)
        if marshalled is not None:
            return marshalled
    if countOf(map(type, values), kind) != len(values):
        return None
    prefix, convert = found
    column = convert(values)
    return None if column is None else (prefix, len(values), _loader(column))


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_SAMPLE = 64  # elements whose types are looked at before a pass over all of them
_MARSHAL_HEAD = 5  # a list or tuple in marshal format 2: a type byte, then its length (u32)
_MARSHAL_RECORDS = {5: (b"i", "<i4", _INT_PREFIX), 9: (b"g", "<f8", _FLOAT_PREFIX)}
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
    return prefix, len(values), _loader(column)


STR_LIST_MIN = 2048
"""Shorter lists of strs digest faster one by one (the numpy passes cost ~0.2 ms)."""


def element_digests(values: Any) -> Iterator[np.ndarray] | None:
    """The digests of ``values`` in pieces if many are ints, floats or strs, else None."""
    if len(values) >= STR_LIST_MIN and _all_strs(values):
        out = np.empty((len(values), 16), dtype=np.uint8)
        _str_digests(values, out)
        return iter([out])
    found = _words(values)
    if found is not None:
        return words_digests(*found)
    mixed = _mixed_digests(values)
    return None if mixed is None else iter([mixed])


def _mixed_digests(values: Any) -> np.ndarray | None:
    """The digests of a list of ints, floats or strs mixed with other things, else None.

    The elements of each of these types (those a sample of the list shows) are
    digested together and put back in place, Nones and bools by their constant
    digests, the rest one by one. A failure returns None, so that the general
    path raises it with its place in the list.
    """
    sample = set(map(type, values[:: max(1, len(values) // _SAMPLE)]))
    kinds = [kind for kind in (int, float, str) if kind in sample]
    if not kinds:
        return None
    if sample == {float, type(None)}:
        found = _floats_and_nones(values)
        if found is not None:
            return found
    types = np.fromiter(map(type, values), dtype=object, count=len(values))
    out = np.empty(len(values), dtype="V16")  # digests moved whole: ~10 times faster than rows
    rest: np.ndarray | None = None  # the places of the elements left (of ``types``); None: all
    try:
        for kind in (*kinds, type(None), bool):
            of_kind = types == kind
            if of_kind.any():
                places = of_kind if rest is None else rest[of_kind]
                members = () if kind is type(None) else _pick(values, places)
                out[places] = _kind_digests(kind, members)
                rest = np.flatnonzero(~of_kind) if rest is None else rest[~of_kind]
                types = types[~of_kind]
        assert rest is not None  # a sampled element is of its own type
        if len(rest):
            out[rest] = _encoded(_pick(values, rest)).view("V16")[:, 0]
    except Indigestible:
        return None
    return out.view(np.uint8).reshape(-1, 16)


def _floats_and_nones(values: Any) -> np.ndarray | None:
    """The digests of a list of floats and Nones (none of them NaN), else None.

    numpy reads the list as floats in one pass (a None as NaN, but also a
    bool, an int or a str of digits as a float), so ``marshal`` checks the
    types: were the NaNs the Nones and all else floats, its records would be
    one byte ``N`` where a NaN is and nine bytes ``g...`` elsewhere. Reading
    marshal's stream record by record meets the same records, so if every
    such place holds its type byte and the lengths add up, the list is what
    was assumed.
    """
    try:
        data = marshal.dumps(values, 2)  # first: it takes built-in types only, no __float__ is run
        floats = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):  # not marshal's exact types, or not numbers
        return None
    nones = np.isnan(floats)
    sizes = np.where(nones, 1, 9)
    ends = np.cumsum(sizes) + _MARSHAL_HEAD
    if floats.shape != (len(values),) or len(data) != ends[-1]:
        return None
    if not np.array_equal(np.frombuffer(data, np.uint8)[ends - sizes], np.where(nones, 78, 103)):
        return None  # 78 is b"N", 103 b"g"
    numbers = floats[~nones]
    out = np.empty(len(values), dtype="V16")
    digests = collect(len(numbers), words_digests(_FLOAT_PREFIX, len(numbers), _loader(numbers)))
    out[~nones] = digests.view("V16")[:, 0]
    out[nones] = np.frombuffer(encode(None), dtype="V16")
    return out.view(np.uint8).reshape(-1, 16)


def _pick(values: Any, places: np.ndarray) -> Any:
    """The elements of ``values`` at ``places`` (a mask over all, or indices), in one C loop."""
    if places.dtype == bool:
        return values if places.all() else list(compress(values, places.tolist()))
    if len(places) < 2:  # itemgetter needs one index and gives a tuple from two
        return [values[i] for i in places.tolist()]
    return itemgetter(*places.tolist())(values)  # ~1.5 times faster than compress when few


def _kind_digests(kind: type, members: Any) -> np.ndarray:
    """The digests (``V16``) of ``members``, all of type ``kind``."""
    if kind is type(None):
        return np.frombuffer(encode(None), dtype="V16")  # set in every row
    if kind is bool:
        constants = np.frombuffer(encode(False) + encode(True), dtype="V16")
        return constants[np.array(members, dtype=np.intp)]
    group = np.empty((len(members), 16), dtype=np.uint8)
    if not _bulk_digests(members, group):  # e.g. ints past int64
        group[...] = _encoded(members)
    return group.view("V16")[:, 0]


def _all_strs(values: Any) -> bool:
    return (
        bool(values) and type(values[0]) is str and countOf(map(type, values), str) == len(values)
    )


def _digests(values: list[Any], out: np.ndarray) -> None:
    """The digests of ``values`` into the ``(n, 16)`` array ``out``."""
    if not _bulk_digests(values, out):
        mixed = _mixed_digests(values)
        out[...] = _encoded(values) if mixed is None else mixed


def _bulk_digests(values: list[Any], out: np.ndarray) -> bool:
    """The digests of ``values`` into ``out`` if all are strs, all ints or all floats."""
    if _all_strs(values):
        _str_digests(values, out)
        return True
    found = _words(values)
    if found is not None:
        collect(len(values), words_digests(*found), out)
    return found is not None


def sorted_items(keys: list[Any], values: list[Any]) -> np.ndarray:
    """Key digest + value digest per item, sorted by key digest (then value), flat.

    Raises what :func:`fleche._digest_scheme.encode` raises for a key or value.
    """
    items = np.empty((len(keys), 32), dtype=np.uint8)
    _digests(keys, items[:, :16])
    _digests(values, items[:, 16:])
    words = items.view(">u8")  # big-endian words sort like the bytes they hold
    first = words[:, 0].astype(np.uint64)
    order, sorted_bits = _radix_order(first)
    top = first[order] >> np.uint64(64 - sorted_bits)
    ties = np.flatnonzero(top[1:] == top[:-1])  # items i, i + 1 not ordered yet
    if len(ties) > TIES_MAX:
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    elif len(ties):
        _break_ties(order, ties.tolist(), items)
    return items.view("V32")[order, 0].view(np.uint8)  # rows moved whole, not byte by byte


TIES_MAX = 64
"""More items than this tied on their leading bits are ordered by a full sort."""


def _break_ties(order: np.ndarray, ties: list[int], items: np.ndarray) -> None:
    """Orders each run of tied items (``order[i]`` and ``order[i + 1]`` for each i in ``ties``)."""
    runs: list[list[int]] = []
    for i in ties:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    for first, last in runs:
        span = order[first : last + 1].tolist()
        order[first : last + 1] = sorted(span, key=lambda row: items[row].tobytes())


RADIX_32_MAX = 1 << 15
"""Up to this many items, dict items are ordered by the top 32 bits of their key digest."""


def _radix_order(words: np.ndarray) -> tuple[np.ndarray, int]:
    """An order of ``words`` (uint64) sorted by their top bits, and how many bits.

    Stable passes over 16-bit digits, least significant first: numpy's radix
    sort of uint16 is ~10 times faster than an argsort of the words. 32 bits
    for up to ``RADIX_32_MAX`` words (a tie, then a full sort, about 1 time in
    100 at 10,000), 48 above.
    """
    shifts = (32, 48) if len(words) <= RADIX_32_MAX else (16, 32, 48)
    order = np.arange(len(words))
    for shift in shifts:
        digit = (words >> np.uint64(shift)).astype(np.uint16)
        order = order[np.argsort(digit[order], kind="stable")]
    return order, 64 - shifts[0]
