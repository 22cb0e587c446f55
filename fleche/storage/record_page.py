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
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import chain, compress, repeat
from operator import attrgetter
from typing import Any

from ..call_record import Call, DigestedCall, StoredCall
from ..digest import Digest

__all__ = ["RecordPage", "collector_paused", "unkeyed_sets"]

_new = str.__new__
_make = object.__new__
_NO_UNKEYED: frozenset[str] = frozenset()
_stored_key = StoredCall.stored_as.__set__  # type: ignore[attr-defined]
# The slots of a record, set directly: a record per row through its __init__
# costs more than the rest of its decoding.
_SETTERS = tuple(
    getattr(Call, field).__set__
    for field in (
        "name", "arguments", "metadata", "module", "version", "code", "result", "unkeyed",
        "created",
    )
)  # fmt: skip
_COLUMNS = ("names", "arguments", "metadata", "modules", "versions", "codes", "results",
            "unkeyed", "created")  # fmt: skip
_FIELDS = ("name", "arguments", "metadata", "module", "version", "code", "result", "unkeyed",
           "created")  # fmt: skip


@dataclasses.dataclass(slots=True)
class RecordPage:
    """The records of a page, a column per field (equal lengths).

    ``keys`` are the keys the records are stored under; ``arguments`` map
    names to digests (plain text or :class:`Digest`); ``codes`` and
    ``results`` are :class:`Digest` or ``None``; ``unkeyed`` are frozensets.
    """

    keys: Sequence[str]
    names: Sequence[str]
    modules: Sequence[str | None]
    versions: Sequence[str | None]
    codes: Sequence[Digest | None]
    results: Sequence[Digest | None]
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

    def select(self, keep: Sequence[bool]) -> RecordPage:
        """The page of the records whose ``keep`` is true."""
        columns = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return RecordPage(
            **{n: None if c is None else list(compress(c, keep)) for n, c in columns.items()}
        )

    @classmethod
    def of(cls, records: Sequence[DigestedCall]) -> RecordPage:
        """The page of records already built (each stored under its :meth:`~DigestedCall.key`)."""
        keys = [r.stored_as if type(r) is StoredCall else r.key() for r in records]
        columns = {
            c: list(map(attrgetter(f), records)) for c, f in zip(_COLUMNS, _FIELDS, strict=True)
        }
        return cls(keys=keys, built=list(records), **columns)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector paused (and then restored) while many objects are made.

    It would otherwise walk the ever larger heap of a long listing every few
    hundred objects, a third of its time; records and tables hold no cycles
    to find.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def unkeyed_sets(column: Sequence[Any]) -> Any:
    """The stored ``unkeyed`` column (comma-separated names) as frozensets."""
    if not any(column):
        return [_NO_UNKEYED] * len(column)
    return [frozenset(text.split(",")) if text else _NO_UNKEYED for text in column]


def _build(page: RecordPage) -> list[DigestedCall]:
    records = list(map(_make, repeat(StoredCall, len(page))))
    deque(map(_stored_key, records, page.keys), 0)
    digests = iter(map(_new, repeat(Digest), chain.from_iterable(map(dict.values, page.arguments))))
    for setter, name in zip(_SETTERS, _COLUMNS, strict=True):
        column = getattr(page, name)
        if name == "arguments":  # the digests zipped back with their names, row by row
            column = map(dict, map(zip, column, repeat(digests)))
        deque(map(setter, records, column), 0)
    return records
