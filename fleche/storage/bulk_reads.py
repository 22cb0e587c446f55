"""What a storage answers about many entries at once: records counted, scanned, paged; values loaded.

The defaults here load the records (or values) one by one through
``query``, ``list`` and ``load``, so every storage has them; a storage
that can answer in place (``Sql``, from :mod:`.sql_scan`; small values
kept in a database, from :mod:`.small_values`) overrides them.  Counting,
listing, verifying and collecting a large store, and a table of its
calls, go through these.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from ..call import Call, DigestedCall, QueryCall
from ..digest import Digest
from ..expiry import is_expired
from .record_page import RecordPage

if TYPE_CHECKING:
    from .sql_newest import NewestFirst

__all__ = ["PAGE", "BulkReads", "SplitSince", "ValueBulkReads"]

#: Records in a page of :meth:`BulkReads.query_pages`.
PAGE = 1000


class SplitSince(NamedTuple):
    """A store's records split at a time, as a verify of what changed since then reads them."""

    #: Pages of the records created before then: the keys of those whose rows read sound
    #: (the others are among ``unread``), and every value digest they refer to.
    settled: Iterator[tuple[list[str], list[str]]]
    #: The records created since then, and any that keeps an argument unstored, a page at a time.
    changed: Iterator[RecordPage]
    #: The keys of the rows of either that could not be read so, as the pages are read: read them whole.
    unread: list[str]


class BulkReads:
    """Counts, references and a scan of every record, derived from ``query``, ``list`` and ``load``.

    Mixed into :class:`~fleche.storage.base.CallStorage`, which declares those three.
    """

    def count(self, template: QueryCall | Call | None = None, *, now: float | None = None) -> int:
        """How many records match ``template`` (all without one); with ``now``, those not expired by then.

        This default loads every matching record; storages that can count
        in place (``Sql``) override it.
        """
        records = self.query(QueryCall() if template is None else template)
        return sum(1 for record in records if now is None or not is_expired(record, now))

    def referenced(self) -> Iterable[Digest]:
        """The digest of every value some record refers to (arguments and results), maybe repeated.

        What garbage collection keeps.  This default loads every record;
        storages that can list the references in place (``Sql``) override it.
        """
        for record in self.query(QueryCall()):
            yield from record.values()

    def scan(self) -> Iterator[tuple[Digest, DigestedCall]]:
        """Every readable record with its key, in whatever order the storage reads fastest.

        What ``verify`` reads.  A record that cannot be read is left out
        (with the warning its load gives).  This default loads the records
        one by one, in the order of :meth:`list`; storages that read many at
        once (``Sql``, in table order) override it.
        """
        for key in self.list():
            try:
                yield key, self.load(key)
            except KeyError:
                continue

    def query_pages(self, template: QueryCall | Call) -> Iterator[RecordPage]:
        """What :meth:`query` yields, a page (of at most :data:`PAGE`) at a time, as columns.

        For listings that act on many records at once (a cache's listing, a
        table).  This default groups what ``query`` yields in pages of 1, 2,
        4, … records, so that reading only the first call reads one record;
        storages that read pages in place (``Sql``) override it.
        """
        records, size = iter(self.query(template)), 1  # type: ignore[attr-defined]
        while page := list(islice(records, size)):
            yield RecordPage.of(page)
            size = min(2 * size, PAGE)

    def newest_first(self) -> NewestFirst | None:
        """Windows of the records newest first, cut by the store itself; ``None`` here.

        A capability for browsing (``fleche ui``): a page deep into a
        million calls costs what the first does.  A SQLite store answers
        with a :class:`~fleche.storage.sql_newest.NewestFirst`; elsewhere a
        browser cuts its pages from :meth:`query`.
        """
        return None

    def split_since(self, since: float) -> SplitSince | None:
        """The records split at ``since`` (epoch seconds) by the store itself; ``None`` here.

        A capability for ``verify(since_last=True)``: a record created
        before ``since`` was checked whole by the verify that began then,
        so only the values it refers to are looked up again, all at once.
        ``Sql`` answers from its ``created`` column; elsewhere every record
        is read.
        """
        return None


class ValueBulkReads:
    """Many values loaded at once, derived from ``load``: mixed into :class:`~fleche.storage.base.ValueStorage`.

    A storage that reads many entries with one request overrides
    :meth:`load_many`; compositions that wrap a value storage get this
    default, which goes through their own ``load``.
    """

    def load_many(self, keys: Iterable[Digest]) -> dict[Digest, Any]:
        """The values stored under ``keys`` (full digests), each loaded once, by key.

        A key with no value (or an unreadable one, warned of as its
        ``load`` warns) is left out.  This default loads them one by one,
        in key order (files are then read directory by directory).
        """
        found: dict[Digest, Any] = {}
        for key in sorted(set(keys)):
            try:
                found[key] = self.load(key)  # type: ignore[attr-defined]
            except KeyError:
                continue
        return found

    def values_of(self, keys: Sequence[Digest | str], missing: Any = None) -> list[Any]:
        """The value under each of ``keys`` (full digests, or their text), in their order.

        ``missing`` stands where no value is stored (or it cannot be read,
        warned of as by ``load``).  What a table of calls reads its cells
        with; this default asks :meth:`load_many` for each key once.
        """
        found = self.load_many(set(keys))
        return list(map(found.get, keys, repeat(missing)))
