"""XXH3-128 of many short messages at once, in numpy: the digests of a list's elements.

A list of 100,000 ints is 100,000 nodes of 18 bytes each; hashing them one
Python call at a time costs ~20 times what the bytes do. This module computes
the same xxh3-128 values (seed 0, default secret) for a block of equal-length
messages of 9 to 128 bytes with whole-column numpy arithmetic, following the
published XXH3 algorithm for that length range. ``tests/test_digest_bulk.py``
checks it against ``xxhash`` on random messages of every length.

Speed: the columns go ``CHUNK`` rows at a time through a few preallocated
buffers (every ufunc writes with ``out=``, constants are 0-d arrays), so the
~60 ufunc calls per chunk neither allocate nor leave the L2 cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

MIN_LENGTH = 9
MAX_LENGTH = 128
"""Message lengths this module hashes; others go through ``xxhash`` one by one."""
CHUNK = 12288
"""Rows hashed per pass: 14 scratch columns of 96 KB. Of 4,096 to 32,768 rows,
12,288 and 16,384 measured fastest on lists of 10,000 and 100,000 ints and on
dicts of 10,000 str keys (``benchmarks/bench_digest.py``)."""

_MASK = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P4 = 0x85EBCA77C2B2AE63
_MX = 0x165667919E3779F9
# The first 128 bytes of XXH3's default secret, as little-endian 64-bit words.
_SECRET = np.frombuffer(
    bytes.fromhex(
        "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
        "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
        "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
        "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    ),
    dtype="<u8",
).tolist()

_and, _xor = np.bitwise_and, np.bitwise_xor
_add, _mul, _shr, _shl = np.add, np.multiply, np.right_shift, np.left_shift


def _c(value: int) -> np.ndarray:
    """A 0-d uint64 constant: ufuncs take it faster than a numpy scalar."""
    return np.array(value & _MASK, dtype=np.uint64)


_LOW32, _S16, _S32, _S37 = _c(0xFFFFFFFF), _c(16), _c(32), _c(37)
_MX_C, _P1_C, _P4_C = _c(_MX), _c(_P1), _c(_P4)


def _halves(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple:
    """``(a & 0xFFFFFFFF, a >> 32, a)`` written into ``low`` and ``high``."""
    return _and(a, _LOW32, low), _shr(a, _S32, high), a


def _const_halves(value: int) -> tuple:
    return _c(value & 0xFFFFFFFF), _c(value >> 32), _c(value)


def _high(a: tuple, b: np.ndarray, tmp: np.ndarray, scratch: Any) -> np.ndarray:
    """The high 64 bits of the 128-bit products ``a * b``, in ``scratch[0]``.

    ``a`` is ``(low 32 bits, high 32 bits, whole)`` (see :func:`_halves`);
    ``tmp`` and scratch rows 0 to 2 are overwritten, and must not be ``b``.
    """
    a0, a1, _ = a
    b0, b1, lo_lo = _and(b, _LOW32, scratch[0]), _shr(b, _S32, scratch[1]), scratch[2]
    _mul(b0, a0, lo_lo)
    _mul(b0, a1, b0)  # b0 is now a1 * b0
    _shr(lo_lo, _S32, lo_lo)
    _add(lo_lo, _and(b0, _LOW32, tmp), lo_lo)
    _add(lo_lo, _mul(b1, a0, tmp), lo_lo)  # the cross sum: fits in 64 bits
    _shr(lo_lo, _S32, lo_lo)
    _add(_shr(b0, _S32, b0), lo_lo, b0)
    return _add(b0, _mul(b1, a1, b1), b0)


def _fold(a: tuple, b: np.ndarray, out: np.ndarray, scratch: Any) -> np.ndarray:
    """Low 64 bits XOR high 64 bits of the 128-bit products ``a * b``, into ``out``."""
    high = _high(a, b, out, scratch)
    return _xor(_mul(b, a[2], out), high, out)


def _avalanche(h: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> np.ndarray:
    _xor(h, _shr(h, _S37, tmp), h)
    _mul(h, _MX_C, h)
    return _xor(h, _shr(h, _S32, tmp), out)


def _finish(low: np.ndarray, high: np.ndarray, length: int, t: Any) -> tuple:
    """The high and low 64-bit words of the results, from the two accumulators.

    Overwrites ``low``, ``high`` and scratch rows 0 to 2 (where the words are).
    """
    low_word = _avalanche(_add(low, high, t[0]), t[1], t[2])
    _add(_mul(low, _P1_C, low), _mul(high, _P4_C, high), low)
    _add(low, _c(length * _P2), low)
    high_word = _avalanche(low, t[1], t[0])
    return np.negative(high_word, high_word), low_word


HashChunk = Callable[[slice, list], tuple]
_SCRATCH_ROWS = 14
_SPARE: list[tuple[list[np.ndarray], np.ndarray]] = []
"""Buffers not in use: at most ``_SPARE_MAX`` sets are kept, whatever the number of threads."""
_SPARE_MAX = 2


def _in_chunks(n: int, hash_chunk: HashChunk) -> Iterator[np.ndarray]:
    """The ``(rows, 16)`` uint8 digests of ``n`` messages, CHUNK rows at a time.

    ``hash_chunk(rows, scratch)`` returns the high and the low 64-bit words
    of the digests of ``rows``. Each piece yielded is only valid until the
    next. The buffers (~1.5 MB) are kept for the next call, as fresh ones
    would be fresh pages to fault in (~0.5 ms for 100,000 elements); a
    thread takes a spare set or makes one (``list.pop`` is atomic).
    """
    try:
        buffers = _SPARE.pop()
    except IndexError:
        scratch = [np.empty(CHUNK, dtype=np.uint64) for _ in range(_SCRATCH_ROWS)]
        buffers = scratch, np.empty((CHUNK, 2), dtype=">u8")  # big-endian, as xxh3_128_digest
    scratch, digests = buffers
    chunk = len(digests)
    try:
        for start in range(0, n, chunk):
            size = min(n - start, chunk)
            t = scratch if size == chunk else [row[:size] for row in scratch]
            out = digests[:size]
            out[:, 0], out[:, 1] = hash_chunk(slice(start, start + size), t)
            yield out.view(np.uint8)
    finally:
        if len(_SPARE) < _SPARE_MAX:
            _SPARE.append(buffers)


def collect(n: int, pieces: Iterator[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """The ``(n, 16)`` array of all the digests ``pieces`` yields (into ``out`` if given)."""
    out = np.empty((n, 16), dtype=np.uint8) if out is None else out
    start = 0
    for piece in pieces:
        out[start : start + len(piece)] = piece
        start += len(piece)
    return out


@functools.lru_cache(maxsize=64)
def _word_constants(prefix: bytes) -> tuple:
    def word(offset: int) -> int:
        return int.from_bytes(prefix[offset : offset + 8].ljust(8, b"\0"), "little")

    first, tail, low16 = word(0), word(2), word(8)  # bytes 0..7, 2..9; 8..9 under the value
    return (
        _const_halves(first ^ _SECRET[0]),
        _c(low16 ^ _SECRET[1]),
        _c(18 * _P1),
        _c(tail),
        _const_halves(tail ^ _SECRET[2]),
        _c(_SECRET[3]),
        _c(first + low16),
    )


Load = Callable[[slice, np.ndarray], object]
"""``load(rows, into)`` writes the 64-bit words of the messages ``rows`` into ``into``."""


def words_digests(prefix: bytes, n: int, load: Load) -> Iterator[np.ndarray]:
    """``xxh3_128_digest(prefix + word)`` for ``n`` little-endian uint64 words, in pieces.

    ``prefix`` is 10 bytes (a node header: version, tag, payload length 8),
    so every message is 18 bytes. Equals ``rows_digests`` of those rows, with
    the words that lie in the prefix alone computed once instead of per row.
    The words come from ``load`` a chunk at a time (no array of all of them);
    pieces as :func:`_in_chunks` yields them.
    """
    first, low16_s1, seed, tail, tail_s2, s3, head = _word_constants(prefix)

    def chunk(rows: slice, t: list) -> tuple:
        v, shifted, low, high, b = t[13], t[3], t[4], t[5], t[6]
        load(rows, v)
        _shl(v, _S16, shifted)  # bytes 8..15 are the prefix's last two, then the value's
        _fold(first, _xor(shifted, low16_s1, b), low, t)
        _add(low, seed, low)
        _xor(low, _add(v, tail, b), low)
        _fold(tail_s2, _xor(v, s3, b), high, t)
        _xor(high, _add(shifted, head, b), high)
        return _finish(low, high, 18, t)

    return _in_chunks(n, chunk)


def _round_constants(i: int) -> tuple:
    return tuple(_c(_SECRET[4 * i + k]) for k in range(4))


_ROUNDS = [_round_constants(i) for i in range(4)]


def _mix16(w0: np.ndarray, w1: np.ndarray, s0: Any, s1: Any, acc: np.ndarray, t: Any) -> None:
    """``acc += fold((w0 ^ s0) * (w1 ^ s1))``: XXH3's 16-byte mix (scratch rows 0..7)."""
    a = _halves(_xor(w0, s0, t[5]), t[3], t[4])
    _add(acc, _fold(a, _xor(w1, s1, t[6]), t[7], t), acc)


