"""Verify a store: re-read every entry, check it against its key and its references.

``cache.verify()`` reports, ``cache.verify(fix=True)`` also repairs, like
diskcache's ``check(fix=False)``: every inconsistency is reported first, and
a repair only drops what is broken, never what is sound.

What is checked, through the generic storage API only (so it works on every
backend: memory, pickle files, HDF5, SQL):

- every value can be read (a :class:`~fleche.errors.CorruptEntryWarning`
  or a decoding error makes it corrupt: torn, garbled or wrongly signed),
  its parts (the children of a destructured container) are present and
  readable, and its content still digests to its key;
- every call record can be read, is filed under its own lookup key, and
  every value it references (arguments and result) is present and sound;
- whatever a storage checks in its own medium, if it has an ``audit(fix)``
  method (the SQL store: argument-index rows left by records deleted by
  hand, which ``fix`` removes, and records with metadata pickled by an
  older fleche, which are only reported).
- no temporary file of a killed writer is left behind (older than the gc
  grace; reported only: ``fleche gc`` removes them).

A repair evicts corrupt values, values with missing or broken parts, values
whose content no longer matches their key, corrupt records and records that
reference a missing or broken value (records first, so a record never
points at a value being removed).  It never touches a record filed under an
old key (re-key it with ``cache.calls.transform()``), a value that cannot be
re-digested in this process (its digest rule is not registered here), or
an entry that failed with an I/O error such as a permission problem.  When
most values mismatch their keys, the digest rules themselves have changed
(another fleche version or a changed hook); when most records miss their
values, the values are elsewhere (a store opened with the wrong layout, a
lost mount): those entries are reported but not removed.
"""

from __future__ import annotations

from .caches.findings import (
    BROKEN_PART,
    BROKEN_VALUE,
    CORRUPT_RECORD,
    CORRUPT_VALUE,
    MISFILED_RECORD,
    MISMATCH,
    MISSING_PART,
    MISSING_VALUE,
    READ_ERROR,
    STRAY,
    UNLISTABLE,
    UNVERIFIABLE,
    Problem,
    VerifyReport,
)
from .caches.verification import repair, verify

#: The kinds of problems (``Problem.kind``, ``VerifyReport.by_kind``) are named here too.
__all__ = [
    "BROKEN_PART",
    "BROKEN_VALUE",
    "CORRUPT_RECORD",
    "CORRUPT_VALUE",
    "MISFILED_RECORD",
    "MISMATCH",
    "MISSING_PART",
    "MISSING_VALUE",
    "READ_ERROR",
    "STRAY",
    "UNLISTABLE",
    "UNVERIFIABLE",
    "Problem",
    "VerifyReport",
    "repair",
    "verify",
]
