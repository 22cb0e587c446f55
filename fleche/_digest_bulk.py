"""Digests of many children at once: long lists of numbers, dicts of str keys.

The scheme gives every element of a list its own node (see
:mod:`fleche._digest_scheme`), so a list of 100,000 ints is 100,000 xxh3 calls
from Python. Here the same node bytes are built column-wise in numpy and
hashed by :mod:`fleche._digest_xxh3`, which gives the very digests the
per-element encoders give (``tests/test_digest_bulk.py`` checks this on random
values). Only lists and tuples of exact ``int`` (within int64) or exact
``float``, and dict keys and values of those types or ``str``, take this path;
anything else is encoded element by element as before.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from operator import countOf
from typing import Any

import numpy as np

from fleche._digest_scheme import Tag, encode, header, pack_head
from fleche._digest_xxh3 import MAX_LENGTH, MIN_LENGTH, xxh3_128_rows, xxh3_128_words

_INT_PREFIX = pack_head(header(Tag.INT), 8)
_FLOAT_PREFIX = pack_head(header(Tag.FLOAT), 8)
_H_STR = header(Tag.STR)
_HEAD_BYTES = len(_INT_PREFIX)
_NAN_BITS = struct.unpack("<Q", struct.pack("<d", float("nan")))[0]
GROUP_MIN = 512
"""Fewer strs than this of one length are cheaper to hash one by one."""
CHUNK = 4096
"""Elements hashed per numpy pass: their temporaries stay in the L2 cache."""


def _in_chunks(hash_rows: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> np.ndarray:
    """``hash_rows(rows)``, a chunk at a time (whole, its temporaries would miss the cache)."""
    out = np.empty((len(rows), 16), dtype=np.uint8)
    for start in range(0, len(rows), CHUNK):
        out[start : start + CHUNK] = hash_rows(rows[start : start + CHUNK])
    return out


def _words_digests(prefix: bytes, words: np.ndarray) -> np.ndarray:
    return _in_chunks(functools.partial(xxh3_128_words, prefix), words)


def _int_digests(values: list[Any]) -> np.ndarray | None:
    try:
        words = np.fromiter(values, dtype=np.int64, count=len(values))
    except OverflowError:  # a big int: its node is longer, leave the list to the general path
        return None
    return _words_digests(_INT_PREFIX, words.view(np.uint64))


def _float_digests(values: list[Any]) -> np.ndarray:
    words = np.fromiter(values, dtype=np.float64, count=len(values)).view(np.uint64)
    nan = np.isnan(words.view(np.float64))
    words[nan] = _NAN_BITS  # every NaN is the one quiet NaN, as for a single float
    return _words_digests(_FLOAT_PREFIX, words)


def _str_digests(values: list[str]) -> np.ndarray:
    """Strs of one UTF-8 length are hashed together; lengths met rarely, one by one."""
    joined = "".join(values)
    if joined.isascii():  # one encode for all, and the lengths of the strs are those in bytes
        flat, sizes = joined.encode("ascii"), map(len, values)
    else:
        data = [s.encode("utf-8", "surrogatepass") for s in values]
        flat, sizes = b"".join(data), map(len, data)
    lengths = np.fromiter(sizes, dtype=np.int64, count=len(values))
    groups = _length_groups(lengths)
    flat = np.frombuffer(flat, dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    out = np.empty((len(values), 16), dtype=np.uint8)
    rest = np.ones(len(values), dtype=bool)
    for rows in groups:
        length = int(lengths[rows[0]])
        if len(rows) == len(values):  # all of one length (dict keys often are): no gather
            return _str_rows(flat.reshape(-1, length))
        out[rows] = _str_rows(flat[starts[rows, None] + np.arange(length)])
        rest[rows] = False
    out[rest] = _encoded([values[i] for i in np.flatnonzero(rest)])
    return out


def _str_rows(utf8: np.ndarray) -> np.ndarray:
    """Digests of the strs whose UTF-8 bytes are the rows of ``utf8``."""
    count, length = utf8.shape
    block = np.empty((count, _HEAD_BYTES + length), dtype=np.uint8)
    block[:, :_HEAD_BYTES] = np.frombuffer(pack_head(_H_STR, length), dtype=np.uint8)
    block[:, _HEAD_BYTES:] = utf8
    return _in_chunks(xxh3_128_rows, block)


def _length_groups(lengths: np.ndarray) -> list[np.ndarray]:
    """Indices of the strs sharing a length, for lengths with a node of 17..128 bytes."""
    order = np.argsort(lengths, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
    low, high = MIN_LENGTH - _HEAD_BYTES, MAX_LENGTH - _HEAD_BYTES
    return [rows for rows in groups if len(rows) >= GROUP_MIN and low <= lengths[rows[0]] <= high]


def _encoded(values: list[Any]) -> np.ndarray:
    """The ``(n, 16)`` digests of ``values``, one by one."""
    return np.frombuffer(b"".join([encode(x) for x in values]), dtype=np.uint8).reshape(-1, 16)


_NUMBERS = {int: _int_digests, float: _float_digests}
_KEYS = {**_NUMBERS, str: _str_digests}


def _bulk(values: Any, kinds: dict[type, Any]) -> np.ndarray | None:
    kind = type(values[0]) if values else None
    bulk = kinds.get(kind)
    if bulk is None or countOf(map(type, values), kind) != len(values):
        return None
    return bulk(values)


def number_digests(values: Any) -> np.ndarray | None:
    """The ``(n, 16)`` digests of ``values`` if all are ints or all floats, else None.

    Strs are left out: a list of strs of many lengths is faster one by one.
    """
    return _bulk(values, _NUMBERS)


def _digests(values: list[Any]) -> np.ndarray:
    found = _bulk(values, _KEYS)
    return _encoded(values) if found is None else found


def sorted_items(keys: list[Any], values: list[Any]) -> np.ndarray:
    """Key digest + value digest per item, sorted by key digest (then value), flat.

    Raises what :func:`fleche._digest_scheme.encode` raises for a key or value.
    """
    items = np.concatenate((_digests(keys), _digests(values)), axis=1)
    words = items.view(">u8")  # big-endian words sort like the bytes they hold
    order = np.argsort(words[:, 0])
    first = words[order, 0]
    if (first[1:] == first[:-1]).any():  # equal leading words: sort by all 32 bytes
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    return items.view("V32")[order, 0].view(np.uint8)  # rows moved whole, not byte by byte
