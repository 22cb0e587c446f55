"""The SQL layout of a call store: tables, schema version, and rows <-> records.

One row of ``calls`` holds a whole :class:`~fleche.call.DigestedCall`, so a
load is a single primary-key lookup; ``arguments`` repeats the argument
digests one row each, as the index that argument templates are answered
from.  Metadata is a JSON document (JSONB on PostgreSQL) so that simple
entries can be matched in SQL; the few metadata values JSON cannot carry
exactly (tuples, non-finite floats, numpy scalars…) are kept apart in
``meta_typed`` as typed JSON (:mod:`.sql_metadata`), which queries treat
as "maybe" and check in Python.  Nothing in a row is ever unpickled.
"""

from __future__ import annotations

import functools
import json
import numbers
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Column,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    event,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from ..call import DigestedCall
from ..digest import Digest
from ..errors import SaveError
from ..expiry import EXPIRY
from .sql_metadata import join_metadata, metadata_columns, plain_chunks, text_ok, to_json
from .sql_positional import PositionalSave
from .sql_seal import broken_seal, seal

__all__ = [
    "SCHEMA_VERSION",
    "Statements",
    "arguments",
    "calls",
    "decode_row",
    "encode_record",
    "expiry_column",
    "ix_calls_expires",
    "ROW_COLUMNS",
    "schema",
    "small_values",
    "tables",
]

#: Keys per page when all keys are listed, and when a prefix range is read.
PAGE = 1000
PREFIX_PAGE = 32

#: Version of this layout; bump it (and add a migration) when the tables change.
#: 2: metadata JSON cannot hold is typed JSON in ``meta_typed``, no longer a pickle in
#: ``meta_extra``; the SQLite triggers replace stale argument rows.
#: 3: every row carries a ``seal`` binding its result to its key (:mod:`.sql_seal`).
#: 4: ``expires`` copies the expiry out of the metadata, so live calls are counted from an index.
#: 5: ``arguments`` is keyed by ``(name, value, call_key)``: on SQLite one B-tree (no rowid, no
#: second index), so a miss writes two pages fewer; its rows follow ``calls`` by triggers.
#: Migrations: :mod:`.sql_migrations`.
SCHEMA_VERSION = 5

# Keys compare byte-wise on every server, so ``key >= p AND key < p || 'g'``
# is an index range scan whatever the database's default collation is.
_KEY = String(32).with_variant(String(32, collation="C"), "postgresql")
_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")

tables = MetaData()

schema = Table(
    "fleche_schema",
    tables,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)

