"""Lists of one kind of number among Nones and bools, read from one ``marshal`` pass.

``marshal.dumps(values, 2)`` writes a list as a 5-byte head, then one record
per element: an exact float as ``g`` and its 8 bytes, an int within int32 as
``i`` and 4, None, True and False as the one byte ``N``, ``T``, ``F``; it
refuses subclasses and writes anything else in other forms. So one C pass
checks the types and converts the numbers, and what is left is to find
where the one-byte records (the singletons) sit, with no Python step per
element and no object array of the list (~0.5 ms at 100,000 elements):

- with numbers of ``S`` bytes, the j-th singleton's record starts at
  ``S * k - (S - 1) * j`` (k its index), a place ``≡ j (mod S)``. The numbers
  after it start at places ``≡ j + 1``, their other bytes at other residues;
  so the next singleton is the first byte with a singleton's value at a place
  ``≡ j + 1``. Bytes of numbers that look like singletons are thus told apart
  by their residue: in order, a byte whose residue is not the count of
  singletons met before it is inside a number.
- Such look-alikes are first thinned by their neighbours (a singleton follows
  a singleton or a number's type byte, and is followed by a type byte, a
  singleton or the end), so that few remain for that sequential pass.

Then each number's record is known; its type byte at that place proves,
by induction from the first record, that the elements are what they were
taken for, before its value is read from the stream.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator
from typing import Any

import numpy as np

from fleche._digest_bulk import FLOAT_PREFIX, INT_PREFIX, loader
from fleche._digest_scheme import encode
from fleche._digest_xxh3 import words_digests

_HEAD = 5  # a list or tuple in marshal format 2: a type byte, then its length (u32)
NUMBER_RECORDS = {int: (5, "<i4", ord("i"), INT_PREFIX), float: (9, "<f8", ord("g"), FLOAT_PREFIX)}
"""Kind -> its record in marshal format 2 (size, value dtype, type byte), its node prefix."""
SINGLETON_CODES = {type(None): b"N", bool: b"TF"}
"""Type -> the bytes marshal writes for its values."""
_DIGESTS = np.zeros(256, dtype="V16")
for _value, _code in ((None, b"N"), (True, b"T"), (False, b"F")):
    _DIGESTS[_code[0]] = np.frombuffer(encode(_value), dtype="V16")[0]
LOOK_ALIKES_MAX = 16
"""Bytes of numbers that pass for singletons by their neighbours, beyond which the
list is left to the other paths (each costs a numpy pass over the singletons)."""


def numbers_and_singletons(values: Any, kind: type, codes: bytes) -> Iterator[np.ndarray] | None:
    """The digests of a list of ``kind`` among singletons marshalled as ``codes``, in pieces.

    None if anything else is met, a singleton not in ``codes`` too.
    """
    size, dtype, tag, prefix = NUMBER_RECORDS[kind]
    try:
        data = marshal.dumps(values, 2)  # it takes built-in types only: no __float__ is run
    except ValueError:
        return None
    records = np.frombuffer(data, dtype=np.uint8, offset=_HEAD)
    starts = _singletons(records, size, tag, codes)
    n = len(values)
    if starts is None or len(records) != size * n - (size - 1) * len(starts):
        return None
    rows = starts - np.arange(len(starts))  # a multiple of size: the residues were checked
    rows //= size
    rows += np.arange(len(starts))
    places = _record_starts(n, rows, size)
    stream = np.frombuffer(data, dtype=np.uint8)  # a singleton's byte is never a type byte:
    if np.count_nonzero(stream[places] == tag) != n - len(rows):
        return None
    np.minimum(places, len(data) - size, out=places)  # a last singleton's would read past the end
    column = np.ndarray((len(data) - size + 1,), dtype, data, 1, (1,))  # the value after each place
    pieces = words_digests(prefix, n, loader(column, places))
    return patched(pieces, rows, _DIGESTS[records[starts]])


def _singletons(records: np.ndarray, size: int, tag: int, codes: bytes) -> np.ndarray | None:
    """Where the singletons' records start in ``records`` (sorted), or None if not found."""
    found = np.flatnonzero(_one_of(records, codes))
    if not len(found):
        return found
    before, after = records[found - 1], records[np.minimum(found + 1, len(records) - 1)]
    follows = (found == 0) | (records[found - size] == tag) | _one_of(before, codes)
    followed = (after == tag) | _one_of(after, codes)  # the last byte is followed by itself
    return _in_order(found[follows & followed], size)


def _one_of(values: np.ndarray, codes: bytes) -> np.ndarray:
    found = values == codes[0]
    for code in codes[1:]:
        found |= values == code
    return found


def _in_order(found: np.ndarray, size: int) -> np.ndarray | None:
    """The places among ``found`` whose residue mod ``size`` counts the places kept before them."""
    keep = np.ones(len(found), dtype=bool)
    start = count = 0
    for _ in range(LOOK_ALIKES_MAX + 1):
        rest = found[start:] - np.arange(count, count + len(found) - start)
        wrong = np.flatnonzero(rest % size)
        if not len(wrong):
            return found[keep]
        skipped = int(wrong[0])
        keep[start + skipped] = False  # a byte inside a number
        count += skipped
        start += skipped + 1
    return None


def _record_starts(n: int, rows: np.ndarray, size: int) -> np.ndarray:
    """Where each element's record starts in the stream, the singletons at ``rows``."""
    before = np.zeros(n + 1, dtype=np.intp)
    before[rows + 1] = 1
    np.cumsum(before, out=before)  # singletons before each row
    before *= size - 1
    starts = np.arange(_HEAD, _HEAD + size * n, size, dtype=np.intp)
    starts -= before[:n]
    return starts


def patched(pieces: Iterator[np.ndarray], rows: np.ndarray, digests: np.ndarray) -> Iterator:
    """``pieces`` with the digests of the singletons at ``rows`` put in place."""
    start = 0
    for piece in pieces:
        low, high = np.searchsorted(rows, (start, start + len(piece))).tolist()
        piece.view("V16")[:, 0][rows[low:high] - start] = digests[low:high]
        start += len(piece)
        yield piece
