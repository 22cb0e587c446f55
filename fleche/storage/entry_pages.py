"""Many small entries decoded in one loop: the table of a store's calls reads most of its values.

An entry's bytes are a header, a check and a payload
(:mod:`~fleche.storage.pickle_file`).  Read one by one, each entry costs
a method call, a header comparison, a hasher with two updates, a
serializer's call and a few slices: more than the unpickling itself for a
value of a few bytes.  :func:`plain_entries` decodes a page of entries
written the plain way (this header: unsigned, uncompressed, pickled, no
out-of-band frame) with the check and the unpickling inline, and leaves
every other row, damaged ones included, to the codec's own decode, which
says what is wrong with it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import add, getitem, itemgetter
from typing import Any

from xxhash import xxh3_64_digest

from ..digest import Digest

__all__ = ["CHECK_SIZE", "plain_entries", "plain_values"]

#: The bytes of an unsigned entry's check (xxh3-64).
CHECK_SIZE = 8
#: The first byte of a payload framed with out-of-band buffers (:mod:`fleche.serializers`).
_FRAMED = 0xFF
_new = str.__new__
_first = itemgetter(0)


def plain_entries(
    rows: Sequence[tuple[str, bytes]], head: bytes
) -> tuple[dict[Digest, Any], list[tuple[str, bytes]]]:
    """The objects of the rows ``(key, bytes)`` written plainly with ``head``, and the rows left.

    A row is decoded here only if its header is ``head``, its check
    (xxh3-64 of the key, the header and the payload, as the codec computes
    it in steps) matches and it unpickles; the rows left are for the
    codec's per-entry decode.  A page whose rows all pass is checked a
    column at a time (no Python code per row but the unpickling); one with
    a row that does not is decoded row by row, to leave that row alone.
    """
    try:
        return _page(rows, head), []
    except _NOT_PLAIN:
        return _one_by_one(rows, head)


def plain_values(rows: Sequence[tuple[str, bytes]], head: bytes) -> list[Any] | None:
    """The objects of the rows ``(key, bytes)``, in order, if all are written plainly with ``head``.

    ``None`` if one is not (or is damaged): the page is then read as
    :func:`plain_entries` reads it.  No digest is made for a row.
    """
    try:
        return _objects(rows, head)
    except _NOT_PLAIN:
        return None


class _Unplain(Exception):
    """A row of the page is not a plain entry (internal)."""


#: What decoding a page raises when a row of it is not a plain entry (an empty payload: IndexError).
_NOT_PLAIN = (
    _Unplain,
    LookupError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
    AttributeError,
    EOFError,
)


def _page(rows: Sequence[tuple[str, bytes]], head: bytes) -> dict[Digest, Any]:
    """The objects of a page of plain entries by key; :class:`_Unplain` (or the unpickler's error) if one is not."""
    values = _objects(rows, head)
    return dict(zip(map(_new, repeat(Digest), map(_first, rows)), values, strict=True))


def _objects(rows: Sequence[tuple[str, bytes]], head: bytes) -> list[Any]:
    """The objects of a page of plain entries, in order (see :func:`_page`)."""
    if not rows:
        return []
    texts, datas = zip(*rows, strict=True)
    end = len(head) + CHECK_SIZE
    payloads = list(map(getitem, datas, repeat(slice(end, None))))
    if _FRAMED in set(map(getitem, payloads, repeat(0))):
        raise _Unplain
    checks = map(xxh3_64_digest, map(add, map(add, map(str.encode, texts), repeat(head)), payloads))
    # What precedes each payload is the header and the check: both compared at once.
    if list(map(add, repeat(head), checks)) != list(map(getitem, datas, repeat(slice(end)))):
        raise _Unplain
    return list(map(pickle.loads, payloads))


def _one_by_one(
    rows: Iterable[tuple[str, bytes]], head: bytes
) -> tuple[dict[Digest, Any], list[tuple[str, bytes]]]:
    start = len(head)
    end = start + CHECK_SIZE
    loads = pickle.loads
    decoded: dict[Digest, Any] = {}
    left: list[tuple[str, bytes]] = []
    for text, data in rows:
        payload = data[end:]
        if (
            data[:start] != head
            or not payload
            or payload[0] == _FRAMED
            or xxh3_64_digest(text.encode() + head + payload) != data[start:end]
        ):
            left.append((text, data))
            continue
        try:
            decoded[_new(Digest, text)] = loads(payload)
        except Exception:  # noqa: BLE001 - decoded again by the codec, which says why it fails
            left.append((text, data))
    return decoded, left
