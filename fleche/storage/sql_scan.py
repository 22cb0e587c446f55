"""Reading many call records of a SQL store at once: pages of rows, counts, referenced values.

The read side of a store browsed, audited and cleaned at scale.  A
template without metadata entries has a *shape* (which identity fields
it names, how many arguments); the statement for a shape is built and
compiled once per dialect and then run as DB-API text with the
template's values as parameters, since building and compiling a
SQLAlchemy statement costs ten times what SQLite needs to answer it
(benchmarks/bench_scale.py).  Rows are read a page at a time (no
connection held between pages), in table order where the database has
one (SQLite's rowid: by key, every row would cost a lookup through the key
index), by key otherwise and for :meth:`Scanning.scan`, and decoded a
page at a time (:mod:`.sql_rows`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Text, bindparam, cast, false, func, literal_column, or_, select

from ..call import Call, DigestedCall, QueryCall
from ..call_record import UNSTORED
from ..call_template import unwrap
from ..digest import Digest
from .bulk_reads import PAGE, SplitSince
from .record_page import RecordPage
from .sql_metadata import text_ok
from .sql_newest import NewestFirst
from .sql_query import normalize_value
from .sql_rows import decode_page, is_hex
from .sql_schema import ROW_COLUMNS, arguments, calls
from .sql_seal import seals

__all__ = ["Scanning", "count", "referenced", "rows", "shaped"]

_new = str.__new__
_FIELDS = ("name", "module", "version", "code")
#: Compiled statement text by (dialect, kind, shape); templates come in few shapes.
_COMPILED: dict[tuple[Any, ...], str] = {}
_MAX_COMPILED = 512
#: Below every rowid SQLite gives.
_FIRST = -(2**63)
#: The kinds of statement read a page at a time: whole rows, and what a verify checks of a settled row.
_PAGED = ("rows", "settled")


def shaped(template: QueryCall) -> bool:
    """Whether SQL answers ``template`` (digested) exactly: no metadata, only text identity fields."""
    if template.metadata:
        return False
    return all(
        (want := getattr(template, f)) is None
        or unwrap(want) is None
        or isinstance(unwrap(want), str)
        for f in _FIELDS
    )


def _shape(template: QueryCall) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The shape of a :func:`shaped` template and the parameters its statement takes."""
    shape: list[Any] = []
    params: dict[str, Any] = {}
    for field in _FIELDS:
        want = getattr(template, field)
        if want is None:
            continue
        want = unwrap(want)
        if want is None or not text_ok(want):
            shape.append((field, "null" if want is None else "never"))
            continue
        shape.append((field, "equal"))
        params[f"want_{field}"] = str(want)
    if template.result is not None:
        shape.append(("result", "equal"))
        params["want_result"] = normalize_value(template.result)
    for n, (name, value) in enumerate((template.arguments or {}).items()):
        if type(name) is not str or not text_ok(name):
            shape.append(("arguments", "never"))  # no stored argument has such a name
            continue
        shape.append(("arguments", n))
        params[f"argument_name_{n}"] = name
        params[f"argument_value_{n}"] = normalize_value(value)
    return tuple(shape), params


def _column(field: str, kind: str, postgres: bool) -> Any:
    """A column of ``calls`` as a condition of a statement of ``kind`` names it.

    SQLite's planner would answer an expired count of one function from the
    function's index, reading every row of it for its expiry; written
    ``+calls.name`` the column is not indexed, and the count stays on the
    small partial index of the calls that expire (which holds the name).
    """
    if kind == "expired" and not postgres:
        return literal_column(f"+calls.{field}")
    return calls.c[field]


def _build(kind: str, shape: tuple[Any, ...], postgres: bool) -> Any:
    """The statement of one ``kind`` for a shape.

    ``rows`` and ``scan`` select ``position, key, *ROW_COLUMNS`` from the rows
    after the position ``after``, in table order and in key order; ``count``
    and ``expired`` count the rows, all or those expired by ``now``.
    """
    position = _position(kind, shape, postgres)
    if kind == "settled":
        statement = select(position, calls.c.key, calls.c.result, calls.c.seal, calls.c.arguments)
    elif position is not None:
        statement = select(position, calls.c.key, *ROW_COLUMNS)
    else:
        statement = select(func.count()).select_from(calls)
    for field, how in shape:
        if how == "never":
            statement = statement.where(false())
        elif field == "created":
            statement = statement.where(_split(how))
        elif field == "arguments":
            alias = arguments.alias(f"argument_{how}")
            statement = statement.join_from(
                calls,
                alias,
                (alias.c.call_key == calls.c.key)
                & (alias.c.name == bindparam(f"argument_name_{how}"))
                & (alias.c.value == bindparam(f"argument_value_{how}")),
            )
        elif how == "null":
            statement = statement.where(_column(field, kind, postgres).is_(None))
        else:
            statement = statement.where(
                _column(field, kind, postgres) == bindparam(f"want_{field}")
            )
    if kind == "expired":  # answered from the partial index of the calls that expire
        statement = statement.where(calls.c.expires <= bindparam("now"))
    if position is not None:
        statement = statement.where(position > bindparam("after")).order_by(position)
    return statement


