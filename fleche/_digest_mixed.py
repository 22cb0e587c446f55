"""Digests of long lists that mix ints, floats, strs, Nones, bools and other values.

The elements are sorted by kind with no Python step per element: one
``map(type, ...)`` pass into an object array, whose pointers (the types'
ids, read through the array's buffer) are compared to ``id(int)`` and the
like in numpy. Each kind is then digested in bulk (:mod:`fleche._digest_bulk`)
and its digests put back in place; Nones and bools take their constant
digests, and whatever else is met is encoded one by one.

A list of one kind of number with Nones or bools (floats with gaps, say) is
read from the float objects' memory (:mod:`fleche._digest_memory`) or from a
single ``marshal`` pass (:mod:`fleche._digest_marshal`) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fleche._digest_bulk import (
    FLOAT_PREFIX,
    SAMPLE,
    all_strs,
    bulk_digests,
    encoded,
    loader,
    pick,
    str_digests,
    words,
)
from fleche._digest_marshal import (
    NUMBER_RECORDS,
    SINGLETON_CODES,
    numbers_and_singletons,
    patched,
)
from fleche._digest_memory import LAYOUT, floats
from fleche._digest_scheme import encode
from fleche._digest_xxh3 import collect, words_digests
from fleche.errors import Indigestible

STR_LIST_MIN = 2048
"""Shorter lists of strs digest faster one by one (the numpy passes cost ~0.2 ms)."""


def element_digests(values: Any) -> Iterator[np.ndarray] | None:
    """The digests of ``values`` in pieces if many are ints, floats or strs, else None."""
    if len(values) >= STR_LIST_MIN and all_strs(values):
        out = np.empty((len(values), 16), dtype=np.uint8)
        str_digests(values, out)
        return iter([out])
    found = words(values)
    if found is not None:
        return words_digests(*found)
    return mixed_digests(values)


def digests(values: list[Any], out: np.ndarray) -> None:
    """The digests of ``values`` into the ``(n, 16)`` array ``out``."""
    if not bulk_digests(values, out):
        mixed = mixed_digests(values)
        if mixed is None:
            out[...] = encoded(values)
        else:
            collect(len(values), mixed, out)


def _ids(objects: np.ndarray) -> np.ndarray:
    """The ids of the objects an object array holds (its pointers), as integers."""
    return np.frombuffer(memoryview(objects).cast("B"), dtype=np.intp)


def _ids_are_pointers() -> bool:
    """Whether :func:`_ids` works here: CPython, where an id is the object's address."""
    try:
        return _ids(np.array([None, int], dtype=object)).tolist() == [id(None), id(int)]
    except (TypeError, ValueError, NotImplementedError):  # no buffer of an object array
        return False


IDS = _ids_are_pointers()
"""Without it, mixed lists digest element by element (the same digests, slower)."""


_NONE, _TRUE, _FALSE = encode(None), encode(True), encode(False)


def mixed_digests(values: Any) -> Iterator[np.ndarray] | None:
    """The digests of a list mixing ints, floats or strs with other things, in pieces, else None.

    A failure returns None, so that the general path raises it with its place
    in the list.
    """
    sample = set(map(type, values[:: max(1, len(values) // SAMPLE)]))
    numbers = sample - SINGLETON_CODES.keys()
    if numbers == {float} and LAYOUT:
        found = floats(values)
        if found is not None:
            column, rows, digests = found
            return patched(words_digests(FLOAT_PREFIX, len(values), loader(column)), rows, digests)
    if len(numbers) == 1 and numbers <= NUMBER_RECORDS.keys():
        met = sample & SINGLETON_CODES.keys() or SINGLETON_CODES.keys()  # none met: any
        codes = b"".join(SINGLETON_CODES[kind] for kind in met)
        found = numbers_and_singletons(values, numbers.pop(), codes)
        if found is not None:
            return found
    if not IDS or not sample & {int, float, str}:
        return None
    try:
        return iter([_by_kind(values)])
    except Indigestible:
        return None


_KINDS = (int, float, str, type(None), bool)
_KIND_IDS = np.array([id(kind) for kind in _KINDS], dtype=np.intp)


def _by_kind(values: Any) -> np.ndarray:
    """The digests of ``values``, each kind of ``_KINDS`` in bulk, the rest one by one."""
    kinds = _ids(np.fromiter(map(type, values), dtype=object, count=len(values)))
    out = np.empty(len(values), dtype="V16")  # digests moved whole: ~10 times faster than rows
    done = 0
    for kind, address in zip(_KINDS, _KIND_IDS.tolist(), strict=True):
        places = np.flatnonzero(kinds == address)
        if len(places):
            out[places] = _kind_digests(kind, values, places)
            done += len(places)
    if done < len(values):
        rest = np.flatnonzero(~np.isin(kinds, _KIND_IDS))
        out[rest] = encoded(pick(values, rest)).view("V16")[:, 0]
    return out.view(np.uint8).reshape(-1, 16)


def _kind_digests(kind: type, values: Any, places: np.ndarray) -> np.ndarray:
    """The digests (``V16``) of the elements of ``values`` at ``places``, all of type ``kind``."""
    if kind is type(None):
        return np.frombuffer(_NONE, dtype="V16")  # set in every row
    members = pick(values, places)
    if kind is bool:
        constants = np.frombuffer(_FALSE + _TRUE, dtype="V16")
        return constants[np.array(members, dtype=np.intp)]
    group = np.empty((len(members), 16), dtype=np.uint8)
    if kind is str:
        str_digests(members, group)
    elif not bulk_digests(members, group):  # ints past int64
        group[...] = encoded(members)
    return group.view("V16")[:, 0]
