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
    arguments,
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
# Created if missing whenever a store is opened.  The index is keyed by
# ``(name, value, call_key)``: a record's rows are found from its argument
# documents, never by key (that would scan the index); only a document that
# is not JSON (a damaged row) has its rows found by that scan.  A changed
# record drops the rows of its new document too before adding them: the
# update of an upsert overrides the trigger's ``OR IGNORE``, and a row left
# by a hand edit must not fail the save.
_ROWS_OF = "SELECT given.key, given.value, {row}.key FROM {also}json_each({row}.arguments) AS given"
_FILL = "INSERT OR IGNORE INTO arguments (name, value, call_key) " + _ROWS_OF
_ADD = _FILL.format(row="new", also="")
_DROP = (
    "DELETE FROM arguments WHERE json_valid({row}.arguments) "
    "AND (name, value, call_key) IN (" + _ROWS_OF.format(row="{row}", also="") + ")"
)
_DROP_OLD = (
    _DROP.format(row="old")
    + "; DELETE FROM arguments WHERE NOT json_valid(old.arguments) AND call_key = old.key"
)
_TRIGGERS = ("fleche_index_added", "fleche_index_changed", "fleche_index_removed")
_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[0]} AFTER INSERT ON calls BEGIN {_ADD}; END",
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[1]} AFTER UPDATE OF arguments ON calls "
    f"WHEN old.arguments IS NOT new.arguments BEGIN {_DROP_OLD}; {_DROP.format(row='new')}; "
    f"{_ADD}; END",
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGERS[2]} AFTER DELETE ON calls BEGIN {_DROP_OLD}; END",
)
#: The triggers of the layouts before 5, which found a record's rows by key: dropped whenever
#: a store is opened.  An older fleche makes them again before it refuses a store of layout 5;
#: with them the index stays right, each save only scans it, until the store is opened here.
_RETIRED = (
    "fleche_arguments_inserted",
    "fleche_arguments_filled",
    "fleche_arguments_updated",
    "fleche_arguments_pruned",
)


def check_schema(connection: Connection, where: str) -> None:
    """Create missing tables (and triggers), record the layout version, refuse newer layouts.

    ``where`` names the store in the error message.
    """
    tables.create_all(connection, checkfirst=True)
    found = connection.execute(
        select(schema.c.version).where(schema.c.component == "calls")
    ).scalar()
    if found is not None and found > SCHEMA_VERSION:  # refused before anything is changed
        raise ConfigError(
            f"the call store at {where} has schema version {found}, but this fleche only knows "
            f"versions up to {SCHEMA_VERSION}; upgrade fleche to open it"
        )
    if connection.dialect.name == "sqlite":
        for retired in _RETIRED:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {retired}")
        for trigger in _SQLITE_TRIGGERS:
            connection.exec_driver_sql(trigger)
    if found is None:
        connection.execute(schema.insert().values(component="calls", version=SCHEMA_VERSION))
    elif found < SCHEMA_VERSION:
        if found <= 1:
            _migrate_from_1(connection, where)
        if found <= 2:
            _migrate_from_2(connection)
        if found <= 3:
            _migrate_from_3(connection)
        _migrate_from_4(connection)
        connection.execute(
            schema.update().where(schema.c.component == "calls").values(version=SCHEMA_VERSION)
        )


def _migrate_from_1(connection: Connection, where: str) -> None:
    """Add ``meta_typed``; warn about records with pickled metadata."""
    _add_column(connection, "meta_typed", "TEXT")
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


# Layout 4 on PostgreSQL: primary key (call_key, name), an index on (name, value).
_REKEY_POSTGRES = (
    "ALTER TABLE arguments DROP CONSTRAINT IF EXISTS arguments_pkey",
    "DROP INDEX IF EXISTS ix_arguments_value",
    "ALTER TABLE arguments ADD PRIMARY KEY (name, value, call_key)",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_arguments_call ON arguments (call_key, name)",
)


def _migrate_from_4(connection: Connection) -> None:
    """Key the argument index by ``(name, value, call_key)``.

    On SQLite the index is made again from every record's own argument
    document (no rowid table, no second index, no foreign key: its triggers
    keep it); rows left by records deleted by hand are not carried over.
    Each step can run again: pysqlite commits DDL at once.
    """
    if connection.dialect.name != "sqlite":
        for step in _REKEY_POSTGRES:
            connection.exec_driver_sql(step)
        return
    for name in _TRIGGERS:  # not fired into the table while it is made again
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    arguments.drop(connection, checkfirst=True)
    arguments.create(connection)
    every = _FILL.format(row="calls", also="calls, ") + " WHERE json_valid(calls.arguments)"
    connection.exec_driver_sql(every + " ORDER BY 1, 2, 3")  # in the index's order: rows appended
    for trigger in _SQLITE_TRIGGERS:
        connection.exec_driver_sql(trigger)


def _add_column(connection: Connection, name: str, sql_type: str) -> None:
    """Add a column to ``calls`` unless it is there already.

    pysqlite commits DDL at once, outside the migration's transaction, so a
    migration that failed after adding a column must find it the next time.
    """
    if name not in {column["name"] for column in inspect(connection).get_columns("calls")}:
        connection.exec_driver_sql(f"ALTER TABLE calls ADD COLUMN {name} {sql_type}")