def rows_digests(block: np.ndarray) -> Iterator[np.ndarray]:
    """``xxhash.xxh3_128_digest(row)`` of every row of a ``(n, length)`` uint8 array.

    ``length`` must be 9 to 128. Pieces as :func:`_in_chunks` yields them.
    """
    block = np.ascontiguousarray(block)
    n, length = block.shape

    def word(rows: slice, offset: int, into: np.ndarray) -> np.ndarray:
        view = np.ndarray((n,), dtype="<u8", buffer=block, offset=offset, strides=(length,))
        np.copyto(into, view[rows])  # once contiguous, a word read twice is read fast
        return into

    return messages_digests(n, length, word)


Word = Callable[[slice, int, np.ndarray], np.ndarray]
"""``word(rows, offset, into)``: the 8 bytes at ``offset`` of the messages ``rows``, as
little-endian uint64, written into ``into`` (and returned)."""


def messages_digests(n: int, length: int, word: Word) -> Iterator[np.ndarray]:
    """``xxh3_128_digest`` of ``n`` messages of ``length`` (9 to 128) bytes read by ``word``.

    Pieces as :func:`_in_chunks` yields them.
    """
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"messages of {length} bytes are outside {MIN_LENGTH}..{MAX_LENGTH}")
    rounds = _short_rounds if length <= 16 else _long_rounds
    return _in_chunks(n, functools.partial(rounds, length, word))