def _position(kind: str, shape: tuple[Any, ...], postgres: bool) -> Any:
    """What rows of ``kind`` are paged by (``None`` for a count).

    On SQLite, rows in the order SQLite finds them (no sort; rows are not
    moved by a save): the rowid of the calls, or with an argument template
    the key of the first argument's index rows, which are in key order.
    """
    if kind in _PAGED and not postgres:
        first = _first_argument(shape)
        return literal_column("calls.rowid" if first is None else f"argument_{first}.call_key")
    return calls.c.key if kind in _PAGED else None


def _first_argument(shape: tuple[Any, ...]) -> int | None:
    """The first templated argument of a shape, whose index rows page the rows on SQLite."""
    return next((how for field, how in shape if field == "arguments" and how != "never"), None)


def _start(shape: tuple[Any, ...], postgres: bool) -> int | str:
    """The position before every row of a shape: below every rowid, or below every key."""
    return "" if postgres or _first_argument(shape) is not None else _FIRST


def _split(how: str) -> Any:
    """The records on one side of ``since``: created since (or keeping an argument unstored), or the others.

    A record that keeps an argument unstored (its metadata names it) is
    read whole wherever it falls: its references are not all values.
    """
    unstored = or_(
        cast(calls.c.meta, Text).like(bindparam("unstored")),
        func.coalesce(calls.c.meta_typed, literal_column("''")).like(bindparam("unstored")),
    )
    if how == "since":
        return or_(calls.c.created >= bindparam("since"), unstored)
    return (calls.c.created < bindparam("since")) & ~unstored


def _text(runtime: Any, kind: str, shape: tuple[Any, ...]) -> str:
    """The DB-API text of a statement, compiled once per dialect, kind and shape."""
    dialect = runtime.engine.dialect
    postgres = runtime.statements.postgres
    cached = (postgres, kind, shape)
    text = _COMPILED.get(cached)
    if text is None:
        if kind == "live":  # every call less the expired ones: two index-only counts
            count, expired = _text(runtime, "count", shape), _text(runtime, "expired", shape)
            text = f"SELECT ({count}) - ({expired})"
        else:
            text = str(_build(kind, shape, postgres).compile(dialect=dialect))
        if kind in _PAGED:
            text += " LIMIT " + ("%(page)s" if postgres else ":page")
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.clear()
        _COMPILED[cached] = text
    return text


def _pages(runtime: Any, kind: str, template: QueryCall) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a statement of ``kind`` for ``template``, a page (a list) at a time."""
    return _paged(runtime, kind, *_shape(template))


def _paged(
    runtime: Any, kind: str, shape: tuple[Any, ...], params: dict[str, Any]
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a statement of ``kind`` for a shape and its parameters, a page at a time."""
    text = _text(runtime, kind, shape)
    params["after"] = _start(shape, runtime.statements.postgres)
    params["page"] = size = PAGE
    while True:
        page = runtime.read(text, params)
        yield page
        if len(page) < size:
            return
        params["after"] = page[-1][0]


