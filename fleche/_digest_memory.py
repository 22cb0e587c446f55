"""Lists of floats among Nones and bools, read from the objects themselves (CPython's layout).

In CPython a tuple holds the addresses of its elements (their ``id``) one
after another, and a float object is its reference count, its type's
address, then its value, 8 bytes each. So numpy reads the addresses from a
tuple of the list, then every element's type word, then the values of those
whose type is ``float``, in numpy gathers: ~0.3 ms for 100,000 elements,
where a ``marshal`` pass costs ~0.9 ms and finding Nones in its stream half
as much again (:mod:`fleche._digest_marshal`, ``benchmarks/bench_digest.py``).
Nones and bools are found by their addresses (they are singletons).

Only memory inside live objects is read: the tuple keeps the elements alive
(numpy runs without the GIL), a type word lies in every object's header, and
a value is read only where that word is ``float``'s (a subclass has another
type). The layout is checked on import against known objects; on another
interpreter or build (debug, free-threaded) it does not match, ``LAYOUT`` is
False and the lists take the marshal path, with the same digests.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

from fleche._digest_scheme import encode

_ITEMS, _TYPE, _VALUE = 24, 8, 16
"""Byte offsets: of a tuple's first element address, of an object's type, of a float's value."""
_SINGLETONS = (None, True, False)
_DIGESTS = np.frombuffer(b"".join(encode(x) for x in _SINGLETONS), dtype="V16")


class _Memory:
    """``count`` 8-byte words from ``address`` on, read-only, as numpy sees memory."""

    def __init__(self, address: int, count: int) -> None:
        self.__array_interface__ = {
            "data": (address, True),
            "shape": (count,),
            "typestr": "<u8",
            "version": 3,
        }


def _words(address: int, count: int) -> np.ndarray:
    return np.asarray(_Memory(address, count))


def _layout_known() -> bool:
    """Whether tuples and floats are laid out as read here, checked on live objects.

    A word is dereferenced only once the words before it were found right:
    the tuple's addresses (read inside the tuple), then each float's type
    and value (read inside the float).
    """
    if sys.implementation.name != "cpython":  # elsewhere an id need not be an address
        return False
    probe = tuple(float(x) for x in (1.5, -0.0, 7))  # floats made at run time
    if sys.getsizeof(probe) < _ITEMS + 8 * len(probe):
        return False
    if _words(id(probe) + _ITEMS, len(probe)).tolist() != [id(x) for x in probe]:
        return False
    for x in probe:
        if _words(id(x) + _TYPE, 1)[0] != id(float):
            return False
        if _words(id(x) + _VALUE, 1).tobytes() != struct.pack("<d", x):
            return False
    return sys.byteorder == "little"


LAYOUT = _layout_known()
"""Whether :func:`floats` may be used (CPython's usual layout, checked on import)."""


PIECE = 16384
"""Elements read at a time, so that the arrays of their addresses and types stay small:
whole-list ones (fresh pages at each call) made 10^6 floats ~10% slower."""
_ANCHOR = float("0.5")  # read in place of the values of Nones and bools


def floats(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The floats of a list of floats, Nones and bools, where the others are, and their digests.

    The first is a float64 array with a value for every element (0.5 at the
    others' places, whose digests are to be put there); None if another type
    is met, or no float.
    """
    items = values if type(values) is tuple else tuple(values)  # keeps the elements alive
    if not items:
        return None
    addresses = _words(id(items) + _ITEMS, len(items))
    base = min(int(addresses.min()), id(_ANCHOR))
    span = (max(int(addresses.max()), id(_ANCHOR)) - base) // 8 + 1
    types, memory = _words(base + _TYPE, span), _words(base + _VALUE, span)
    column = np.empty(len(items), dtype=np.float64)
    others = []
    for start in range(0, len(items), PIECE):
        index = np.subtract(addresses[start : start + PIECE], np.uint64(base))
        index >>= np.uint64(3)  # objects are aligned to 8 bytes at least
        index = index.view(np.intp)
        rest = np.flatnonzero(types[index] != id(float))
        if len(rest):
            index[rest] = (id(_ANCHOR) - base) // 8  # a float's value read in their place
            others.append(rest + start)
        np.take(memory, index, out=column.view(np.uint64)[start : start + len(index)])
    found = np.concatenate(others) if others else np.empty(0, dtype=np.intp)
    kinds = _singleton_kinds(addresses[found])
    if kinds is None or len(found) == len(items):
        return None
    return column, found, _DIGESTS[kinds]


def _singleton_kinds(addresses: np.ndarray) -> np.ndarray | None:
    """The place in ``_SINGLETONS`` of each object at ``addresses``, None if one is not there."""
    kinds = np.full(len(addresses), -1, dtype=np.intp)
    for kind, singleton in enumerate(_SINGLETONS):
        kinds[addresses == id(singleton)] = kind
    return None if (kinds < 0).any() else kinds
