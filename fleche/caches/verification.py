"""Verify a store: re-read every entry, check it against its key and its references.

The work behind :meth:`Cache.verify <fleche.caches.Cache.verify>` and
:func:`fleche.verify.verify`; :mod:`fleche.verify` says what is checked and
what a repair removes.  It uses the cache's value and call storages
through the generic storage API only, so it works on every backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from ..digest import Digest
from ..errors import CorruptEntryWarning
from ..expiry import GC_GRACE
from ..storage.base import CallStorage, ValueStorage
from ..storage.record_page import collector_paused
from .findings import (
    MISMATCH,
    MISSING_VALUE,
    READ_ERROR,
    STRAY,
    UNLISTABLE,
    Problem,
    VerifyReport,
)
from .verify_calls import CallPass
from .verify_guards import UNPROVEN, guard_systematic, kept
from .verify_values import ValuePass, attempt
from .verify_worker import Helper

__all__ = ["Problem", "VerifyReport", "repair", "verify"]

Progress = Callable[[int, int], Any]


class Verified(Protocol):
    """What :func:`verify` checks: a cache with storages of its own (a :class:`~fleche.caches.Cache`)."""

    values: ValueStorage
    calls: CallStorage


class _Verifier:
    """One pass over a cache, collecting problems.

    The whole pass runs under one warnings-recording context (entering one
    per read cost more than the read itself on a memory store): the
    corrupt-entry warnings raised by a read are its findings, every other
    warning is passed on when the pass ends.
    """

    def __init__(
        self, cache: Verified, progress: Progress | None, since: float | None, fix: bool
    ) -> None:
        self.since = since
        self.cache = cache
        self.fix = fix
        #: Leftovers of killed writers (:func:`_strays`) and what the storages' own audits
        #: find (``None``: audited after a repair), found while a child reads values.
        self.strays: list[Problem] = []
        self.audited: list[Problem] | None = None
        self.values: ValueStorage = cache.values
        self.calls: CallStorage = cache.calls
        self.progress = progress
        self.value_keys: set[Digest] = set()
        self.caught: list[warnings.WarningMessage] = []
        self.parts: dict[Digest, list[Digest]] = {}
        self.done = 0
        self.total = 0

    def _tick(self, done: int) -> None:
        progress, total = self.progress, self.total
        for _ in range(done):  # once per entry, as documented, though records come by the page
            self.done += 1
            progress(self.done, total)  # type: ignore[misc]  # only given a progress

    def _present(self, key: Digest) -> bool:
        # Listed at the start, or written since (a call stored during the pass).
        return key in self.value_keys or self.values.contains(key)

    def _listed(self, storage: ValueStorage | CallStorage, store: str) -> tuple[list, list]:
        """The sorted keys of ``storage`` and the problems of entries it could not list."""
        keys, error, corrupt = attempt(self.caught, lambda: list(storage.list()))
        if error is not None:
            raise error
        keys.sort()  # a storage of files lists them sorted already: no work
        return keys, _unlisted(store, corrupt)

    def run(self) -> tuple[list[Problem], list[Problem], int, int]:
        try:  # the collector paused: it would walk the millions of keys held, for no cycle
            with collector_paused(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.caught = caught
                return self._run()
        finally:  # after the filters are restored, so the user's filters apply
            for w in self.caught:
                if not issubclass(w.category, CorruptEntryWarning):
                    warnings.warn_explicit(
                        w.message, w.category, w.filename, w.lineno, source=w.source
                    )

    def _run(self) -> tuple[list[Problem], list[Problem], int, int]:
        value_keys, value_problems = self._listed(self.values, "values")
        self.value_keys = set(value_keys)
        # Checking only what changed reads few values: a child would cost more than it saves.
        helper = Helper.start(self.values, value_keys) if self.since is None else None
        try:
            return self._check(value_keys, value_problems, helper)
        finally:
            if helper is not None:
                helper.close()

    def _check(
        self, value_keys: list[Digest], value_problems: list[Problem], helper: Helper | None
    ) -> tuple[list[Problem], list[Problem], int, int]:
        call_keys, call_problems, n_calls = self._call_keys()
        self.total = len(value_keys) + n_calls
        tick = _quiet if self.progress is None else self._tick
        checker = ValuePass(self.values, self._present, self.caught)
        if helper is None:
            value_problems += checker.run(value_keys, self.since, tick)
        else:  # the records, and whatever else there is to do, while a child reads values
            early = self._records(call_keys, {}, tick)
            self._other_checks()
            value_problems += checker.run_helped(helper, tick)
        self.parts = checker.parts
        value_problems += checker.broken_parts(value_problems)
        value_problems = guard_systematic(value_problems, len(value_keys), MISMATCH)
        broken = {p.key: p for p in value_problems if p.fixable}
        if helper is None or broken:  # (again, now knowing which values are broken)
            records = self._records(call_keys, broken, tick if helper is None else _quiet)
        else:
            records = early
        call_problems += records[0]
        call_problems = guard_systematic(call_problems, n_calls, MISSING_VALUE)
        if not records[1]:  # not one referenced value listed: the values are elsewhere
            call_problems = kept(call_problems, MISSING_VALUE, UNPROVEN)
        if helper is None:
            self._other_checks()
        return value_problems, call_problems, len(value_keys), n_calls

    def _call_keys(self) -> tuple[list[Digest] | None, list[Problem], int]:
        """The record keys listed, their listing's problems and how many there are.

        No keys (``None``), only a count, where the call storage splits its
        records at ``since`` itself: the pass reads them from the split.
        """
        if self.since is not None and self.calls.split_since(self.since) is not None:
            return None, [], self.calls.count()
        keys, problems = self._listed(self.calls, "calls")
        return keys, problems, len(keys)

    def _other_checks(self) -> None:
        """Leftovers, and (unless repairing, which comes first) the storages' own audits."""
        self.strays = _strays(self.cache)
        if not self.fix:
            self.audited = _audited("values", self.values, False)
            self.audited += _audited("calls", self.calls, False)

    def _records(
        self, keys: list[Digest] | None, broken: dict[Digest, Problem], tick: Callable[[int], Any]
    ) -> tuple[list[Problem], int]:
        """The problems of the records, and how many of the values they refer to were found."""
        records = CallPass(self.calls, self.value_keys, self._present, self.caught, self.since)
        return records.run(keys, broken, tick), records.found


