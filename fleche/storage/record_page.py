"""A page of stored call records as columns, the records themselves built only when asked for.

A listing of many calls reads them a page at a time.  Kept as columns (the
keys, the names, the argument mappings…), a page can be filtered and
turned into a table without a record object per call; :meth:`RecordPage.records`
builds the records a column at a time when something needs them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import marshal
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import compress, repeat
from operator import attrgetter
from typing import Any

from ..call_record import Call, DigestedCall
from ..digest import Digest

__all__ = [
    "Packed",
    "RecordPage",
    "Repeated",
    "StoredCall",
    "as_digests",
    "collector_paused",
    "owned",
    "packed",
    "unkeyed_sets",
]

_new = str.__new__
_make = object.__new__
_NO_UNKEYED: frozenset[str] = frozenset()
# StoredCall's digests are kept in these slots as the store's text (see there).
_ARGUMENTS, _RESULT = Call.__dict__["arguments"], Call.__dict__["result"]


def _stored_arguments(record: StoredCall) -> Mapping[str, Digest]:
    try:
        return _ARGUMENTS.__get__(record)
    except AttributeError:  # made on first read from the text in ``given``
        made = {name: _new(Digest, text) for name, text in record.given.items()}
        _ARGUMENTS.__set__(record, made)
        return made


def _stored_result(record: StoredCall) -> Digest | None:
    text = _RESULT.__get__(record)
    return None if text is None else _new(Digest, text)


class StoredCall(DigestedCall):
    """A record read from a store in bulk, with the key it is stored under (:attr:`stored_key`).

    Its digests are kept as the store's text (``stored_as`` the key,
    ``given`` the argument digests, the result's in its field) and made
    :class:`Digest` when read: a ``str`` is no work for the cycle collector,
    a :class:`Digest` is, and a listing builds many records it never reads.

    Its :meth:`key` is still digested from the record (which is how
    ``verify`` finds a record filed under another key); a :class:`~fleche.call.LazyCall`
    of it answers :meth:`~fleche.call.LazyCall.key` with the stored key, without
    digesting (a third of the time of a large ``.table()``).
    """

    __slots__ = ("stored_as", "given")

    stored_as: str
    given: Mapping[str, str]

    arguments = property(_stored_arguments, _ARGUMENTS.__set__)  # type: ignore[assignment]
    result = property(_stored_result, _RESULT.__set__)  # type: ignore[assignment]

    @property
    def stored_key(self) -> Digest:
        """The key this record was read from."""
        return _new(Digest, self.stored_as)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (and copied) as the DigestedCall it is, made by its constructor: where it
        # lands no store is read, and the remote protocol lets only records' classes through.
        return DigestedCall, (
            self.name, self.arguments, self.result, self.metadata, self.module, self.version,
            self.code, self.unkeyed, self.created,
        )  # fmt: skip

    def replace(self, **changes: Any) -> DigestedCall:
        """A plain :class:`DigestedCall` with some fields changed: it is filed under no key yet."""
        plain, fields = self.__reduce__()
        return plain(*fields).replace(**changes)


# The slots of a record, set directly (a record per row through its __init__
# costs more than the rest of its decoding); the digests as the text they are
# given in (a StoredCall makes them Digest when read).
_SETTERS = tuple(
    vars(owner)[field].__set__
    for owner, field in (
        (StoredCall, "stored_as"), (Call, "name"), (StoredCall, "given"), (Call, "metadata"),
        (Call, "module"), (Call, "version"), (Call, "code"), (Call, "result"), (Call, "unkeyed"),
        (Call, "created"),
    )
)  # fmt: skip
_COLUMNS = ("keys", "names", "arguments", "metadata", "modules", "versions", "codes", "results",
            "unkeyed", "created")  # fmt: skip
_ALL_COLUMNS = attrgetter(*_COLUMNS)
_FIELDS = ("name", "arguments", "metadata", "module", "version", "code", "result", "unkeyed",
           "created")  # fmt: skip


@dataclasses.dataclass(slots=True)
class RecordPage:
    """The records of a page, a column per field (equal lengths).

    ``keys`` are the keys the records are stored under; ``arguments`` map
    names to digests; ``codes`` and ``results`` are digests or ``None``;
    ``unkeyed`` are frozensets.  Digests are as the store gave them, text
    or :class:`Digest` (see :func:`as_digests`); the records read them as
    :class:`Digest`.
    """

    keys: Sequence[str]
    names: Sequence[str]
    modules: Sequence[str | None]
    versions: Sequence[str | None]
    codes: Sequence[str | None]
    results: Sequence[str | None]
    arguments: Sequence[dict[str, str]]
    metadata: Sequence[dict[str, Any]]
    unkeyed: Sequence[frozenset[str]]
    created: Sequence[float]
    built: list[DigestedCall] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def records(self) -> list[DigestedCall]:
        """The records, built once (each field set on every record by one ``map``)."""
        if self.built is None:
            self.built = _build(self)
        return self.built

    def record(self, row: int) -> DigestedCall:
        """The record of one row (built alone, unless the page's records are built)."""
        if self.built is not None:
            return self.built[row]
        record = _make(StoredCall)
        for setter, column in zip(_SETTERS, self._columns(), strict=True):
            setter(record, column[row])
        return record

    def _columns(self) -> tuple[Sequence[Any], ...]:
        """The columns, in the order of :data:`_SETTERS` (a :class:`Packed` one unpacked for good,
        a :class:`Repeated` one made a document per row)."""
        metadata = self.metadata
        if type(metadata) is Packed:
            self.metadata = metadata.unpacked()
        elif type(metadata) is Repeated:
            self.metadata = metadata.owned()
        return _ALL_COLUMNS(self)

    def select(self, keep: Sequence[bool]) -> RecordPage:
        """The page of the records whose ``keep`` is true."""
        columns = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return RecordPage(**{n: _selected(c, keep) for n, c in columns.items()})

    @classmethod
    def of(cls, records: Sequence[DigestedCall]) -> RecordPage:
        """The page of records already built (each stored under its :meth:`~DigestedCall.key`)."""
        keys = [r.stored_as or r.key() for r in records]
        columns = {
            c: list(map(attrgetter(f), records)) for c, f in zip(_COLUMNS[1:], _FIELDS, strict=True)
        }
        return cls(keys=keys, built=list(records), **columns)


@contextlib.contextmanager
def collector_paused(aged: bool = False) -> Iterator[None]:
    """The cycle collector paused (and then restored) while many objects are made.

    It would otherwise walk the ever larger heap of a long listing every few
    hundred objects, a third of its time; records and tables hold no cycles
    to find.  Restored, it would walk every object made meanwhile at once,
    as young: with ``aged`` (one large result, a table: 3-5% of its time at
    a million calls) the young objects are moved to the oldest generation
    instead, unwalked (``gc.freeze`` then ``gc.unfreeze``: a full collection
    still walks them), unless the process keeps objects frozen itself.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            if aged and not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class Packed(Sequence[Any]):
    """A column of plain data (dicts, lists, text, numbers) kept as one ``marshal`` string until read.

    A listing keeps the page of each call it lists until the call's record
    is built, and most never are.  The cycle collector walks every object
    that may hold others again and again while a listing grows (a third of
    the time of a list of a million calls): a page's metadata as dicts is
    one more such object per call, as one string it is none (a list of a
    million calls takes a sixth less).  Unpacked whole on first read, by
    the first record built from the page.
    """

    __slots__ = ("data", "rows", "size")

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size
        self.rows: list[Any] | None = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> Any:
        return self.unpacked()[index]

    def unpacked(self) -> list[Any]:
        """The column itself, unpacked on the first call."""
        rows = self.rows
        if rows is None:
            with collector_paused():  # a page of new objects, as when the page was read
                rows = self.rows = marshal.loads(self.data)
        return rows


class Repeated(list[Any]):
    """A column of JSON documents (metadata) in which the rows of one text share one decoded document.

    The metadata of a page is often one document on every row (the same
    tags, or none): decoded once per distinct text, it costs no parse, no
    dict and no string per row, and a table makes its columns without a
    step per row.  What only reads it (a table, the expiry of a listing)
    reads it as it is; a record gets a document of its own, as a decode per
    row gives it (:meth:`owned`), since its metadata may be changed.
    """

    __slots__ = ("texts", "distinct")

    def __init__(self, rows: Iterable[Any], texts: Sequence[str], distinct: list[Any]) -> None:
        super().__init__(rows)
        #: Each row's text; the documents decoded, one per distinct text.
        self.texts, self.distinct = texts, distinct

    def owned(self) -> list[Any]:
        """A document per row, none shared (one parse; each text was checked as one document)."""
        return json.loads("[" + ",".join(self.texts) + "]")  # type: ignore[no-any-return]

    def select(self, keep: Sequence[bool]) -> Repeated:
        """The rows whose ``keep`` is true."""
        rows = list(compress(self, keep))
        return Repeated(rows, list(compress(self.texts, keep)), self.distinct)


def owned(column: Sequence[Any]) -> Sequence[Any]:
    """``column`` with a document of its own on every row (see :class:`Repeated`)."""
    return column.owned() if type(column) is Repeated else column


def _selected(column: Sequence[Any] | None, keep: Sequence[bool]) -> Any:
    if column is None:
        return None
    if type(column) is Repeated:
        return column.select(keep)
    return list(compress(column, keep))


def packed(column: Sequence[Any]) -> Sequence[Any]:
    """``column`` as a :class:`Packed` one; as it is if ``marshal`` cannot hold it (typed metadata)."""
    try:
        return Packed(marshal.dumps(column), len(column))
    except ValueError:
        return column


def as_digests(column: Sequence[str | None]) -> list[Digest | None]:
    """A column of digest text (or ``None``) as :class:`Digest`, the text taken as it is."""
    if None in column:
        return [None if t is None else _new(Digest, t) for t in column]
    return list(map(_new, repeat(Digest), column))


def unkeyed_sets(column: Sequence[Any]) -> Any:
    """The stored ``unkeyed`` column (comma-separated names) as frozensets."""
    if not any(column):
        return [_NO_UNKEYED] * len(column)
    return [frozenset(text.split(",")) if text else _NO_UNKEYED for text in column]


def _build(page: RecordPage) -> list[DigestedCall]:
    records = list(map(_make, repeat(StoredCall, len(page))))
    for setter, column in zip(_SETTERS, page._columns(), strict=True):
        deque(map(setter, records, column), 0)
    return records
