"""What a verify finds: the kinds of problems, one problem, and the report of a pass.

Plain data, kept apart from the pass itself (:mod:`.verification`) so that
reports can be read, filtered and printed without it.
"""

from __future__ import annotations

import dataclasses

from ..digest import Digest

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
]

# Kinds of problems.
CORRUPT_VALUE = "corrupt value"
MISSING_PART = "missing part"
BROKEN_PART = "broken part"
MISMATCH = "digest mismatch"
UNVERIFIABLE = "unverifiable value"
READ_ERROR = "read error"
UNLISTABLE = "unreadable entries"
CORRUPT_RECORD = "corrupt record"
MISFILED_RECORD = "misfiled record"
MISSING_VALUE = "missing value"
BROKEN_VALUE = "broken value"
STRAY = "stale temporary file"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One inconsistency: where (``store`` is ``"values"`` or ``"calls"``, ``key``), what, and why.

    ``key`` is ``None`` when the storage could not even list some entries
    (e.g. a shared HDF5 file that cannot be opened): the entries it holds
    read as missing, and the records that need them are reported too.
    ``fixable`` says whether ``verify(fix=True)`` removes the entry;
    ``fixed`` whether it did.
    """

    store: str
    key: Digest | None
    kind: str
    detail: str
    fixable: bool = True
    fixed: bool = False

    def __str__(self) -> str:
        action = " [removed]" if self.fixed else ("" if self.fixable else " [kept]")
        where = self.key[:12] if self.key else "(file)" if self.kind == STRAY else "(listing)"
        return f"{self.store} {where}: {self.kind}: {self.detail}{action}"


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` checked and found; ``ok`` when nothing is wrong."""

    values: int
    calls: int
    problems: tuple[Problem, ...]
    #: When the check began (epoch seconds): pass it as ``since`` to check only what changed.
    started: float | None = None

    @property
    def ok(self) -> bool:
        """Whether every entry is sound."""
        return not self.problems

    @property
    def fixed(self) -> tuple[Problem, ...]:
        """The problems repaired (their entries removed)."""
        return tuple(p for p in self.problems if p.fixed)

    def by_kind(self, kind: str) -> tuple[Problem, ...]:
        """The problems of one kind, e.g. ``report.by_kind("corrupt value")``."""
        return tuple(p for p in self.problems if p.kind == kind)

    def __str__(self) -> str:
        head = f"checked {self.values} values and {self.calls} calls: "
        if self.ok:
            return head + "no problems"
        n = len(self.problems)
        fixed = len(self.fixed)
        head += f"{n} problem{'s' if n != 1 else ''}" + (f", {fixed} removed" if fixed else "")
        return "\n".join([head, *(f"  {p}" for p in self.problems)])
