"""The table of a query: one row per call, built a column at a time.

Each value is loaded once however many rows show it, ``created`` is
converted in one go, and where the calls come as pages of columns
(:class:`~fleche.storage.record_page.RecordPage`), a page whose calls
share their argument names and metadata entries becomes columns without
a record object or a Python step per call: a row at a time, pandas and the
records cost more than the store does.  The values shown are then read
once the table holds their digests, all in one request to the value
storage (``values_of``), which gives each cell's value in order; the
digests of a page's values are kept as the text the store gave until then
(a :class:`~fleche.digest.Digest` made per value and dropped costs 3% of
a table, benchmarks/bench_scale.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress, repeat
from operator import is_, itemgetter, methodcaller
from typing import TYPE_CHECKING, Any

from .call import LazyCall
from .digest import Digest
from .storage.record_page import Repeated, as_digests, collector_paused, owned

if TYPE_CHECKING:
    import pandas

__all__ = ["frame", "page_frame"]

#: What a row without some column shows there (as a frame built from rows would).
_MISSING = float("nan")
#: What names a value in a column of values being loaded: a digest, or its text (a page's).
_KEYS = frozenset({Digest, str})
#: What a value storage gives for a cell whose value it has not.
_LOST: Any = object()
_new = str.__new__
_FIRST = ("key", "function")
_values = methodcaller("values")
_DICTS = frozenset({dict})
#: Entries a table's cells may share (a container each row has its own of).
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Columns:
    """Columns being filled; one first seen at row ``n`` starts with ``n`` missing entries."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {"key": [], "function": []}
        self.created: list[float] = []

    def add(self, block: dict[str, Sequence[Any]], created: Sequence[float]) -> None:
        """Rows whose column ``name`` holds ``block[name]`` (each as long as ``created``)."""
        n = len(self.created)
        for name, values in block.items():
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = [_MISSING] * n
            elif len(column) < n:
                column.extend([_MISSING] * (n - len(column)))
            column.extend(values)
        self.created.extend(created)

    def add_row(self, key: Any, function: str, row: dict[str, Any], created: float) -> None:
        """One row: its key, function, then its other columns in ``row``."""
        self.columns["key"].append(key)
        self.columns["function"].append(function)
        self.add({name: (value,) for name, value in row.items()}, (created,))

    def frame(self) -> pandas.DataFrame:
        import pandas

        rows = len(self.created)
        if not rows:
            return pandas.DataFrame()
        table = self.columns
        for column in table.values():  # padded in place: no copy of a million-row column
            column.extend(repeat(_MISSING, rows - len(column)))
        created = pandas.to_datetime(pandas.Series(self.created), unit="s")
        out: dict[str, Any] = {}
        for name, values in table.items():  # created after result, where a row-built frame had it
            out[name] = values
            if name == "result":
                out["created"] = created
        if "created" not in out:
            out["created"] = created
        return pandas.DataFrame(out)


def frame(
    calls: Iterable[LazyCall], shown: Callable[[str], bool], shrink: Callable[[Any], Any] | None
) -> pandas.DataFrame:
    """The table of ``calls``; ``shown(name)`` says which arguments (and ``"result"``)
    show their value, not their digest; ``shrink`` shortens the digests shown."""
    short = functools.cache(shrink) if shrink else _same
    load_result = shown("result")
    table = _Columns()
    loaded: dict[Digest, Any] = {}
    for call in calls:
        record = call.digested_call
        row: dict[str, Any] = {}
        for name, key in record.arguments.items():
            row[name] = _value(loaded, call, name, key) if shown(name) else short(key)
        row["result"] = (
            _value(loaded, call, None, record.result) if load_result else short(record.result)
        )
        for namespace, entries in record.metadata.items():
            for name, value in entries.items():
                row[f"{namespace}.{name}"] = value
        table.add_row(short(call.key()), record.qualified_name, row, record.created)
    return table.frame()


def page_frame(
    pages: Iterable[Any],
    shrink: Callable[[Any], Any] | None,
    shown: Callable[[str], bool] | None = None,
    values_of: Callable[[Sequence[Any], Any], list[Any]] | None = None,
) -> pandas.DataFrame:
    """The table of the calls of ``pages`` (record pages), as :func:`frame` makes it.

    The values shown are read by ``values_of`` (a value storage's
    :meth:`~fleche.storage.bulk_reads.ValueBulkReads.values_of`) once the
    table is filled with digests, all in one request: a store that keeps
    small values in its database reads them by one scan, or a chunk of
    keys per statement.
    """
    short = functools.cache(shrink) if shrink else _same
    table = _Columns()
    with collector_paused(aged=True):
        loading = _fill(table, pages, short, shrink is not None, shown or _nothing)
        if loading and values_of is not None:
            _load_columns(table, loading, values_of)
        return table.frame()


def _fill(
    table: _Columns,
    pages: Iterable[Any],
    short: Callable[[Any], Any],
    shrink: bool,
    shown: Callable[[str], bool],
) -> set[str]:
    """The pages' rows added to ``table``; returns the names of the columns whose values are shown."""
    loading: set[str] = set()
    for page in pages:
        shaped = _block(page)
        if shaped is None:  # calls of other shapes in one page: a row at a time
            for key, record in zip(page.keys, page.records(), strict=True):
                row = {n: d if shown(n) else short(d) for n, d in record.arguments.items()}
                row["result"] = record.result if shown("result") else short(record.result)
                loading.update(n for n in row if shown(n))
                for namespace, entries in record.metadata.items():
                    for name, value in entries.items():
                        row[f"{namespace}.{name}"] = value
                table.add_row(short(_new(Digest, key)), record.qualified_name, row, record.created)
            continue
        block, digests = shaped
        block = {"key": list(map(_new, repeat(Digest), page.keys)),
                 "function": _functions(page.modules, page.names), **block}  # fmt: skip
        values = {n for n in digests if shown(n)}
        loading |= values
        for name in digests - values:  # shown as digests (those loaded stay text: no Digest made)
            block[name] = as_digests(block[name])
        if shrink:
            digests = (digests - values) | {"key"}
            block = {n: list(map(short, v)) if n in digests else v for n, v in block.items()}
        table.add(block, page.created)
    return loading


