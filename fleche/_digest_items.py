"""Digests of big dicts: every item's key and value digests, sorted as the scheme says.

A dict's node holds its items (key digest + value digest, 32 bytes each)
sorted by those bytes, so equal dicts built in any order share a digest.
Keys and values are digested in bulk (:mod:`fleche._digest_mixed`) and the
items ordered by a radix sort on their leading bits in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fleche._digest_mixed import digests, element_digests

__all__ = ["element_digests", "sorted_items"]
"""The bulk entry points :mod:`fleche._digest_builtins` calls once numpy is in use."""


def sorted_items(keys: list[Any], values: list[Any]) -> np.ndarray:
    """Key digest + value digest per item, sorted by key digest (then value), flat.

    Raises what :func:`fleche._digest_scheme.encode` raises for a key or value.
    """
    items = np.empty((len(keys), 32), dtype=np.uint8)
    digests(keys, items[:, :16])
    digests(values, items[:, 16:])
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
