"""SQL-specific behaviour of ``Sql``; what every call storage does is in the conformance suite."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sqlalchemy import delete, event, func, select, update  # noqa: E402

from fleche.call import Call, DigestedCall, Exactly, QueryCall  # noqa: E402
from fleche.digest import digest  # noqa: E402
from fleche.errors import AmbiguousDigestError, ConfigError, CorruptEntryWarning  # noqa: E402
from fleche.storage import CallMemory, Sql, sql_connection  # noqa: E402
from fleche.storage.sql_schema import SCHEMA_VERSION, arguments, calls, schema  # noqa: E402

from .backends import postgres_calls  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Sql:
    """An empty store on a SQLite file, and one on the test PostgreSQL server (or a skip)."""
    if request.param == "sqlite":
        return Sql(url=str(tmp_path / "calls.db"))
    return postgres_calls(tmp_path)


def _clear(store: Sql) -> None:
    with store.session() as connection:
        connection.execute(delete(arguments))
        connection.execute(delete(calls))


def _call(i: int, **changes: Any) -> Call:
    call = Call(name="simulate", module="tests.sql", arguments={"x": i % 7, "i": i}, result=i)
    return dataclasses.replace(call, **changes)


# -- opening a store --------------------------------------------------------------


def test_bare_path_is_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "calls.db"
    store = Sql(url=str(path))
    key = store.save(_call(1))
    assert path.is_file()
    assert store.engine.dialect.name == "sqlite"
    assert Sql(url=f"sqlite:///{path}").load(key) == store.load(key)


def test_fields_are_positional_as_the_spec_shows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Sql("calls.db")
    key = store.save(_call(1))
    assert (tmp_path / "calls.db").is_file() and store.url == "calls.db"
    assert Sql("calls.db", False).load(key) == store.load(key) and Sql("calls.db", True).echo
    for scratch in (Sql(), Sql(None)):
        assert scratch.engine.dialect.name == "sqlite" and list(scratch.list()) == []


def test_orm_models_map_the_tables(store: Sql) -> None:
    from sqlalchemy.orm import Session

    from fleche.storage.sql import ArgumentModel, CallModel, MetaModel

    key = store.save(_call(1, metadata={"tags": {"pair": (1, 2), "project": "x"}}))
    with Session(store.engine) as session:
        call = session.get(CallModel, key)
        assert (call.name, call.module, call.result) == ("simulate", "tests.sql", digest(1))
        assert [(a.name, a.value) for a in call.argument_rows] == [
            ("i", digest(1)),
            ("x", digest(1)),
        ]
        assert session.query(ArgumentModel).filter_by(name="x").count() == 1
        meta = session.get(MetaModel, key)
        assert meta.call_key == key and meta.data == {"tags": {"project": "x"}}
        assert meta.typed is not None


def test_import_of_the_store_does_not_load_the_orm() -> None:
    code = "import fleche.storage.sql, sys; print('sqlalchemy.orm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_url_is_a_private_scratch_store() -> None:
    first, second = Sql(), Sql()
    key = first.save(_call(1))
    assert first.contains(key)
    assert not second.contains(key)


def test_sqlite_connections_are_set_up_for_concurrency(tmp_path: Path) -> None:
    store = Sql(url=str(tmp_path / "calls.db"))
    with store.engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in (
                "journal_mode",
                "synchronous",
                "busy_timeout",
                "foreign_keys",
                "wal_autocheckpoint",
            )
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 30_000,
        "foreign_keys": 1,
        "wal_autocheckpoint": sql_connection.WAL_LIMIT_PAGES,
    }


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fleche-sqlite-checkpoint"]


def test_sqlite_is_checkpointed_in_the_background(tmp_path: Path, monkeypatch) -> None:
    # Rows reach the database file only through checkpoints; SQLite's own comes
    # after WAL_LIMIT_PAGES pages, far more than a few records write.
    monkeypatch.setattr(sql_connection, "CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(sql_connection, "CHECKPOINT_IDLE", 0.2)
    path = tmp_path / "calls.db"
    store = Sql(url=str(path))
    empty = path.stat().st_size
    for i in range(4):
        store.save(_call(i))
    assert path.stat().st_size == empty  # four commits: all still in the log
    store.save(_call(4))
    deadline = time.monotonic() + 30
    while path.stat().st_size == empty:
        assert time.monotonic() < deadline, "the database file was never checkpointed"
        time.sleep(0.01)
    assert len(list(store.query(QueryCall(name="simulate")))) == 5
    while _checkpoint_threads():  # nothing to do: the thread ends
        assert time.monotonic() < deadline, "the checkpoint thread did not end"
        time.sleep(0.01)
    written = path.stat().st_mtime_ns
    for i in range(5, 10):
        store.save(_call(i))  # and is started again when needed
    while path.stat().st_mtime_ns == written:
        assert time.monotonic() < deadline, "the database file was not checkpointed again"
        time.sleep(0.01)


def test_schema_version_is_recorded(store: Sql) -> None:
    with store.session() as connection:
        assert connection.execute(select(schema.c.component, schema.c.version)).all() == [
            ("calls", SCHEMA_VERSION)
        ]


def test_newer_schema_is_refused(store: Sql) -> None:
    key = store.save(_call(1))
    with store.session() as connection:
        connection.execute(update(schema).values(version=SCHEMA_VERSION + 1))
    with pytest.raises(ConfigError, match="upgrade fleche") as info:
        Sql(url=store.url)
    assert isinstance(info.value, ValueError)
    with store.session() as connection:  # an older fleche's refusal leaves the store untouched
        assert connection.execute(select(func.count()).select_from(calls)).scalar() == 1
        connection.execute(update(schema).values(version=SCHEMA_VERSION))
    assert Sql(url=store.url).load(key).result == digest(1)


def test_import_fleche_does_not_import_sqlalchemy() -> None:
    code = "import sys, fleche, fleche.storage; assert 'sqlalchemy' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# -- records ------------------------------------------------------------------------


def test_record_round_trips_exactly(store: Sql) -> None:
    call = Call(
        name="f",
        module="m",
        arguments={"a": 1, "b": None},
        result=[1, 2],
        metadata={
            "tags": {
                "project": "x",
                "n": 3,
                "ratio": 0.1,
                "on": True,
                "none": None,
                "list": [1, "a", [2.5]],
            },
            "awkward": {
                "tuple": (1, 2),
                "big": 1e20,
                "negative zero": -0.0,
                "inf": math.inf,
                "nul": "a\x00b",
            },
            "runtime": {"walltime": 3.2e-05},
            'weird "name"': {"ü": "é", "": 1},
            7: {"not": "a text namespace"},
            "not a mapping": [1, 2],
        },
        version=None,
        code=None,
        unkeyed=frozenset({"module", "version"}),
        created=1700000000.123456789,
    )
    record = store.load(store.save(call))
    assert record == call.digested()
    assert type(record.metadata["awkward"]["tuple"]) is tuple
    assert math.copysign(1.0, record.metadata["awkward"]["negative zero"]) == -1.0
    assert record.version is None and record.code is None
    assert record.created == call.created
    plain = store.load(store.save(_call(2, version="1.2", code=digest("source"))))
    assert (plain.version, plain.code, plain.unkeyed, plain.metadata) == (
        "1.2",
        digest("source"),
        frozenset(),
        {},
    )


def test_rerun_replaces_argument_rows_and_evict_cascades(store: Sql) -> None:
    key = store.save(_call(1, result="old", metadata={"tags": {"run": 1}}))
    store.put(
        _call(1, result="new", metadata={"tags": {"run": 2}}).replace(arguments={"z": 9}), key
    )
    record = store.load(key)
    assert record.result == digest("new") and record.metadata == {"tags": {"run": 2}}
    assert record.arguments == {"z": digest(9)}
    with store.session() as connection:
        assert connection.execute(
            select(arguments.c.name).where(arguments.c.call_key == key)
        ).scalars().all() == ["z"]
    store.evict(key)
    with store.session() as connection:
        assert connection.execute(select(func.count()).select_from(arguments)).scalar() == 0


def test_a_sqlite_store_made_without_triggers_gets_them_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    Sql(url=str(path)).save(_call(1))
    with Sql(url=str(path)).session() as connection:  # a store as the first releases made it
        for name in _trigger_names(connection):
            connection.exec_driver_sql(f"DROP TRIGGER {name}")
    key = Sql(url=str(path)).save(_call(2))
    with Sql(url=str(path)).session() as connection:
        names = connection.execute(
            select(arguments.c.name).where(arguments.c.call_key == key).order_by(arguments.c.name)
        ).scalars()
        assert list(names) == ["i", "x"]
    assert [r.key() for r in Sql(url=str(path)).query(QueryCall(arguments={"i": 2}))] == [key]


def _trigger_names(connection: Any) -> list[str]:
    found = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return sorted(found.scalars())


#: The argument index and its triggers as stores of layout 4 and before had them.
_LAYOUT_4 = (
    "CREATE TABLE arguments (call_key VARCHAR(32) NOT NULL, name TEXT NOT NULL, "
    "value VARCHAR(32) NOT NULL, PRIMARY KEY (call_key, name), "
    'FOREIGN KEY(call_key) REFERENCES calls ("key") ON DELETE CASCADE)',
    "CREATE INDEX ix_arguments_value ON arguments (name, value)",
    "CREATE TRIGGER fleche_arguments_filled AFTER INSERT ON calls BEGIN INSERT OR REPLACE "
    "INTO arguments (call_key, name, value) SELECT new.key, given.key, given.value "
    "FROM json_each(new.arguments) AS given; END",
    "CREATE TRIGGER fleche_arguments_updated AFTER UPDATE OF arguments ON calls "
    "WHEN old.arguments IS NOT new.arguments BEGIN DELETE FROM arguments WHERE call_key = new.key; "
    "INSERT INTO arguments (call_key, name, value) SELECT new.key, given.key, given.value "
    "FROM json_each(new.arguments) AS given; END",
    "CREATE TRIGGER fleche_arguments_pruned AFTER INSERT ON calls WHEN EXISTS (SELECT 1 FROM "
    "arguments WHERE call_key = new.key AND name NOT IN (SELECT key FROM json_each(new.arguments))) "
    "BEGIN DELETE FROM arguments WHERE call_key = new.key AND name NOT IN "
    "(SELECT key FROM json_each(new.arguments)); END",
)
_NEW_TRIGGERS = ["fleche_index_added", "fleche_index_changed", "fleche_index_removed"]


def _argument_names(store: Sql, key: str) -> list[str]:
    with store.session() as connection:
        query = select(arguments.c.name).where(arguments.c.call_key == key)
        return sorted(connection.execute(query).scalars())


def _as_layout_4(path: Path, orphan: tuple[str, str, str]) -> None:
    """Turn the SQLite store at ``path`` into one of layout 4, its index made from its records."""
    with sqlite3.connect(path) as connection:
        for name in _NEW_TRIGGERS:
            connection.execute(f"DROP TRIGGER {name}")
        connection.execute("DROP TABLE arguments")
        for statement in _LAYOUT_4[:2]:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO arguments SELECT calls.key, given.key, given.value "
            "FROM calls, json_each(calls.arguments) AS given"
        )
        connection.execute("INSERT INTO arguments VALUES (?, ?, ?)", orphan)
        for statement in _LAYOUT_4[2:]:
            connection.execute(statement)
        connection.execute("UPDATE fleche_schema SET version = 4")


def test_a_layout_4_store_gets_the_new_argument_index_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    keys = [Sql(url=str(path)).save(_call(i)) for i in range(3)]
    _as_layout_4(path, ("f" * 32, "i", str(digest(1))))  # a row left by a hand deletion
    store = Sql(url=str(path))
    with store.session() as connection:
        assert connection.execute(select(schema.c.version)).scalar() == SCHEMA_VERSION
        assert _trigger_names(connection) == _NEW_TRIGGERS
        (made,) = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'arguments'"
        ).scalars()
        assert "PRIMARY KEY (name, value, call_key)" in made and "WITHOUT ROWID" in made
        assert connection.execute(select(func.count()).select_from(arguments)).scalar() == 6
    assert [_argument_names(store, key) for key in keys] == [["i", "x"]] * 3
    assert [r.key() for r in store.query(QueryCall(arguments={"i": 1}))] == [keys[1]]
    key = store.save(_call(3))
    assert _argument_names(store, key) == ["i", "x"]
    store.evict(keys[0])
    assert _argument_names(store, keys[0]) == []


def test_a_layout_4_postgres_store_gets_the_new_argument_index_when_opened(tmp_path: Path) -> None:
    store = postgres_calls(tmp_path)
    keys = [store.save(_call(i)) for i in range(3)]
    with store.session() as connection:  # the keys and indexes of layout 4
        for step in (
            "ALTER TABLE arguments DROP CONSTRAINT arguments_pkey",
            "DROP INDEX ix_arguments_call",
            "ALTER TABLE arguments ADD PRIMARY KEY (call_key, name)",
            "CREATE INDEX ix_arguments_value ON arguments (name, value)",
            "UPDATE fleche_schema SET version = 4",
        ):
            connection.exec_driver_sql(step)
    opened = postgres_calls(tmp_path)
    with opened.session() as connection:
        assert connection.execute(select(schema.c.version)).scalar() == SCHEMA_VERSION
        indexes = dict(
            connection.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'arguments' "
                "AND schemaname = current_schema()"
            ).all()
        )
    assert sorted(indexes) == ["arguments_pkey", "ix_arguments_call"]
    assert "(name, value, call_key)" in indexes["arguments_pkey"]
    assert [r.key() for r in opened.query(QueryCall(arguments={"i": 1}))] == [keys[1]]
    opened.put(_call(1).replace(arguments={"z": 9}), keys[1])
    assert _argument_names(opened, keys[1]) == ["z"]
    opened.evict(keys[0])
    assert _argument_names(opened, keys[0]) == []


def test_the_triggers_an_older_fleche_makes_again_fill_the_same_rows(tmp_path: Path) -> None:
    store = Sql(url=str(tmp_path / "calls.db"))
    with store.session() as connection:  # an older fleche opened the store since, and refused it
        for statement in _LAYOUT_4[2:]:
            connection.exec_driver_sql(statement)
    keys = [store.save(_call(i)) for i in range(3)]
    store.put(_call(1).replace(arguments={"z": 9}), keys[1])
    assert [_argument_names(store, key) for key in keys] == [["i", "x"], ["z"], ["i", "x"]]
    assert [r.key() for r in store.query(QueryCall(arguments={"i": 2}))] == [keys[2]]
    assert list(store.query(QueryCall(arguments={"i": 1}))) == []
    with Sql(url=str(tmp_path / "calls.db")).session() as connection:  # opened here again
        assert _trigger_names(connection) == _NEW_TRIGGERS


def test_a_new_sqlite_store_fills_arguments_without_a_delete(tmp_path: Path) -> None:
    store = Sql(url=str(tmp_path / "calls.db"))
    with store.session() as connection:
        (added,) = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'fleche_index_added'"
        ).scalars()
    assert "INSERT OR IGNORE" in added and "DELETE" not in added


def test_a_damaged_argument_document_has_its_index_rows_removed(tmp_path: Path) -> None:
    store = Sql(url=str(tmp_path / "calls.db"))
    key, other = store.save(_call(1)), store.save(_call(2))
    with sqlite3.connect(tmp_path / "calls.db") as connection:  # damaged by hand, index kept
        connection.execute("DROP TRIGGER fleche_index_changed")
        connection.execute("UPDATE calls SET arguments = '{broken' WHERE key = ?", (key,))
    store.evict(key)
    assert _argument_names(store, key) == [] and _argument_names(store, other) == ["i", "x"]


def test_damaged_row_reads_as_a_miss(store: Sql) -> None:
    key = store.save(_call(1))
    with store.session() as connection:
        connection.execute(update(calls).where(calls.c.key == key).values(meta_typed="{not json"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyError):
            store.load(key)
        assert list(store.query(QueryCall(name="simulate"))) == []
    assert sum(issubclass(w.category, CorruptEntryWarning) for w in caught) == 2


_HEX32 = "0" * 32
#: Argument documents a hand edit may leave; each row is read alone, the rest of its page in bulk.
_BAD_ARGUMENTS = {
    "not JSON": '{"x": "' + _HEX32,
    "two documents": f'{{"x": "{_HEX32}"}},{{"i": "{_HEX32}"}}',
    "half a document": f'{{"x": "{_HEX32}"',
    "a list": f'["{_HEX32}"]',
    "a short digest": '{"x": "abc"}',
    "a digest in capitals": '{"x": "' + "A" * 32 + '"}',
    "a number": '{"x": 12}',
    "digests joined by a comma": f'{{"x": "{_HEX32},{_HEX32}"}}',
}


@pytest.mark.parametrize("damage", list(_BAD_ARGUMENTS), ids=str)
def test_a_page_with_a_damaged_row_lists_the_others(store: Sql, damage: str) -> None:
    keys = [store.save(_call(i)) for i in range(5)]
    with store.session() as connection:
        # SQLite's trigger would refuse to index malformed JSON: a hand edit without it.
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER fleche_index_changed")
        for key in keys[1:3]:  # two neighbours: their texts joined must not pass as others
            connection.execute(
                update(calls).where(calls.c.key == key).values(arguments=_BAD_ARGUMENTS[damage])
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = [r.key() for r in store.query(QueryCall(name="simulate"))]
    assert sorted(found) == sorted([keys[0], *keys[3:]])
    assert {str(w.message).split()[3] for w in caught} == set(keys[1:3])


def test_a_listed_call_knows_the_key_it_is_stored_under(store: Sql) -> None:
    from fleche.caches import Cache
    from fleche.storage import ValueMemory

    cache = Cache(ValueMemory(), store)
    record = Call(name="f", module="m", arguments={}, result=None).digested()
    misfiled = digest("not the lookup key")
    store.put(record, misfiled)
    (call,) = cache.query()
    assert call.key() == misfiled and call.digested_call.key() == record.key()
    copied = pickle.loads(pickle.dumps(call.digested_call))  # a plain record, wherever it lands
    assert type(copied) is DigestedCall and copied == record and copied.key() == record.key()
    assert cache.query().table(values=False)["key"].tolist() == [misfiled]
    assert cache.query().evict() == 1 and list(store.list()) == []


# -- seals: a result digest changed in the database is never served -----------------


def _set_result(store: Sql, key: str, result: str | None) -> None:
    with store.session() as connection:
        connection.execute(update(calls).where(calls.c.key == key).values(result=result))


def _no_seal(store: Sql, key: str, other: str) -> None:
    with store.session() as connection:
        connection.execute(update(calls).where(calls.c.key == key).values(seal=None))


def _swap(store: Sql, key: str, other: str) -> None:
    _set_result(store, key, str(digest(2)))
    _set_result(store, other, str(digest(1)))


_MINE = str(digest(1))
#: Hand edits of the row of ``key`` (the record of ``_call(1)``; ``other``: that of ``_call(2)``).
_DAMAGES: dict[str, Any] = {
    "another row's result": lambda store, key, other: _set_result(store, key, str(digest(2))),
    "two rows' results swapped": _swap,
    "a changed character": lambda store, key, other: _set_result(
        store, key, _MINE[:5] + ("0" if _MINE[5] != "0" else "1") + _MINE[6:]
    ),
    "a truncated digest": lambda store, key, other: _set_result(store, key, _MINE[:7]),
    "an empty digest": lambda store, key, other: _set_result(store, key, ""),
    "no result": lambda store, key, other: _set_result(store, key, None),
    "no seal": _no_seal,
}


@pytest.mark.parametrize("damage", list(_DAMAGES), ids=str)
def test_a_changed_result_digest_reads_as_a_warned_miss(store: Sql, damage: str) -> None:
    key, other = store.save(_call(1)), store.save(_call(2))
    _DAMAGES[damage](store, key, other)
    for read in (
        lambda: store.result_of(key, "expiry"),
        lambda: store.load(key),
        lambda: store.result_of(store.shrink(key), "tags"),
    ):
        with pytest.warns(CorruptEntryWarning, match=key), pytest.raises(KeyError):
            read()
    with pytest.warns(CorruptEntryWarning):
        assert [r.key() for r in store.query(QueryCall(name="simulate"))] == (
            [] if damage == "two rows' results swapped" else [other]
        )
    store.save(_call(1))  # the recomputed call's save writes a good row
    assert store.result_of(key, "expiry") == (digest(1), None)
    assert store.load(key).result == digest(1)


def test_verify_reports_and_removes_a_row_whose_seal_fails(store: Sql) -> None:
    from fleche.caches import Cache
    from fleche.storage import ValueMemory
    from fleche.verify import CORRUPT_RECORD, verify

    cache = Cache(ValueMemory(), store)
    for value in (1, 2):
        cache.values.save(value)
    key, other = store.save(_call(1)), store.save(_call(2))
    _set_result(store, key, str(digest(2)))  # a real value: only the seal tells
    report = verify(cache)
    assert [(p.key, p.kind) for p in report.problems] == [(key, CORRUPT_RECORD)]
    assert "seal" in report.problems[0].detail
    verify(cache, fix=True)
    assert list(store.list()) == [other] and verify(cache).ok


def test_a_schema_2_store_is_sealed_when_opened(store: Sql) -> None:
    keys = [store.save(_call(i)) for i in range(3)]
    with store.session() as connection:  # the layout of schema 2: no seals
        connection.exec_driver_sql("ALTER TABLE calls DROP COLUMN seal")
        connection.execute(update(schema).values(version=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = Sql(url=store.url)
        assert [opened.load(k).result for k in keys] == [digest(i) for i in range(3)]
    with opened.session() as connection:
        assert connection.execute(select(schema.c.version)).scalar() == SCHEMA_VERSION
        assert connection.execute(select(func.count()).where(calls.c.seal.is_(None))).scalar() == 0
    _set_result(opened, keys[0], str(digest(2)))  # sealed rows are checked from now on
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        opened.result_of(keys[0], "expiry")


def test_a_schema_3_store_gets_the_expiry_column_when_opened(store: Sql) -> None:
    ends = [None, 100.0, 200.0, math.inf, 100, True]  # inf: typed metadata; True compares as 1
    for i, end in enumerate(ends):
        expiry = {} if end is None else {"expiry": {"ttl": 1.0, "expires": end}}
        store.save(_call(i, metadata=expiry))
    with store.session() as connection:  # the layout of schema 3: no expiry column
        connection.exec_driver_sql("DROP INDEX ix_calls_expires")
        connection.exec_driver_sql("ALTER TABLE calls DROP COLUMN expires")
        connection.execute(update(schema).values(version=3))
    opened = Sql(url=store.url)
    with opened.session() as connection:
        assert connection.execute(select(schema.c.version)).scalar() == SCHEMA_VERSION
        found = connection.execute(select(calls.c.expires).order_by(calls.c.expires)).scalars()
        assert sorted(found, key=lambda e: -1 if e is None else e) == [
            None, 1.0, 100.0, 100.0, 200.0, math.inf
        ]  # fmt: skip
    assert [opened.count(now=now) for now in (0.5, 50.0, 150.0, 250.0)] == [6, 5, 3, 2]
    assert opened.count(QueryCall(name="simulate"), now=150.0) == 3
    assert opened.count(QueryCall(name="other"), now=150.0) == 0
    assert opened.count(QueryCall(arguments={"i": 2}), now=150.0) == 1


def test_expand_is_a_range_scan_naming_candidates(store: Sql) -> None:
    keys = [f"abc{n:029x}" for n in range(40)] + [f"abd{n:029x}" for n in range(3)]
    row = {"name": "f", "module": "m", "unkeyed": "", "created": 0.0, "arguments": "{}", "meta": {}}
    with store.session() as connection:
        connection.execute(calls.insert(), [{"key": k, **row} for k in keys])
    with pytest.raises(AmbiguousDigestError) as info:
        store.expand("abc")
    assert info.value.candidates == keys[:20] and info.value.needed == 32
    assert sorted(store._prefix_range("abc")) == keys[:40]  # paged past the first 32
    assert store.expand("abd" + "0" * 28 + "2") == keys[42]
    with pytest.raises(KeyError):
        store.expand("abe")
    assert list(store.list()) == keys


# -- queries ------------------------------------------------------------------------


def _count_statements(store: Sql) -> list[str]:
    """Statements run from now on, through SQLAlchemy or as compiled text on a raw cursor."""
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    runtime = store._runtime()
    read = runtime.read
    runtime.read = lambda *args: seen.append(args[0]) or read(*args)
    return seen


def test_query_runs_a_bounded_number_of_statements(store: Sql) -> None:
    for i in range(300):
        store.save(_call(i, metadata={"tags": {"few": i < 10}}))
    seen = _count_statements(store)
    assert len(list(store.query(QueryCall(metadata={"tags": {"few": True}})))) == 10
    few = len(seen)
    seen.clear()
    assert len(list(store.query(QueryCall(name="simulate", metadata={"tags": {}})))) == 300
    assert len(seen) == few == 1  # up to a chunk of records come with the first statement
    seen.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("fleche.storage.sql._CHUNK", 70)
        found = [r.key() for r in store.query(QueryCall(name="simulate", metadata={"tags": {}}))]
    assert found == sorted(found) and len(set(found)) == 300
    assert len(seen) == 1 + 1 + 4  # the first 70 records, the other keys, 230 of them by 70


def test_a_template_sql_answers_exactly_is_read_in_pages(store: Sql) -> None:
    saved = [store.save(_call(i)) for i in range(300)]
    store.save(_call(5))  # saved again: it keeps its place
    # In table order on SQLite (the order calls were first stored), in key order elsewhere
    # and for an argument template (the order of the argument index).
    order = saved if store.url.endswith(".db") else sorted(saved)
    threes = {k for i, k in enumerate(saved) if i % 7 == 3}
    seen = _count_statements(store)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("fleche.storage.sql_scan.PAGE", 70)
        assert [r.key() for r in store.query(QueryCall(name="simulate"))] == order
        found = [r.key() for r in store.query(QueryCall(arguments={"x": 3}))]
    assert found == sorted(threes)
    assert len(seen) == 5 + 1  # 300 records in pages of 70, one statement each; 43 in one


def test_filters_are_pushed_down(store: Sql) -> None:
    for i in range(50):
        store.save(_call(i, metadata={"tags": {"project": f"p{i % 5}", "n": i % 3}}))
    seen = _count_statements(store)
    template = QueryCall(arguments={"x": 3}, metadata={"tags": {"project": "p1", "n": 1}})
    found = list(store.query(template))
    assert {r.arguments["i"] for r in found} == {
        digest(i) for i in range(50) if i % 7 == 3 and i % 5 == 1 and i % 3 == 1
    }
    # one statement, and its filters alone select exactly the matching calls
    assert len(seen) == 1
    key_query = store._apply_metadata_filters(
        store._apply_argument_filters(select(calls.c.key), {"x": 3}),
        {"tags": {"project": "p1", "n": 1}},
    )
    with store.engine.connect() as connection:
        assert sorted(connection.execute(key_query).scalars()) == sorted(r.key() for r in found)


def test_a_call_is_a_template_with_none_as_wildcards(store: Sql) -> None:
    for i in range(30):
        store.save(_call(i, metadata={"tags": {"even": i % 2 == 0}}))
    seen = _count_statements(store)
    template = Call(name="simulate", module=None, arguments={"x": 3}, result=None)
    found = sorted(r.key() for r in store.query(template))
    assert found == sorted(r.key() for r in store.query(QueryCall(arguments={"x": 3})))
    assert len(found) == 4 and len(seen) == 2  # each answered by one statement
    tagged = Call(name=None, module=None, arguments=None, metadata={"tags": {"even": True}})
    assert len(list(store.query(tagged))) == 15


_NAMESPACES = st.sampled_from(["tags", "runtime", 'quo"te', "é"])
_NAMES = st.sampled_from(["project", "n", "flag", "", "ü", 'q"', "back\\slash"])
_VALUES = st.one_of(
    st.sampled_from(
        [0, 1, 2, -1, 2**70, 10**400, True, False, None, "x", "y", "1", "", "a\x00", "\ud800"]
    ),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e16, 1e-5, 2.5, math.inf, math.nan]),
    st.lists(st.sampled_from([1, "x"]), max_size=2),
    st.tuples(st.sampled_from([1, "x"])),
)
_METADATA = st.dictionaries(
    _NAMESPACES, st.one_of(st.dictionaries(_NAMES, _VALUES, max_size=3), st.just(None)), max_size=3
)
_ARGUMENT_VALUES = st.sampled_from([0, 1, 1.0, True, None, "x", (1,), [1]])
_ARGUMENTS = st.dictionaries(st.sampled_from(["x", "y", "z"]), _ARGUMENT_VALUES, max_size=3)
_CALLS = st.builds(
    Call,
    name=st.sampled_from(["f", "g"]),
    module=st.sampled_from(["m", "n"]),
    arguments=_ARGUMENTS,
    result=st.sampled_from([0, 1, None, "r"]),
    metadata=_METADATA,
    version=st.sampled_from([None, "1", "2"]),
    code=st.sampled_from([None, digest("code")]),
)
_TEMPLATES = st.builds(
    QueryCall,
    name=st.sampled_from([None, "f", "g"]),
    module=st.sampled_from([None, "m"]),
    arguments=st.one_of(st.none(), _ARGUMENTS),
    result=st.sampled_from([None, 0, "r", Exactly(None)]),
    metadata=st.one_of(
        st.none(),
        st.dictionaries(_NAMESPACES, st.dictionaries(_NAMES, _VALUES, max_size=2), max_size=2),
    ),
    version=st.sampled_from([None, "1", Exactly(None)]),
    code=st.sampled_from([None, Exactly(None), digest("code")]),
)


@st.composite
def _templates_like(draw: st.DrawFn, stored: list[Call]) -> QueryCall:
    """A template that often matches: parts copied from a stored call, the rest random."""
    template = draw(_TEMPLATES)
    if not stored or draw(st.booleans()):
        return template
    model = draw(st.sampled_from(stored))
    metadata = {
        namespace: {n: v for n, v in entries.items() if draw(st.booleans())}
        for namespace, entries in model.metadata.items()
        if isinstance(entries, dict) and draw(st.booleans())
    }
    arguments = {n: v for n, v in model.arguments.items() if draw(st.booleans())}
    return dataclasses.replace(
        template, metadata=metadata or template.metadata, arguments=arguments
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), stored=st.lists(_CALLS, min_size=1, max_size=8))
def test_query_equals_the_generic_scan(store: Sql, data: st.DataObject, stored: list[Call]) -> None:
    _clear(store)
    scan = CallMemory()
    for call in stored:
        store.save(call)
        scan.save(call)
    for template in data.draw(st.lists(_templates_like(stored), min_size=1, max_size=4)):
        expected = sorted(r.key() for r in scan.query(template))
        assert sorted(r.key() for r in store.query(template)) == expected


# -- concurrency and processes ------------------------------------------------------


def test_many_threads_write_at_once(store: Sql) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(40):
                key = store.save(
                    _call((i + 5 * worker) % 40, metadata={"tags": {"worker": worker}})
                )
                assert store.load(key).name == "simulate"
                if i % 10 == 0:
                    list(store.query(QueryCall(arguments={"x": i % 7})))
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(store.list())) == 40
    assert len(list(store.query(QueryCall()))) == 40


def test_pickling_keeps_the_url_only(store: Sql) -> None:
    key = store.save(_call(1))
    engine = store.engine
    data = pickle.dumps(store)
    assert store.__getstate__() == {"url": store.url, "echo": False}
    assert b"Engine" not in data and len(data) < 500
    clone = pickle.loads(data)
    assert clone == store and clone.engine is not engine
    assert clone.load(key) == store.load(key)


def _save_in_child(store: Sql) -> None:
    store.save(_call(99))


def test_fork_gets_a_fresh_engine(store: Sql) -> None:
    key = store.save(_call(1))
    store.load(key)  # the parent's connection is open when the child is forked
    child = multiprocessing.get_context("fork").Process(target=_save_in_child, args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert store.contains(_call(99).key())
    assert store.load(key).result == digest(1)  # the parent's connection still works


def test_result_of_reads_the_result_and_one_namespace(store: Sql) -> None:
    # The decorator's hit path: the same answer as a whole load, from two columns.
    call = _call(1, metadata={"expiry": {"ttl": 5.0, "expires": 123.5}, "tags": {"a": 1}})
    key = store.save(call)
    record = store.load(key)
    assert store.result_of(key, "expiry") == (record.result, {"ttl": 5.0, "expires": 123.5})
    assert store.result_of(key, "tags") == (record.result, {"a": 1})
    assert store.result_of(key, "absent") == (record.result, None)
    assert store.result_of(store.shrink(key), "tags")[0] == record.result
    with pytest.raises(KeyError):
        store.result_of(digest("never stored"), "expiry")
    # entries JSON cannot hold come back too, and from a namespace kept whole
    typed = _call(2, metadata={"expiry": {"ttl": math.inf, "expires": 1.0}, "whole": (1, 2)})
    key = store.save(typed)
    assert store.result_of(key, "expiry")[1] == {"ttl": math.inf, "expires": 1.0}
    assert store.result_of(key, "whole")[1] == (1, 2)
    assert store.result_of(key, "absent")[1] is None
    with store.session() as connection:
        connection.execute(update(calls).where(calls.c.key == key).values(meta_typed="{bad"))
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        store.result_of(key, "expiry")
