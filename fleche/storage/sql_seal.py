"""The seal of a SQL call row: its result digest bound to its key.

A ``calls`` row names its result by digest, and the hit path serves
whatever value that digest names.  A digest changed in place (a flipped
character, a truncation, an empty string) or copied from another row (two
rows' results swapped, a row pasted over another) would be served as this
call's value, or silently miss.  So every save writes the column ``seal``,
the xxh3-64 of the key and the result digest, and every read of a row
recomputes it before trusting the result: a mismatch reads as a miss with
a :class:`~fleche.errors.CorruptEntryWarning`, and the recomputed call's
save writes a good row again.

It guards against accidents and hand edits, not against someone with write
access to the database, who can recompute it (it is not an HMAC): see
``docs/security.rst``.  Name, arguments and metadata are not covered: the
result is the one column whose damage could serve a wrong value.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

__all__ = ["BrokenSeal", "broken_seal", "seal", "seals"]

_hexdigest = xxhash.xxh3_64_hexdigest


def seal(key: str, result: str | None) -> str:
    """The seal of the row of ``key`` whose result digest is ``result`` (16 hex characters)."""
    return _hexdigest((key if result is None else key + "=" + result).encode())


def seals(keys: Sequence[str], results: Sequence[str | None]) -> list[str]:
    """The seals of many rows at once, as :func:`seal` makes them (no Python call per row)."""
    if None in results:
        return list(map(seal, keys, results))
    return list(map(_hexdigest, map(str.encode, map("=".join, zip(keys, results, strict=True)))))


class BrokenSeal(ValueError):
    """A row's seal does not match its key and result: the row changed after it was written."""


def broken_seal(result: str | None, found: str | None) -> BrokenSeal:
    """The error for a row whose seal ``found`` does not match its key and ``result``."""
    if found is None:
        return BrokenSeal("it has no seal (it was written by hand, or by an older fleche)")
    return BrokenSeal(
        f"its seal does not match its key and its result digest {result!r}: "
        "the row was changed after it was written"
    )
