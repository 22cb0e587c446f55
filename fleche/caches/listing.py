"""A cache's listing: stored records, less the expired ones, as lazy calls, a page at a time.

Every call storage gives its records a page at a time
(:meth:`~fleche.storage.bulk_reads.BulkReads.query_pages`; a SQL store
reads whole pages in place, others group what their query yields in pages
of 1, 2, 4, … records, so that ``.any()`` reads one record only).  Each page
is filtered for expiry and wrapped in :class:`~fleche.call.LazyCall`
objects in bulk, with no Python code per record where none is needed; the
pages also feed :meth:`~fleche.query.QueryIterator.table` directly.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby, islice, repeat
from operator import methodcaller
from typing import Any

from ..call import DigestedCall, LazyCall, QueryCall
from ..expiry import EXPIRY, entry_expired
from ..query import QueryIterator
from ..storage.record_page import RecordPage, collector_paused, packed

__all__ = ["calls_of", "pages_of"]

_expiry = methodcaller("get", EXPIRY)
_make = object.__new__
_RECORD, _VALUES = object(), object()
_FRESH = [  # each slot's setter, and what a new call holds there
    (getattr(LazyCall, slot).__set__, getattr(made, slot))
    for made in [LazyCall(_RECORD, _VALUES)]  # type: ignore[arg-type]
    for slot in LazyCall.__slots__
]
_RECORD_SLOT = LazyCall.__dict__["digested_call"]
#: Calls gathered into one page by :func:`pages_of`.
PAGE_OF_CALLS = 1024
#: Pages of at least this many records keep their metadata packed: those of a long listing
#: (a page of a small query's few calls costs the collector little, and packing it time).
PACK_FROM = 256


def _read_record(call: PagedCall) -> DigestedCall:
    record = _RECORD_SLOT.__get__(call)
    if record is not None:
        return record
    page = call.page  # built on first read; then the page is let go
    if page is None:  # built by another thread meanwhile (it sets the record first)
        return _RECORD_SLOT.__get__(call)
    record = page.record(call.row)
    _RECORD_SLOT.__set__(call, record)
    call.page = None
    return record


class PagedCall(LazyCall):
    """A :class:`~fleche.call.LazyCall` of a row of a page, its record built when first read.

    A listing makes a call per stored record, and most are never read
    (counted, cut by ``take``, handed to a table): one object per call,
    and no record built for those.  It copies and pickles as the
    :class:`~fleche.call.LazyCall` it is.
    """

    __slots__ = ("page", "row")

    page: RecordPage | None
    row: int

    digested_call = property(_read_record, _RECORD_SLOT.__set__)  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return LazyCall, (self.digested_call, self._values)


_PAGE, _ROW = PagedCall.page.__set__, PagedCall.row.__set__  # type: ignore[attr-defined]


def calls_of(
    cache: Any, template: QueryCall, expired: bool, counter: Callable[[], int] | None
) -> QueryIterator:
    """The calls of ``cache`` (its ``calls``, ``values`` and ``clock``) matching ``template``.

    Expired calls are left out unless ``expired``; ``counter`` counts them
    without loading them.
    """

    def pages() -> Iterator[RecordPage]:
        now = None if expired else cache.clock()
        for page in cache.calls.query_pages(template):
            yield page if now is None else live(page, now)

    def source() -> Iterator[LazyCall]:
        for page in pages():
            with collector_paused():
                calls = paged_calls(page, cache.values)
            yield from calls

    return QueryIterator(source, cache, counter, pages, cache.values.values_of)


def lazy_calls(records: Sequence[DigestedCall], values: Any) -> list[LazyCall]:
    """``LazyCall(record, values)`` of each record, built a slot at a time (a listing makes many).

    Each slot is set to what the constructor set it to in a call made once
    with stand-ins for the record and the values.
    """
    calls = list(map(_make, repeat(LazyCall, len(records))))
    for setter, made in _FRESH:
        column = records if made is _RECORD else repeat(values if made is _VALUES else made)
        deque(map(setter, calls, column), 0)
    return calls


def paged_calls(page: RecordPage, values: Any) -> list[LazyCall]:
    """A :class:`PagedCall` of each row of ``page`` (see :func:`lazy_calls`).

    The metadata of a page of :data:`PACK_FROM` rows or more is kept
    :func:`~fleche.storage.record_page.packed` until a record of it is built.
    """
    if page.built is not None:
        return lazy_calls(page.built, values)
    if len(page) >= PACK_FROM:
        page = dataclasses.replace(page, metadata=packed(page.metadata))
    calls = list(map(_make, repeat(PagedCall, len(page))))
    deque(map(_PAGE, calls, repeat(page)), 0)
    deque(map(_ROW, calls, range(len(page))), 0)
    for setter, made in _FRESH:  # the record None: built from the page when read
        slot = None if made is _RECORD else values if made is _VALUES else made
        deque(map(setter, calls, repeat(slot)), 0)
    return calls


def live(page: RecordPage, now: float) -> RecordPage:
    """The page less the records expired by ``now`` (one pass when none carries an expiry)."""
    entries = list(map(_expiry, page.metadata))
    if entries.count(None) == len(entries):
        return page
    return page.select([not entry_expired(e, now) for e in entries])


def pages_of(calls: Iterable[LazyCall]) -> Iterator[RecordPage]:
    """The records of ``calls`` as pages (for a table of a listing filtered call by call).

    The calls of a listing still on their page (no record built) keep their
    columns: such a run of calls is its page less the rows left out.  The
    others' records are gathered a page at a time.
    """
    calls = iter(calls)
    while chunk := list(islice(calls, PAGE_OF_CALLS)):
        with collector_paused():
            for page, run in groupby(chunk, _page_of):
                if page is None:
                    yield RecordPage.of([call.digested_call for call in run])
                    continue
                keep = [False] * len(page)
                for call in run:
                    keep[call.row] = True  # type: ignore[attr-defined]
                yield page.select(keep)


def _page_of(call: LazyCall) -> RecordPage | None:
    """The page ``call`` is read from, if its record is still there only."""
    return call.page if type(call) is PagedCall else None