calls = Table(
    "calls",
    tables,
    Column("key", _KEY, primary_key=True),
    Column("name", Text, nullable=False),
    Column("module", Text, nullable=False),
    Column("version", Text),
    Column("code", _KEY),
    Column("unkeyed", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("result", _KEY),
    Column("arguments", Text, nullable=False),  # JSON {name: digest}, read on load
    Column("meta", _JSON, nullable=False),
    Column("meta_typed", Text),  # typed JSON (.sql_metadata) of what ``meta`` cannot hold
    # Schema 1 pickled that part here.  Never unpickled when read: see legacy_metadata().
    Column("meta_extra", LargeBinary),
    Column("seal", String(16)),  # xxh3-64 of key and result (.sql_seal), checked on every read
    Column("expires", Double),  # when the call expires (epoch seconds), or NULL: expiry_column()
    Index("ix_calls_function", "name", "module"),
    Index("ix_calls_result", "result"),
)

# Partial: only calls that expire are in it, so that the live count (all calls
# less those expired, two index-only counts) reads a small index at any size;
# with the function's name and module, a function's live count too.
_EXPIRING = calls.c.expires.is_not(None)
ix_calls_expires = Index(
    "ix_calls_expires",
    calls.c.expires,
    calls.c.name,
    calls.c.module,
    sqlite_where=_EXPIRING,
    postgresql_where=_EXPIRING,
)

# The argument index: what argument templates are answered from, by ``(name, value)``,
# the matching calls in key order.  On SQLite it is one B-tree, kept by the triggers of
# :mod:`.sql_migrations` (a foreign key would scan it for every deleted call); PostgreSQL
# keeps it by its foreign key and a unique ``(call_key, name)`` index (its save's upsert).
arguments = Table(
    "arguments",
    tables,
    Column("name", Text, primary_key=True),
    Column("value", _KEY, primary_key=True),
    Column("call_key", _KEY, primary_key=True),
    ForeignKeyConstraint(["call_key"], ["calls.key"], ondelete="CASCADE").ddl_if(
        dialect="postgresql"
    ),
    Index("ix_arguments_call", "call_key", "name", unique=True).ddl_if(dialect="postgresql"),
    sqlite_with_rowid=False,
)

# Values whose encoded entry is small, kept in the call database beside the records
# (:mod:`.sql_values`): a miss then writes no value file.  ``data`` holds exactly
# the bytes of a pickle file; ``stored`` is when it was last written or found
# stored again, what garbage collection's grace period reads.
small_values = Table(
    "small_values",
    tables,
    Column("key", _KEY, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("stored", Double, nullable=False),
    sqlite_with_rowid=False,
)

# Containment queries (``meta @> '{"tags": {"project": "x"}}'``) use this on
# PostgreSQL; SQLite has no such index, its JSON filters run on the rows that
# the other conditions leave.
event.listen(
    calls,
    "after_create",
    DDL(
        "CREATE INDEX IF NOT EXISTS ix_calls_meta ON calls USING gin (meta jsonb_path_ops)"
    ).execute_if(dialect="postgresql"),
)


class Statements:
    """The hot-path statements compiled once for one dialect, as DB-API SQL text.

    Executed on a raw DB-API cursor with a dict of parameters: compiling
    and processing rows through SQLAlchemy costs more than the SQLite call
    itself (benchmarks/bench_sql.py).
    """

    def __init__(self, dialect: Dialect) -> None:
        self.postgres = dialect.name == "postgresql"
        #: The ``namespace`` parameter of :attr:`result_of`: a key, or a JSON path on SQLite
        #: (both C callables: the hit path runs no Python function for it).
        self.namespace: Callable[[str], str] = str if self.postgres else _json_path
        dialect_insert = postgresql.insert if self.postgres else sqlite.insert
        row = dialect_insert(calls)  # every column, each bound under its own name
        upsert = row.on_conflict_do_update(
            index_elements=[calls.c.key],
            set_={c.name: row.excluded[c.name] for c in calls.c if c.name != "key"},
        )
        key = bindparam("key")

        def text(statement: Any) -> str:
            return str(statement.compile(dialect=dialect))

        # Saving a record is one statement: the upsert (SQLite's triggers fill
        # the argument index), or on PostgreSQL the upsert and the argument rows.
        #: A row of :func:`encode_record` -> the statement's text and parameters.
        self.save: Callable[[dict[str, Any]], tuple[str, Any]]
        if self.postgres:
            self.save = functools.partial(_with_text, _postgres_save(text(upsert)))
        else:
            self.save = PositionalSave(upsert)
        self.load = text(select(*ROW_COLUMNS).where(calls.c.key == key))
        # The hit path: the result, one metadata namespace (JSON text or NULL),
        # the typed metadata (NULL unless some value JSON cannot hold) and the seal.
        self.result_of = text(
            select(
                calls.c.result,
                calls.c.meta[bindparam("namespace", type_=String)],
                calls.c.meta_typed,
                calls.c.seal,
            ).where(calls.c.key == key)
        )
        self.contains = text(select(calls.c.key).where(calls.c.key == key))
        self.evict = text(delete(calls).where(calls.c.key == key))
        by_key = select(calls.c.key).order_by(calls.c.key)
        self.page = text(by_key.where(calls.c.key > bindparam("after"))) + f" LIMIT {PAGE}"
        self.prefix = (
            text(
                by_key.where(
                    calls.c.key >= bindparam("low"),
                    calls.c.key > bindparam("after"),
                    calls.c.key < bindparam("high"),
                )
            )
            + f" LIMIT {PREFIX_PAGE}"
        )


def _with_text(text: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return text, row


@functools.cache
def _json_path(name: str) -> str:
    return '$."' + name.replace('"', '\\"') + '"'


def _postgres_save(upsert: str) -> str:
    # Data-modifying CTEs all run, in one statement: the call row, then its
    # arguments upserted and any other arguments of the key dropped.
    return (
        f"WITH saved AS ({upsert} RETURNING calls.key), "
        "dropped AS (DELETE FROM arguments WHERE call_key = %(key)s::VARCHAR "
        "AND NOT (name = ANY(%(names)s::text[]))) "
        "INSERT INTO arguments (call_key, name, value) "
        "SELECT saved.key, given.name, given.value "
        "FROM saved, unnest(%(names)s::text[], %(values)s::text[]) AS given(name, value) "
        "ON CONFLICT (call_key, name) DO UPDATE SET value = excluded.value"
    )


#: The columns a record is rebuilt from, in the order :func:`decode_row` expects.
ROW_COLUMNS = (
    calls.c.name,
    calls.c.module,
    calls.c.version,
    calls.c.code,
    calls.c.unkeyed,
    calls.c.created,
    calls.c.result,
    calls.c.arguments,
    calls.c.meta,
    calls.c.meta_typed,
    calls.c.seal,
)

# -- records <-> rows -------------------------------------------------------------

_NO_UNKEYED: frozenset[str] = frozenset()


def encode_record(record: DigestedCall, key: str) -> dict[str, Any]:
    """The ``calls`` row of a record, as DB-API parameters.

    Raises :class:`~fleche.errors.SaveError` for text no SQL server stores
    (NUL characters, lone surrogates) in the function's identity or an
    argument name, on SQLite too, so that every SQL store accepts the same records.
    """
    _check_text(record)
    metadata = record.metadata
    meta, typed = metadata_columns(metadata)
    digests = record.arguments
    if type(digests) is dict:  # a dict of digests is JSON as it is (a Digest is text)
        arguments = "".join(plain_chunks(digests, 0))
    else:
        arguments = to_json({name: str(value) for name, value in digests.items()})
    result = None if record.result is None else str(record.result)
    unkeyed = record.unkeyed
    return {
        "key": key,
        "name": record.name,
        "module": record.module,
        "version": record.version,
        "code": None if record.code is None else str(record.code),
        "unkeyed": ",".join(sorted(unkeyed)) if unkeyed else "",
        "created": record.created,
        "result": result,
        "arguments": arguments,
        "meta": meta,
        "meta_typed": typed,
        "meta_extra": None,  # a save replaces a schema-1 record whole
        "seal": seal(key, result),
        "expires": expiry_column(metadata) if EXPIRY in metadata else None,
    }


def expiry_column(metadata: Mapping[Any, Any]) -> float | None:
    """The ``expires`` column of a record: its expiry time as a float, if it is a number.

    A call is expired by ``now`` when ``expires <= now`` (:func:`fleche.expiry.is_expired`);
    anything Python compares so (numbers, booleans, numpy scalars) is stored as a float.
    """
    entry = metadata.get(EXPIRY)
    if entry is None:
        return None
    when = entry.get("expires") if isinstance(entry, Mapping) else None
    if not isinstance(when, numbers.Real | Decimal):
        return None
    try:
        return float(when)
    except (ValueError, OverflowError):  # a signalling NaN, an int beyond floats
        return None


def _check_text(record: DigestedCall) -> None:
    if _plain_identity(record.name, record.module, record.version, tuple(record.arguments)):
        return  # the usual case, answered from the cache below without a Python call
    for what, text in (
        ("function name", record.name),
        ("module", record.module),
        ("version", record.version),
        *(("argument name", name) for name in record.arguments),
    ):
        if text is not None and (type(text) is not str or not text_ok(text)):
            raise SaveError(
                f"the call's {what} {text!r} cannot be stored in SQL: it must be text without "
                "NUL characters or lone surrogates; rename it (or use a file store)"
            )


@functools.lru_cache(maxsize=4096)
def _plain_identity(name: Any, module: Any, version: Any, names: tuple[Any, ...]) -> bool:
    """Whether a function's identity and argument names are plain ASCII text (each function's once)."""
    texts = (name, module, *names) if version is None else (name, module, version, *names)
    return all(type(t) is str and t.isascii() and "\x00" not in t for t in texts)


def decode_row(key: str, row: tuple[Any, ...]) -> DigestedCall:
    """The record the ``calls`` row of ``key`` (selected as :data:`ROW_COLUMNS`) holds.

    Raises ``ValueError`` for a damaged row, one whose seal fails
    (:mod:`.sql_seal`) included.  A schema-1 row's pickled metadata is not
    read: the record comes back without those entries.
    """
    name, module, version, code, unkeyed, created, result, args, meta, typed, sealed = row
    if sealed != seal(key, result):
        raise broken_seal(result, sealed)
    if type(meta) is not dict:  # SQLite hands back text; psycopg and SQLAlchemy decode it
        meta = json.loads(meta)
    meta = join_metadata(meta, typed)
    return DigestedCall(
        name=name,
        module=module,
        arguments={n: Digest(d) for n, d in json.loads(args).items()},
        result=None if result is None else Digest(result),
        metadata=meta,
        version=version,
        code=None if code is None else Digest(code),
        unkeyed=frozenset(unkeyed.split(",")) if unkeyed else _NO_UNKEYED,
        created=created,
    )
