"""The record half of a verify: every listed record checked, in bulk where it is sound.

A storage that reads its records in place (``Sql``: its own
:meth:`~fleche.storage.bulk_reads.BulkReads.scan`) is read a page of
columns at a time (:meth:`~fleche.storage.bulk_reads.BulkReads.query_pages`).
A page whose records refer only to values listed and sound, and keep every
argument they name, costs one set comparison for all its references and,
per record, its lookup key computed from the columns
(:func:`~fleche.call_key.key_of`), with no record object made.  The records
of any other page, and of any other storage, are checked one by one,
naming what is wrong with each.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from operator import contains
from typing import Any

from ..call import QueryCall, unstored_arguments
from ..call_key import function_prefix, key_of
from ..call_record import UNSTORED
from ..digest import Digest
from ..storage.base import CallStorage
from ..storage.bulk_reads import BulkReads
from ..storage.record_page import RecordPage
from .findings import BROKEN_VALUE, CORRUPT_RECORD, MISFILED_RECORD, MISSING_VALUE, Problem
from .verify_values import attempt, failure

__all__ = ["CallPass"]

_new = str.__new__

#: ``tick(n)``: ``n`` more entries checked.
Tick = Callable[[int], Any]


class CallPass:
    """Checks the listed records of one call storage against the values listed.

    ``value_keys`` are the values listed, ``present`` answers whether a key
    is stored (listed, or written since); ``caught`` is the list the
    verify's warnings are recorded in; records stored before ``since`` do
    not have their lookup keys computed again.
    """

    def __init__(
        self,
        calls: CallStorage,
        value_keys: set[Digest],
        present: Callable[[Digest], bool],
        caught: list[warnings.WarningMessage],
        since: float | None,
    ) -> None:
        self.calls = calls
        self.value_keys = value_keys
        self.present = present
        self.caught = caught
        self.since = since
        #: How many values some record refers to were found: proof the value storage is the right one.
        self.found = 0

    def run(
        self, keys: list[Digest] | None, broken: dict[Digest, Problem], tick: Tick
    ) -> list[Problem]:
        """The problems of the records listed as ``keys``: read in bulk, those left out alone.

        No ``keys``: the storage splits its records at ``since`` itself (:meth:`split`).
        """
        if keys is None:
            return self.split(broken, tick)
        problems: list[Problem] = []
        listed: set[str] = set(keys)
        seen: set[str] = set()
        if type(self.calls).scan is BulkReads.scan:  # records loaded one by one anyway
            pages: Iterator[RecordPage] = iter(())
            problems += self._each(self.calls.scan(), listed, seen, broken, tick)
        else:  # read in place: pages of columns
            pages = iter(self.calls.query_pages(QueryCall()))
        for page in pages:
            if not (listed.issuperset(page.keys) and seen.isdisjoint(page.keys)):
                page = _fresh(page, listed, seen)  # written since the listing, or read already
            seen.update(page.keys)
            problems += self.check_page(page, broken)
            tick(len(page))
        # Listed but not read: damaged, or removed meanwhile.
        leftovers = ((key, None) for key in keys if key not in seen)
        problems += self._each(leftovers, listed, seen, broken, tick)
        problems.sort(key=lambda p: p.key)
        return problems

    def split(self, broken: dict[Digest, Problem], tick: Tick) -> list[Problem]:
        """The problems of the records as the storage splits them at ``since`` (no listing).

        The records created before are checked a page of references at a
        time; the others, a page of columns at a time; a record of a page
        whose references are not all sound values, or whose row could not
        be read in bulk, is read whole (naming what is wrong with it).
        """
        split = self.calls.split_since(self.since)  # type: ignore[arg-type]  # only given a since
        assert split is not None  # the verify asked first
        whole: list[str] = []
        value_keys = self.value_keys
        for keys, references in split.settled:
            if value_keys.issuperset(references) and (
                not broken or broken.keys().isdisjoint(references)
            ):
                self.found += len(references)
                tick(len(keys))
            else:
                whole += keys
        problems: list[Problem] = []
        seen: set[str] = set()
        for page in split.changed:
            seen.update(page.keys)
            problems += self.check_page(page, broken)
            tick(len(page))
        whole += split.unread
        leftovers = ((Digest(key), None) for key in whole if key not in seen)
        problems += self._each(leftovers, set(whole), seen, broken, tick)
        problems.sort(key=lambda p: p.key)
        return problems

    def _each(
        self,
        records: Iterable[tuple[Digest, Any]],
        listed: set[str],
        seen: set[str],
        broken: dict[Digest, Problem],
        tick: Tick,
    ) -> list[Problem]:
        """The problems of ``records`` (``(key, record)``, the record read now if ``None``), one by one."""
        problems = []
        for key, record in records:
            if key in listed and key not in seen:  # else written since the listing
                seen.add(key)
                problem = self.check_call(key, broken, record)
                if problem is not None:
                    problems.append(problem)
                tick(1)
        return problems

    def check_page(self, page: RecordPage, broken: dict[Digest, Problem]) -> list[Problem]:
        """The problems of the records of ``page``: in bulk if they refer only to sound values."""
        references = list(chain.from_iterable(map(dict.values, page.arguments)))
        references += page.results
        if (
            any(map(contains, page.metadata, repeat(UNSTORED)))
            or not self.value_keys.issuperset(references)
            or (broken and not broken.keys().isdisjoint(references))
        ):
            found = map(self.check_call, map(Digest, page.keys), repeat(broken), page.records())
            return [problem for problem in found if problem is not None]
        self.found += len(references)
        return self.misfiled(page)

    def misfiled(self, page: RecordPage) -> list[Problem]:
        """The records of a page not under their lookup keys (computed from the columns).

        Only for a page whose every argument is a listed value: a full digest.
        """
        problems = []
        since = self.since
        raw = bytes.fromhex
        for key, name, module, version, code, unkeyed, given, created in zip(
            page.keys,
            page.names,
            page.modules,
            page.versions,
            page.codes,
            page.unkeyed,
            page.arguments,
            page.created,
            strict=True,
        ):
            if since is not None and created < since:  # checked before
                continue
            if code is not None:  # a column may hold it as text: it digests as the digest it is
                code = _new(Digest, code)
            try:
                prefix = function_prefix(name, module, version, code, unkeyed)
                own = key_of(prefix, {n: raw(d) for n, d in given.items()})
            except Exception as err:
                problems.append(_unkeyed(key, err))
                continue
            if own != key:
                problems.append(_misfiled(key, own))
        return problems

    def check_call(
        self, key: Digest, broken: dict[Digest, Problem], record: Any = None
    ) -> Problem | None:
        """Check one record (``record``, read in bulk, or read now): its key and every value it references."""
        if record is None:
            record, error, corrupt = attempt(self.caught, lambda: self.calls.load(key))
            if error is not None:
                problem = failure("calls", key, error, corrupt, CORRUPT_RECORD)
                if problem is None and self.calls.contains(key):  # a silent miss of a listed entry
                    problem = Problem(
                        "calls", key, CORRUPT_RECORD, "it is listed but reads as missing"
                    )
                return problem
        own = key
        if self.since is None or not record.created < self.since:  # else checked before
            try:
                own = record.key()
            except Exception as err:
                return _unkeyed(key, err)
        unstored = unstored_arguments(record.metadata)  # keyed by digest, kept by the user
        if unstored:
            values = [d for n, d in record.arguments.items() if n not in unstored]
        else:
            values = list(record.arguments.values())
        values.append(record.result)
        if self.value_keys.issuperset(values) and (not broken or broken.keys().isdisjoint(values)):
            self.found += len(values)  # the common case: every value listed and sound
        else:
            problem = self.references_problem(key, record, unstored, broken)
            if problem is not None:
                return problem
        return _misfiled(key, own) if own != key else None

    def references_problem(
        self, key: Digest, record: Any, unstored: Any, broken: dict[Digest, Problem]
    ) -> Problem | None:
        """What is wrong with the values a record refers to: missing or broken ones, by name."""
        bad = []
        missing = False
        references = [
            (f"argument {n!r}", d) for n, d in record.arguments.items() if n not in unstored
        ]
        for label, value in [*references, ("result", record.result)]:
            if value in broken:
                bad.append(f"{label} {value[:12]} ({broken[value].kind})")
            elif not self.present(value):
                missing = True
                bad.append(f"{label} {value[:12]} (missing)")
            else:
                self.found += 1
        if bad:
            return Problem("calls", key, MISSING_VALUE if missing else BROKEN_VALUE, "; ".join(bad))
        return None


def _fresh(page: RecordPage, listed: set[str], seen: set[str]) -> RecordPage:
    """The records of ``page`` listed at the start and not read yet (each key once)."""
    keep = []
    taken: set[str] = set()
    for key in page.keys:
        new = key in listed and key not in seen and key not in taken
        taken.add(key)
        keep.append(new)
    return page.select(keep)


def _unkeyed(key: str, err: Exception) -> Problem:
    return Problem(
        "calls", Digest(key), CORRUPT_RECORD, f"its lookup key cannot be computed: {err}"
    )


def _misfiled(key: str, own: Digest) -> Problem:
    return Problem(
        "calls",
        Digest(key),
        MISFILED_RECORD,
        f"its lookup key is {own[:12]} (an older key scheme?): re-key with cache.calls.transform()",
        fixable=False,
    )