def _long_rounds(length: int, word: Callable, rows: slice, t: list) -> tuple:
    """XXH3-128 of messages of 17 to 128 bytes: up to four 32-byte mixing rounds."""
    low, high = t[8], t[9]
    low[...] = _c(length * _P1)
    high[...] = 0
    for i in reversed(range((length - 1) // 32 + 1)):  # XXH128_mix32B rounds
        s0, s1, s2, s3 = _ROUNDS[i]
        first, second = 16 * i, length - 16 * (i + 1)
        w0, w1 = word(rows, first, t[10]), word(rows, first + 8, t[11])
        w2, w3 = word(rows, second, t[12]), word(rows, second + 8, t[13])
        _mix16(w0, w1, s0, s1, low, t)
        _xor(low, _add(w2, w3, t[6]), low)
        _mix16(w2, w3, s2, s3, high, t)
        _xor(high, _add(w0, w1, t[6]), high)
    return _finish(low, high, length, t)


_BITFLIP_LOW = _c(_SECRET[4] ^ _SECRET[5])
_BITFLIP_HIGH = _c(_SECRET[6] ^ _SECRET[7])
_P1_HALVES, _P2_HALVES = _const_halves(_P1), _const_halves(_P2)
_P2_C, _P32_2_LESS_1 = _c(_P2), _c(0x85EBCA77 - 1)


def _short_rounds(length: int, word: Callable, rows: slice, t: list) -> tuple:
    """XXH3-128 of messages of 9 to 16 bytes: their first and last 8 bytes, mixed."""
    first, last = word(rows, 0, t[10]), word(rows, length - 8, t[11])
    mixed = _xor(_xor(first, last, t[12]), _BITFLIP_LOW, t[12])
    m_high = _high(_P1_HALVES, mixed, t[7], t)
    _xor(last, _BITFLIP_HIGH, last)
    m_high = _add(m_high, last, t[9])
    _add(m_high, _mul(_and(last, _LOW32, last), _P32_2_LESS_1, last), m_high)
    m_low = _add(_mul(mixed, _P1_C, t[8]), _c((length - 1) << 54), t[8])
    np.copyto(last, m_high.view(">u8"))  # the bytes of m_high swapped
    _xor(m_low, last, m_low)
    high = _high(_P2_HALVES, m_low, t[7], t)
    _add(high, _mul(m_high, _P2_C, t[10]), high)
    high_word = _avalanche(high, t[1], t[2])
    return high_word, _avalanche(_mul(m_low, _P2_C, m_low), t[1], t[3])
