"""Opening a SQL call store: tables and triggers made if missing, older layouts upgraded in place.

Every store records its layout version (:data:`~.sql_schema.SCHEMA_VERSION`)
in ``fleche_schema``; a store of an older layout is upgraded when first
opened, one step per version, and a store of a newer one is refused (an
older fleche must not write rows it does not know how to fill).
"""

from __future__ import annotations

import warnings

from sqlalchemy import bindparam, func, inspect, select, update
from sqlalchemy.engine import Connection

from ..errors import ConfigError, FlecheWarning
from .sql_schema import (
    PAGE,
    ROW_COLUMNS,
    SCHEMA_VERSION,
    calls,
    decode_row,
    expiry_column,
    ix_calls_expires,
    schema,
    tables,
)
from .sql_seal import seal

__all__ = ["check_schema"]

# On SQLite the argument index is kept by the database itself, from the JSON
# ``arguments`` column, so that a save is one statement, atomic by itself
# (PostgreSQL gets the same from one statement of data-modifying CTEs).
# Created if missing whenever a store is opened: stores made before have none.
# Rows of the key left behind by a ``calls`` row deleted by hand with foreign
# keys off would otherwise fail every later save: a new record replaces those
# of its argument names and drops the others only when there are any (a
# trigger of its own: its test costs a miss less than a DELETE); a changed one
# drops all of the key's rows first.
_FILL = (
    "INTO arguments (call_key, name, value) "
    "SELECT new.key, given.key, given.value FROM json_each(new.arguments) AS given; END"
)
_OTHERS = (
    "FROM arguments WHERE call_key = new.key "
    "AND name NOT IN (SELECT key FROM json_each(new.arguments))"
)
_TRIGGERS = ("fleche_arguments_filled", "fleche_arguments_updated", "fleche_arguments_pruned")
_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[0]} AFTER INSERT ON calls "
    "BEGIN INSERT OR REPLACE " + _FILL,
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[1]} AFTER UPDATE OF arguments ON calls "
    "WHEN old.arguments IS NOT new.arguments BEGIN "
    "DELETE FROM arguments WHERE call_key = new.key; INSERT " + _FILL,
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[2]} AFTER INSERT ON calls "
    f"WHEN EXISTS (SELECT 1 {_OTHERS}) BEGIN DELETE {_OTHERS}; END",
)
#: The insert trigger of stores made before ``fleche_arguments_filled`` (a DELETE, then
#: an INSERT), dropped once that one exists: never a moment without one of them, and the
#: two together fill the same rows (an older fleche may make it again).
_RETIRED = "fleche_arguments_inserted"


def check_schema(connection: Connection, where: str) -> None:
    """Create missing tables (and triggers), record the layout version, refuse newer layouts.

    ``where`` names the store in the error message.
    """
    tables.create_all(connection, checkfirst=True)
    if connection.dialect.name == "sqlite":
        for trigger in _SQLITE_TRIGGERS:
            connection.exec_driver_sql(trigger)
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_RETIRED}")
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
    elif found < SCHEMA_VERSION:
        if found <= 1:
            _migrate_from_1(connection, where)
        if found <= 2:
            _migrate_from_2(connection)
        _migrate_from_3(connection)
        connection.execute(
            schema.update().where(schema.c.component == "calls").values(version=SCHEMA_VERSION)
        )


def _migrate_from_1(connection: Connection, where: str) -> None:
    """Add ``meta_typed`` and the new triggers; warn about records with pickled metadata."""
    _add_column(connection, "meta_typed", "TEXT")
    if connection.dialect.name == "sqlite":
        for name, trigger in zip(_TRIGGERS, _SQLITE_TRIGGERS, strict=True):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            connection.exec_driver_sql(trigger)
    legacy = connection.execute(
        select(func.count()).select_from(calls).where(calls.c.meta_extra.is_not(None))
    ).scalar()
    if legacy:
        warnings.warn(
            f"the call store at {where} has {legacy} records whose metadata an older fleche "
            "pickled; fleche no longer unpickles anything read from a store, so those records "
            "load without the pickled entries. If you trust everyone who could write to this "
            "store, convert them with Sql.convert_legacy_metadata(unpickle=True); otherwise "
            "drop them with Sql.convert_legacy_metadata(unpickle=False)",
            FlecheWarning,
            stacklevel=2,
        )


def _migrate_from_2(connection: Connection) -> None:
    """Add ``seal`` and seal every row as it is, a page at a time (rows are read as trusted)."""
    _add_column(connection, "seal", "VARCHAR(16)")
    pages = (
        select(calls.c.key, calls.c.result)
        .where(calls.c.seal.is_(None))
        .order_by(calls.c.key)
        .limit(PAGE)
    )
    store = update(calls).where(calls.c.key == bindparam("row")).values(seal=bindparam("sealed"))
    after = ""
    while rows := connection.execute(pages.where(calls.c.key > after)).all():
        connection.execute(store, [{"row": k, "sealed": seal(k, r)} for k, r in rows])
        after = rows[-1][0]


# The expiry of every row whose JSON document holds it as a number (or a boolean,
# which Python compares as 0 or 1); typed metadata is read in Python after.
_FILL_EXPIRES = {
    "sqlite": """UPDATE calls SET expires = json_extract(meta, '$."expiry"."expires"')
        WHERE json_type(meta, '$."expiry"."expires"') IN ('integer', 'real', 'true', 'false')""",
    "postgresql": """UPDATE calls SET expires = CASE jsonb_typeof(meta #> '{expiry,expires}')
        WHEN 'boolean' THEN (meta #>> '{expiry,expires}')::boolean::int::double precision
        ELSE (meta #>> '{expiry,expires}')::double precision END
        WHERE jsonb_typeof(meta #> '{expiry,expires}') IN ('number', 'boolean')""",
}


def _migrate_from_3(connection: Connection) -> None:
    """Add ``expires`` (with its partial index) and fill it from each row's metadata."""
    _add_column(connection, "expires", "DOUBLE PRECISION")
    ix_calls_expires.create(connection, checkfirst=True)
    connection.exec_driver_sql(_FILL_EXPIRES[connection.dialect.name])
    typed = connection.execute(
        select(calls.c.key, *ROW_COLUMNS).where(calls.c.meta_typed.is_not(None))
    ).all()
    store = update(calls).where(calls.c.key == bindparam("row")).values(expires=bindparam("when"))
    found = []
    for key, *row in typed:
        try:
            when = expiry_column(decode_row(key, tuple(row)).metadata)
        except Exception:  # a damaged row: verify reports it, its next save fills it
            continue
        if when is not None:
            found.append({"row": key, "when": when})
    if found:
        connection.execute(store, found)


def _add_column(connection: Connection, name: str, sql_type: str) -> None:
    """Add a column to ``calls`` unless it is there already.

    pysqlite commits DDL at once, outside the migration's transaction, so a
    migration that failed after adding a column must find it the next time.
    """
    if name not in {column["name"] for column in inspect(connection).get_columns("calls")}:
        connection.exec_driver_sql(f"ALTER TABLE calls ADD COLUMN {name} {sql_type}")
