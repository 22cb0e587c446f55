"""XXH3-128 of many short messages at once, in numpy: the digests of a list's elements.

A list of 100,000 ints is 100,000 nodes of 18 bytes each; hashing them one
Python call at a time costs ~20 times what the bytes do. This module computes
the same xxh3-128 values (seed 0, default secret) for a block of equal-length
messages of 17 to 128 bytes with whole-column numpy arithmetic, following the
published XXH3 algorithm for that length range. ``tests/test_digest_bulk.py``
checks it against ``xxhash`` on random messages of every length.
"""

from __future__ import annotations

import numpy as np

MIN_LENGTH = 17
MAX_LENGTH = 128
"""Message lengths this module hashes; others go through ``xxhash`` one by one."""

_U64 = np.uint64
_P1 = _U64(0x9E3779B185EBCA87)
_P2 = _U64(0xC2B2AE3D27D4EB4F)
_P4 = _U64(0x85EBCA77C2B2AE63)
_MX = _U64(0x165667919E3779F9)
_LOW32 = _U64(0xFFFFFFFF)
_MASK = (1 << 64) - 1
_S32 = _U64(32)
_S37 = _U64(37)
# The first 128 bytes of XXH3's default secret, as little-endian 64-bit words.
_SECRET = np.frombuffer(
    bytes.fromhex(
        "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
        "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
        "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
        "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    ),
    dtype="<u8",
).astype(_U64)


def _word(block: np.ndarray, offset: int) -> np.ndarray:
    """The little-endian 64-bit word at ``offset`` of every row (a strided view, no copy)."""
    n, length = block.shape
    return np.ndarray((n,), dtype="<u8", buffer=block, offset=offset, strides=(length,))


def _fold(a: np.ndarray | np.uint64, b: np.ndarray) -> np.ndarray:
    """Low 64 bits XOR high 64 bits of the 128-bit products ``a * b`` (``a`` may be a scalar)."""
    a0, a1 = a & _LOW32, a >> _S32
    b0, b1 = b & _LOW32, b >> _S32
    lo_lo, hi_lo, lo_hi = a0 * b0, a1 * b0, a0 * b1
    cross = (lo_lo >> _S32) + (hi_lo & _LOW32) + lo_hi
    upper = (hi_lo >> _S32) + (cross >> _S32) + a1 * b1
    return upper ^ (a * b)


def _mix16(block: np.ndarray, offset: int, secret: int) -> np.ndarray:
    low = _word(block, offset) ^ _SECRET[secret]
    return _fold(low, _word(block, offset + 8) ^ _SECRET[secret + 1])


def _avalanche(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _S37)
    h = h * _MX
    return h ^ (h >> _S32)


def xxh3_128_rows(block: np.ndarray) -> np.ndarray:
    """``xxhash.xxh3_128_digest(row)`` of every row of a ``(n, length)`` uint8 array.

    Returns an ``(n, 16)`` uint8 array of the digests (big-endian, as
    ``xxh3_128_digest`` returns them). ``length`` must be 17 to 128.
    """
    block = np.ascontiguousarray(block)
    n, length = block.shape
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"messages of {length} bytes are outside {MIN_LENGTH}..{MAX_LENGTH}")
    low = np.full(n, (length * 0x9E3779B185EBCA87) & _MASK, dtype=_U64)
    high = np.zeros(n, dtype=_U64)
    for i in reversed(range((length - 1) // 32 + 1)):  # XXH128_mix32B rounds
        first, second = 16 * i, length - 16 * (i + 1)
        low += _mix16(block, first, 4 * i)
        low ^= _word(block, second) + _word(block, second + 8)
        high += _mix16(block, second, 4 * i + 2)
        high ^= _word(block, first) + _word(block, first + 8)
    return _finish(low, high, length)


def _finish(low: np.ndarray, high: np.ndarray, length: int) -> np.ndarray:
    """The 128-bit result from the two accumulators, as big-endian digest rows."""
    out = np.empty((len(low), 2), dtype=">u8")
    out[:, 1] = _avalanche(low + high)
    out[:, 0] = -_avalanche(low * _P1 + high * _P4 + _U64((length * 0xC2B2AE3D27D4EB4F) & _MASK))
    return out.view(np.uint8)


def _const(prefix: bytes, offset: int) -> int:
    return int.from_bytes(prefix[offset : offset + 8].ljust(8, b"\0"), "little")


def xxh3_128_words(prefix: bytes, words: np.ndarray) -> np.ndarray:
    """``xxh3_128_digest(prefix + word)`` for each little-endian uint64 ``word``.

    ``prefix`` is 10 bytes (a node header: version, tag, payload length 8),
    so every message is 18 bytes. Equals ``xxh3_128_rows`` of those rows, with
    the words that lie in the prefix alone computed once instead of per row.
    """
    v = words.astype(_U64, copy=False)
    shifted = (v << _U64(16)) | _U64(_const(prefix, 8))  # bytes 8..15: prefix tail, word head
    first, tail = _U64(_const(prefix, 0)), _U64(_const(prefix, 2))  # bytes 0..7 and 2..9
    low = _fold(first ^ _SECRET[0], shifted ^ _SECRET[1])
    low += _U64((18 * 0x9E3779B185EBCA87) & _MASK)
    low ^= v + tail
    high = _fold(tail ^ _SECRET[2], v ^ _SECRET[3])
    high ^= shifted + first
    return _finish(low, high, 18)
