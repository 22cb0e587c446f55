"""What keeps a repair from removing sound entries: a cause shared by most entries is global.

Most values mismatching their keys means the digest rules changed; most
records missing their values means the values live elsewhere (a store
opened with the wrong layout, a lost mount).  :func:`fleche.verify.verify`
reports such entries and marks them as not to be repaired.
"""

from __future__ import annotations

import dataclasses

from .findings import MISMATCH, MISSING_VALUE, Problem

__all__ = ["UNPROVEN", "guard_systematic", "kept"]

#: Below this many mismatching values, mismatches are never called systematic.
_SYSTEMATIC_MINIMUM = 10

_SYSTEMATIC = {
    MISMATCH: "most values mismatch, so the digest rules changed rather than the values",
    MISSING_VALUE: "most records miss their values, so the values are kept elsewhere "
    "or in another layout than this store is opened with",
}


def guard_systematic(problems: list[Problem], checked: int, kind: str) -> list[Problem]:
    """Keep entries of one kind from being removed when most entries have it: the cause is global.

    Most values mismatching their keys means the digest rules changed;
    most records missing their values means the values live elsewhere (a
    store opened with the wrong layout, a lost mount): removing them would
    lose every call of a healthy store.
    """
    count = sum(1 for p in problems if p.kind == kind)
    if count < max(_SYSTEMATIC_MINIMUM, (checked + 1) // 2):
        return problems
    return kept(problems, kind, _SYSTEMATIC[kind])


UNPROVEN = (
    "the value storage lists no value any record refers to, so it is not where these "
    "calls keep their values"
)


def kept(problems: list[Problem], kind: str, why: str) -> list[Problem]:
    """The problems of ``kind`` marked as not to be repaired, saying why."""
    note = f"; {why}: kept"
    return [
        dataclasses.replace(p, detail=p.detail + note, fixable=False) if p.kind == kind else p
        for p in problems
    ]