def rows(runtime: Any, template: QueryCall) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of the rows (``position, key, *ROW_COLUMNS``) a :func:`shaped` template matches, in table order."""
    return _pages(runtime, "rows", template)


def count(runtime: Any, template: QueryCall, now: float | None) -> int:
    """How many records a :func:`shaped` template matches (not expired by ``now``, if given).

    Counted by the database, the expired ones from the ``expires`` column
    (:func:`~fleche.storage.sql_schema.expiry_column`).  Damaged rows are
    counted too: ``verify`` finds them.
    """
    shape, params = _shape(template)
    if now is None:
        return runtime.read(_text(runtime, "count", shape), params)[0][0]
    params["now"] = now
    return runtime.read(_text(runtime, "live", shape), params)[0][0]


_REFERENCED = {
    False: "SELECT result FROM calls WHERE result IS NOT NULL "
    "UNION ALL SELECT given.value FROM calls, json_each(calls.arguments) AS given",
    True: "SELECT result FROM calls WHERE result IS NOT NULL "
    "UNION ALL SELECT given.value FROM calls, json_each_text(calls.arguments::json) AS given",
}


def referenced(runtime: Any) -> Iterator[str]:
    """The digest of every value some record refers to (results and arguments), each once.

    Read from each record's own argument document, not from the argument
    index, so rows of the index left behind keep nothing alive.  Repeats
    are dropped by a Python set: SQLite's ``UNION`` took eight times longer.
    """
    text = _REFERENCED[runtime.statements.postgres]
    found = {v for (v,) in runtime.read(text, {}) if type(v) is str and len(v) == 32}
    if not is_hex("".join(found)):  # checked at once, then one by one
        found = {v for v in found if is_hex(v)}
    return map(_new, itertools.repeat(Digest), found)


def _settled(page: list[tuple[Any, ...]], unread: list[str]) -> tuple[list[str], list[str]]:
    """The keys of the rows of a page whose seal and arguments read sound, and the digests they name.

    The keys of the others are added to ``unread``: read whole, what is wrong with them is reported.
    """
    if not page:
        return [], []
    _, keys, results, sealed, given = zip(*page, strict=True)
    ok = [own == found for own, found in zip(seals(keys, results), sealed, strict=True)]
    try:
        parsed = json.loads("[" + ",".join(given) + "]")
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or len(parsed) != len(keys) or set(map(type, parsed)) - {dict}:
        unread += keys
        return [], []
    kept = list(itertools.compress(keys, ok))
    references = [r for r in itertools.compress(results, ok) if r is not None]
    references += itertools.chain.from_iterable(map(dict.values, itertools.compress(parsed, ok)))
    if set(map(type, references)) - {str}:
        unread += keys
        return [], []
    if len(kept) < len(keys):
        unread += (key for key, good in zip(keys, ok, strict=True) if not good)
    return kept, references


class Scanning:
    """What :class:`~fleche.storage.sql.Sql` reads many records at once with (mixed in before ``CallStorage``).

    Counts and references come from the database; records a page at a
    time.  The store supplies ``_runtime()`` and ``_damaged(key, err)``.
    """

    def _scanned(self, template: QueryCall) -> Iterator[DigestedCall]:
        """The records a :func:`shaped` template matches, a page at a time."""
        for page in self._pages(template):
            yield from page.records()

    def query_pages(self, template: QueryCall | Call) -> Iterator[RecordPage]:
        """What :meth:`query` yields, a page (of at most :data:`PAGE`) at a time.

        For listings that act on many records at once (a cache's listing,
        a table), as columns: the records are built only if asked for.
        """
        digested = QueryCall.from_template(template).digested()
        # Read here only what the store's own query reads so (a subclass may answer otherwise).
        if shaped(digested) and type(self).query.__qualname__ == "Sql.query":  # type: ignore[attr-defined]
            yield from self._pages(digested)
            return
        yield from super().query_pages(digested)  # type: ignore[misc]

    def _pages(self, template: QueryCall) -> Iterator[RecordPage]:
        """The readable rows, a page at a time (damaged ones warned of)."""
        return self._decoded(rows(self._runtime(), template), [])

    def _decoded(
        self, pages: Iterator[list[tuple[Any, ...]]], unread: list[str]
    ) -> Iterator[RecordPage]:
        """The readable rows of ``pages`` of rows, a page at a time (damaged ones warned of, into ``unread``)."""
        for page in pages:
            decoded, damaged = decode_page(page)
            for key, err in damaged:
                unread.append(key)
                self._damaged(key, err)
            yield decoded

    def newest_first(self) -> NewestFirst | None:
        """Windows of the records newest first, cut by SQLite (:mod:`.sql_newest`); ``None`` on other databases."""
        engine = self._runtime().engine
        return NewestFirst(engine) if engine.dialect.name == "sqlite" else None

    def scan(self) -> Iterator[tuple[Digest, DigestedCall]]:
        """Every readable record with its key, in table order (no key lookup per row), a page at a time."""
        for page in self._pages(QueryCall()):
            yield from zip(
                map(_new, itertools.repeat(Digest), page.keys), page.records(), strict=True
            )

    def count(self, template: Any = None, *, now: float | None = None) -> int:
        """How many records match ``template`` (not expired by ``now``), counted by the database."""
        template = QueryCall.from_template(QueryCall() if template is None else template).digested()
        if not shaped(template):
            return super().count(template, now=now)  # type: ignore[misc]
        return count(self._runtime(), template, now)

    def referenced(self) -> Iterator[Digest]:
        """Every value digest the records refer to, listed by the database."""
        return referenced(self._runtime())

    def split_since(self, since: float) -> SplitSince:
        """The records created before ``since``, as references, and the pages of the others.

        The records of both sides are chosen by the database; a settled
        row is read as four columns, its seal checked, its arguments parsed
        with those of its page, and no record is made.
        """
        runtime = self._runtime()
        params = {"since": since, "unstored": f"%{UNSTORED}%"}
        changed = _paged(runtime, "rows", (("created", "since"),), dict(params))
        settled = _paged(runtime, "settled", (("created", "before"),), params)
        unread: list[str] = []
        pages = map(_settled, settled, itertools.repeat(unread))
        return SplitSince(pages, self._decoded(changed, unread), unread)
