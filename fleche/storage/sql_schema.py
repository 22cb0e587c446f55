"""The SQL layout of a call store: tables, schema version, and rows <-> records.

One row of ``calls`` holds a whole :class:`~fleche.call.DigestedCall`, so a
load is a single primary-key lookup; ``arguments`` repeats the argument
digests one row each, as the index that argument templates are answered
from.  Metadata is a JSON document (JSONB on PostgreSQL) so that simple
entries can be matched in SQL; the few metadata values JSON cannot carry
exactly (tuples, non-finite floats, numpy scalars…) are pickled apart in
``meta_extra``, which queries treat as "maybe" and check in Python.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Column,
    Double,
    ForeignKey,
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
from sqlalchemy.engine import Connection, Dialect

from ..call import DigestedCall
from ..digest import Digest
from ..errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "Statements",
    "arguments",
    "calls",
    "check_schema",
    "decode_row",
    "encode_record",
    "plain_key",
    "ROW_COLUMNS",
    "schema",
    "tables",
    "text_ok",
]

#: Keys per page when all keys are listed, and when a prefix range is read.
PAGE = 1000
PREFIX_PAGE = 32

#: Version of this layout; bump it (and add a migration) when the tables change.
SCHEMA_VERSION = 1

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
    Column("meta_extra", LargeBinary),
    Index("ix_calls_function", "name", "module"),
    Index("ix_calls_result", "result"),
)

arguments = Table(
    "arguments",
    tables,
    Column("call_key", _KEY, ForeignKey("calls.key", ondelete="CASCADE"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", _KEY, nullable=False),
    Index("ix_arguments_value", "name", "value"),
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


# On SQLite the argument index is kept by the database itself, from the JSON
# ``arguments`` column, so that a save is one statement, atomic by itself
# (PostgreSQL gets the same from one statement of data-modifying CTEs).
# Created if missing whenever a store is opened: stores made before have none.
_FILL_ARGUMENTS = (
    "INSERT INTO arguments (call_key, name, value) "
    "SELECT new.key, given.key, given.value FROM json_each(new.arguments) AS given; END"
)
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS fleche_arguments_inserted AFTER INSERT ON calls BEGIN "
    + _FILL_ARGUMENTS,
    "CREATE TRIGGER IF NOT EXISTS fleche_arguments_updated AFTER UPDATE OF arguments ON calls "
    "WHEN old.arguments IS NOT new.arguments BEGIN "
    "DELETE FROM arguments WHERE call_key = old.key; " + _FILL_ARGUMENTS,
)


def check_schema(connection: Connection, where: str) -> None:
    """Create missing tables (and triggers), record the layout version, refuse newer layouts.

    ``where`` names the store in the error message.
    """
    tables.create_all(connection, checkfirst=True)
    if connection.dialect.name == "sqlite":
        for trigger in _SQLITE_TRIGGERS:
            connection.exec_driver_sql(trigger)
    found = connection.execute(
        select(schema.c.version).where(schema.c.component == "calls")
    ).scalar()
    if found is None:
        connection.execute(schema.insert().values(component="calls", version=SCHEMA_VERSION))
    elif found > SCHEMA_VERSION:
        raise ConfigError(
            f"the call store at {where} has schema version {found}, but this fleche only knows "
            f"versions up to {SCHEMA_VERSION}; upgrade fleche to open it"
        )
    elif found < SCHEMA_VERSION:  # pragma: no cover - no older layout exists yet
        raise ConfigError(
            f"the call store at {where} has schema version {found}, which cannot be migrated"
        )


class Statements:
    """The hot-path statements compiled once for one dialect, as DB-API SQL text.

    Executed on a raw DB-API cursor with a dict of parameters: compiling
    and processing rows through SQLAlchemy costs more than the SQLite call
    itself (benchmarks/bench_sql.py).
    """

    def __init__(self, dialect: Dialect) -> None:
        self.postgres = dialect.name == "postgresql"
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
        self.save = _postgres_save(text(upsert)) if self.postgres else text(upsert)
        self.load = text(select(*ROW_COLUMNS).where(calls.c.key == key))
        # The hit path: the result and one metadata namespace, as JSON text or NULL.
        self.result_of = text(
            select(calls.c.result, calls.c.meta[bindparam("namespace", type_=String)]).where(
                calls.c.key == key
            )
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

    def namespace(self, name: str) -> str:
        """The ``namespace`` parameter of :attr:`result_of`: a key, or a JSON path on SQLite."""
        return name if self.postgres else '$."' + name.replace('"', '\\"') + '"'


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
    calls.c.meta_extra,
)

# -- records <-> rows -------------------------------------------------------------

_NO_UNKEYED: frozenset[str] = frozenset()
# UTF-8 as is (not \u escapes), so SQLite's JSON paths see the names as written.
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def plain_key(name: str) -> bool:
    """Whether a metadata name is written verbatim in stored JSON (so a JSON path finds it)."""
    return '"' not in name and "\\" not in name and not any(c < " " for c in name)


def text_ok(text: str) -> bool:
    # PostgreSQL's JSONB refuses NUL characters and lone surrogates.
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_exact(value: Any) -> bool:
    """Whether ``value`` comes back from JSON (and JSONB) equal and of the same types."""
    kind = type(value)
    if kind is str:
        return text_ok(value)
    if value is None or kind is bool or kind is int:
        return True
    if kind is float:
        # JSONB re-renders 1e+16 as 10000000000000000, which would load as an int.
        return (
            math.isfinite(value)
            and abs(value) < 1e16
            and not (value == 0 and math.copysign(1.0, value) < 0)
        )
    if kind is list:
        return all(_json_exact(v) for v in value)
    if kind is dict:
        return all(type(k) is str and text_ok(k) and _json_exact(v) for k, v in value.items())
    return False


def split_metadata(
    metadata: Mapping[Any, Any],
) -> tuple[dict[str, dict[str, Any]], dict[Any, Any] | None]:
    """Metadata as a JSON document plus what JSON cannot carry exactly.

    A namespace that is not a mapping under a text name goes to the extra
    part whole; otherwise its inexact entries go there one by one and the
    namespace stays in the document (so its presence can be queried).
    """
    document: dict[str, dict[str, Any]] = {}
    extra: dict[Any, Any] = {}
    for namespace, entries in metadata.items():
        if type(namespace) is not str or not text_ok(namespace) or not isinstance(entries, Mapping):
            extra[namespace] = entries
            continue
        exact: dict[str, Any] = {}
        for name, value in entries.items():
            if type(name) is str and text_ok(name) and _json_exact(value):
                exact[name] = value
            else:
                extra.setdefault(namespace, {})[name] = value
        document[namespace] = exact
    return document, extra or None


def join_metadata(document: dict[str, Any], extra: dict[Any, Any] | None) -> dict[Any, Any]:
    """The inverse of :func:`split_metadata`."""
    if extra:
        for namespace, entries in extra.items():
            if namespace in document:
                document[namespace].update(entries)
            else:
                document[namespace] = entries
    return document


def encode_record(record: DigestedCall, key: str) -> dict[str, Any]:
    """The ``calls`` row of a record, as DB-API parameters."""
    document, extra = split_metadata(record.metadata)
    return {
        "key": key,
        "name": record.name,
        "module": record.module,
        "version": record.version,
        "code": None if record.code is None else str(record.code),
        "unkeyed": ",".join(sorted(record.unkeyed)),
        "created": record.created,
        "result": None if record.result is None else str(record.result),
        "arguments": _to_json({name: str(value) for name, value in record.arguments.items()}),
        "meta": _to_json(document),
        "meta_extra": None
        if extra is None
        else pickle.dumps(extra, protocol=pickle.HIGHEST_PROTOCOL),
    }


def decode_row(row: tuple[Any, ...]) -> DigestedCall:
    """The record a ``calls`` row (selected as :data:`ROW_COLUMNS`) holds.

    Raises ``ValueError`` (or an unpickling error) for a damaged row.
    """
    name, module, version, code, unkeyed, created, result, args, meta, extra = row
    if type(meta) is not dict:  # SQLite hands back text; psycopg and SQLAlchemy decode it
        meta = json.loads(meta)
    if extra is not None:
        meta = join_metadata(meta, pickle.loads(extra))
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
