"""Where each of many digests sits among the sorted keys of a scan: one join in numpy.

A table of a store's calls shows most of the store's small values.  Looked
up through a dict, each of its cells costs a hash probe into a table of
every value (and the scan that fills that dict one probe more per row):
memory the processor waits for, more so the larger the store.  As 128-bit
numbers, the scanned keys (sorted already) are searched by every cell at
once, and only the rows some cell names are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["positions"]

#: Characters of a digest's text (lowercase hexadecimal).
_TEXT = 32
_UPPER = "ABCDEF"


def positions(keys: Sequence[str], texts: Sequence[Any]) -> Any:
    """The index in ``keys`` of each of ``texts`` (an ``int64`` array), -1 where it is not there.

    ``None`` if either holds anything but digests' lowercase text: such a
    join is left to a dict.  ``keys`` need not be sorted, but are sorted
    when they come from a scan by key, which spares the sort.
    """
    import numpy

    have, want = _numbers(keys), _numbers(texts)
    if have is None or want is None:
        return None
    if not len(have):
        return numpy.full(len(want), -1, dtype=numpy.int64)
    order = None
    if len(have) > 1 and not (have[1:, 0] >= have[:-1, 0]).all():
        order = numpy.lexsort((have[:, 1], have[:, 0]))
        have = have[order]
    at = _searched(have[:, 0], want[:, 0])
    numpy.minimum(at, len(have) - 1, out=at)
    # Two keys alike in their first half: a cell of the second is not found here, and is
    # read by the caller as a key not scanned is (a correct, slower read).
    found = (have[at, 0] == want[:, 0]) & (have[at, 1] == want[:, 1])
    if order is not None:
        at = order[at]
    return numpy.where(found, at, -1).astype(numpy.int64)


def _searched(have: Any, want: Any) -> Any:
    """``numpy.searchsorted(have, want)``, with ``want`` searched in sorted order.

    Searched in the order given, each of millions of keys walks the sorted
    keys from the top, a cache miss at every step; in sorted order each
    search starts where the last one ended (numpy keeps that bound), so the
    sort pays for itself several times over.
    """
    import numpy

    # In native byte order, which compares faster.
    have, want = have.astype(numpy.uint64), want.astype(numpy.uint64)
    order = numpy.argsort(want)
    at = numpy.empty(len(want), dtype=numpy.intp)
    at[order] = numpy.searchsorted(have, want[order])
    return at


def _numbers(texts: Sequence[Any]) -> Any:
    """Each text as two big-endian 64-bit halves; ``None`` unless each is a digest's lowercase text."""
    import numpy

    if not texts:
        return numpy.zeros((0, 2), dtype=">u8")
    # Each of the length of a digest, then text (join refuses anything else): two passes, not three.
    try:
        if set(map(len, texts)) != {_TEXT}:
            return None
        joined = "".join(texts)
    except TypeError:
        return None
    if any(letter in joined for letter in _UPPER):
        return None
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    if len(raw) * 2 != len(joined):  # whitespace, which fromhex skips
        return None
    return numpy.frombuffer(raw, dtype=">u8").reshape(-1, 2)