def _quiet(done: int) -> None:
    """No progress to report."""


def _unlisted(store: str, corrupt: list[warnings.WarningMessage]) -> list[Problem]:
    """Entries a storage could not even list: reported, never repaired (nothing to evict by key)."""
    messages = dict.fromkeys(str(w.message) for w in corrupt)  # each once, in order
    return [Problem(store, None, UNLISTABLE, message, fixable=False) for message in messages]


def verify(
    cache: Verified,
    fix: bool = False,
    progress: Progress | None = None,
    *,
    since: float | None = None,
    since_last: bool = False,
) -> VerifyReport:
    """Check every value and call record of ``cache``; with ``fix``, remove the broken ones.

    ``progress(done, total)`` is called after each entry (values and
    records), e.g. to drive a progress bar on a large store.  ``since``
    (epoch seconds, e.g. the ``started`` of an earlier report) skips
    re-reading the values written before then, where the value storage
    knows when each was written; the values every record refers to are
    still looked up, and the records stored since read whole and their
    lookup keys computed again (a call storage that splits its records at
    ``since`` itself, :meth:`~fleche.storage.bulk_reads.BulkReads.split_since`,
    reads the older ones as their references only).  ``since_last`` takes ``since`` from the store: when
    the last verify recorded there began (everything is read if none is).
    Every verify records when it began, where the value storage can keep it
    (a store of files: ``values/verified``).
    """
    started = time.time()
    if since_last:
        last = getattr(cache.values, "last_verified", None)
        since = last() if callable(last) else None
    verifier = _Verifier(cache, progress, since, fix)
    value_problems, call_problems, n_values, n_calls = verifier.run()
    index = getattr(cache.values, "index_children", None)
    unread = any(p.kind in (READ_ERROR, UNLISTABLE) for p in value_problems)
    if since is None and not unread and callable(index):  # every container read: gc reads none
        index(verifier.parts)
    problems = value_problems + call_problems + verifier.strays
    report = VerifyReport(n_values, n_calls, tuple(problems), started)
    if fix:
        report = repair(cache, report)
    audited = verifier.audited
    if audited is None:
        audited = _audited("values", cache.values, fix) + _audited("calls", cache.calls, fix)
    record = getattr(cache.values, "record_verified", None)
    if callable(record):
        record(started)
    return dataclasses.replace(report, problems=report.problems + tuple(audited))


def repair(cache: Verified, report: VerifyReport) -> VerifyReport:
    """Remove the fixable entries a :func:`verify` report found (e.g. after a person read it)."""
    # Records first: a record must never point at a value already removed.
    problems = sorted(report.problems, key=lambda p: p.store != "calls")
    fixed = {
        id(p): _repair(cache.calls if p.store == "calls" else cache.values, p) for p in problems
    }
    return dataclasses.replace(report, problems=tuple(fixed[id(p)] for p in report.problems))


def _strays(cache: Verified) -> list[Problem]:
    """Leftovers of killed writers older than the gc grace: reported; ``fleche gc`` removes them."""
    horizon = time.time() - GC_GRACE
    found = []
    for store, storage in (("values", cache.values), ("calls", cache.calls)):
        find = getattr(storage, "strays", None)
        if callable(find):
            found += [
                Problem(store, None, STRAY, f"{path} (`fleche gc` removes it)", fixable=False)
                for path in find(horizon)
            ]
    return found


def _audited(store: str, storage: Any, fix: bool) -> list[Problem]:
    """What a storage that checks its own medium finds (its ``audit(fix)``, e.g. ``Sql``'s)."""
    audit = getattr(storage, "audit", None)
    if audit is None:
        return []
    return [Problem(store, f.key, f.kind, f.detail, f.fixable, f.fixed) for f in audit(fix)]


def _repair(storage: ValueStorage | CallStorage, problem: Problem) -> Problem:
    if not problem.fixable or problem.fixed:
        return problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        with contextlib.suppress(KeyError):
            storage.evict(problem.key)
    return dataclasses.replace(problem, fixed=True)