def _load_columns(
    table: _Columns, names: set[str], values_of: Callable[[Sequence[Any], Any], list[Any]]
) -> None:
    """The digests in the columns ``names`` replaced by their values, all read in one request.

    An argument whose value is not stored shows its digest (as a
    :class:`~fleche.call.LazyCall`'s arguments do); a result must be there.
    """
    columns = {n: table.columns[n] for n in names}
    keyed = {n: _keyed(c) for n, c in columns.items()}
    cells: list[Any] = []
    for name, column in columns.items():
        cells += column if keyed[name] is None else compress(column, keyed[name])
    values = values_of(cells, _LOST)  # full digests, as text (what the store gave) or Digest
    start = 0
    for name, column in columns.items():
        mask = keyed[name]
        end = start + (len(column) if mask is None else sum(mask))
        shown = values[start:end]
        lost = list(compress(range(len(shown)), map(is_, shown, repeat(_LOST))))
        if lost and name == "result":
            raise KeyError(_new(Digest, cells[start + lost[0]]))
        for n in lost:  # an argument not stored shows its digest
            shown[n] = _new(Digest, cells[start + n])
        if mask is not None:  # rows without the column keep what they show
            rest = iter(shown)
            shown = [next(rest) if k else c for c, k in zip(column, mask, strict=True)]
        table.columns[name] = shown
        start = end


def _keyed(column: list[Any]) -> list[bool] | None:
    """Which cells of ``column`` name a value (a digest or its text); ``None`` if all do (in C)."""
    if _KEYS.issuperset(map(type, column)):
        return None
    return list(map(_KEYS.__contains__, map(type, column)))


def _functions(modules: Sequence[Any], names: Sequence[str]) -> list[str]:
    """The ``function`` column: ``module.name`` of each row (one string where a page has one function)."""
    if names and modules.count(modules[0]) == len(modules) and names.count(names[0]) == len(names):
        return [f"{modules[0]}.{names[0]}"] * len(names)
    return list(map("{}.{}".format, modules, names))


def _block(page: Any) -> tuple[dict[str, list[Any]], set[str]] | None:
    """The columns of a page whose calls all have the same argument names and metadata entries.

    With the names of the columns that show digests; ``None`` for a page of
    calls of several shapes (or one whose names clash with ``key`` or ``function``).
    """
    if not len(page):
        return {}, set()
    arguments = page.arguments
    shapes = set(map(tuple, arguments))
    if len(shapes) != 1:
        return None
    (names,) = shapes
    block: dict[str, list[Any]] = {}
    if names:
        for name, column in zip(names, zip(*map(_values, arguments), strict=True), strict=True):
            block[name] = list(column)
    block["result"] = list(page.results)
    digests = set(block)
    metadata = _metadata_columns(page.metadata)
    if metadata is None:
        return None
    for name, column in metadata.items():
        block[name] = column
        digests.discard(name)
    if _FIRST[0] in block or _FIRST[1] in block:
        return None
    return block, digests


def _metadata_columns(metadata: Sequence[Any]) -> dict[str, list[Any]] | None:
    """``namespace.name`` columns of metadata mappings of one shape; ``None`` if shapes differ.

    A page's rows that share one document (:class:`~fleche.storage.record_page.Repeated`)
    share its entries too, if none is a container (which each row must have its own of).
    """
    if type(metadata) is Repeated:
        if not all(map(_flat, metadata.distinct)):
            metadata = owned(metadata)
        elif len(metadata.distinct) == 1:
            rows, (document,) = len(metadata), metadata.distinct
            return {
                f"{namespace}.{name}": [value] * rows
                for namespace, entries in document.items()
                for name, value in entries.items()
            }
    namespaces = set(map(tuple, metadata))
    if len(namespaces) != 1:
        return None
    columns: dict[str, list[Any]] = {}
    for namespace in next(iter(namespaces)):
        entries = list(map(itemgetter(namespace), metadata))
        shapes = set(map(tuple, entries))
        if len(shapes) != 1:
            return None
        for name in next(iter(shapes)):
            columns[f"{namespace}.{name}"] = list(map(itemgetter(name), entries))
    return columns


def _flat(document: dict[str, Any]) -> bool:
    """Whether a metadata document maps namespaces to mappings of scalars (no container to share)."""
    entries = document.values()
    if not _DICTS.issuperset(map(type, entries)):
        return False
    return _SCALARS.issuperset(map(type, chain.from_iterable(map(_values, entries))))


def _same(value: Any) -> Any:
    return value


def _nothing(name: str) -> bool:
    return False


def _value(loaded: dict[Digest, Any], call: LazyCall, name: str | None, key: Digest) -> Any:
    """The value of an argument (``name``) or the result, loaded once per table."""
    try:
        return loaded[key]
    except KeyError:
        value = loaded[key] = call.result if name is None else call.arguments[name]
        return value
