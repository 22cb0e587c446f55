"""SQL metadata is typed JSON, never a pickle; and the tables' own checks and repairs."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import fractions
import math
import pathlib
import pickle
import sqlite3
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

import numpy as np  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

from fleche.caches import Cache  # noqa: E402
from fleche.call import Call, QueryCall  # noqa: E402
from fleche.digest import digest  # noqa: E402
from fleche.errors import FlecheWarning, SaveError  # noqa: E402
from fleche.storage import Sql, ValueMemory  # noqa: E402
from fleche.storage.sql_maintenance import ORPHAN_ARGUMENTS, PICKLED_METADATA  # noqa: E402
from fleche.storage.sql_schema import SCHEMA_VERSION, arguments, calls, schema  # noqa: E402
from fleche.verify import verify  # noqa: E402

from .backends import postgres_calls  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Sql:
    if request.param == "sqlite":
        return Sql(str(tmp_path / "calls.db"))
    return postgres_calls(tmp_path)


def _call(i: int, metadata: dict[Any, Any] | None = None) -> Call:
    return Call(
        name="simulate",
        module="tests.sql",
        arguments={"x": i, "y": "a"},
        result=i,
        metadata=metadata or {},
    )


_TYPED = {
    "tuple": (1, ("a", 2.5)),
    "set": {1, "x"},
    "frozenset": frozenset({3}),
    "bytes": b"\x00\xff",
    "bytearray": bytearray(b"ab"),
    "complex": complex(1, -math.inf),
    "aware": datetime.datetime(
        2024, 5, 1, 12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    ),
    "naive": datetime.datetime(2024, 5, 1, 12, 30, 1, 5),
    "date": datetime.date(2024, 5, 1),
    "time": datetime.time(23, 59, 59, 999999),
    "timedelta": datetime.timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": decimal.Decimal("1.10"),
    "fraction": fractions.Fraction(1, 3),
    "uuid": uuid.UUID(int=12345),
    "posix": pathlib.PurePosixPath("/a/b"),
    "path": pathlib.Path("rel/x"),
    "digest": digest("x"),
    "float32": np.float32(0.1),
    "int64": np.int64(-3),
    "bool_": np.bool_(True),
    "str_": np.str_("ü"),
    "array": np.arange(6, dtype=np.int16).reshape(2, 3),
    "int keys": {1: "a", (2, 3): "b"},
    "inf": math.inf,
    "nested": [(1,), {"k": b"v"}],
    "nul": "a\x00b",
    "surrogate": "\ud800",
}


def test_metadata_of_every_documented_type_round_trips(store: Sql) -> None:
    call = _call(1, metadata={"typed": _TYPED, 7: {"namespace": "not text"}, "whole": (1, 2)})
    record = store.load(store.save(call))
    loaded = record.metadata["typed"]
    for name, value in _TYPED.items():
        assert type(loaded[name]) is type(value), name
        if isinstance(value, np.ndarray):
            assert loaded[name].dtype == value.dtype and (loaded[name] == value).all()
        else:
            assert loaded[name] == value, name
    assert record.metadata[7] == {"namespace": "not text"} and record.metadata["whole"] == (1, 2)
    nan = store.load(store.save(_call(2, metadata={"m": {"nan": math.nan}}))).metadata["m"]["nan"]
    assert math.isnan(nan)


def test_a_namespace_given_again_changed_in_place_is_stored_as_it_is_now(store: Sql) -> None:
    # A recorder may hand every call the same mapping: the store encodes it once,
    # yet stores what it holds at each save (even 0 where it held False).
    entries: dict[str, Any] = {"dirty": False, "branch": "main"}
    saved = []
    for i, change in enumerate([{}, {}, {"dirty": 0}, {"branch": "dev"}, {"dirty": -0.0}]):
        entries.update(change)
        saved.append((store.save(_call(i, metadata={"git": entries})), dict(entries)))
    for key, expected in saved:
        loaded = store.load(key).metadata["git"]
        assert loaded == expected
        assert {n: type(v) for n, v in loaded.items()} == {n: type(v) for n, v in expected.items()}
    assert math.copysign(1.0, store.load(saved[-1][0]).metadata["git"]["dirty"]) == -1.0
    entries["dirty"] = True  # the same mapping under a name JSON cannot carry: typed
    key = store.save(_call(9, metadata={"git": entries, "g\x00it": entries}))
    assert store.load(key).metadata == {"git": entries, "g\x00it": entries}


def test_unknown_metadata_types_are_refused_at_save(store: Sql) -> None:
    class Opaque:
        pass

    with pytest.raises(SaveError, match=r"Opaque at metadata\['tags'\]\['obj'\]"):
        store.save(_call(1, metadata={"tags": {"obj": Opaque()}}))
    assert list(store.list()) == []


def test_a_cache_still_returns_the_result_when_metadata_is_refused(tmp_path: Path) -> None:
    from fleche import cache, fleche, tags

    @fleche
    def double(x: int) -> int:
        return 2 * x

    store = Sql(str(tmp_path / "calls.db"))
    with cache(Cache(ValueMemory(), store)), tags(obj=object()), pytest.warns(FlecheWarning):
        assert double(4) == 8
    assert list(store.list()) == []


# -- nothing read from the store is unpickled -------------------------------------


class _Trap:
    """Unpickling this creates ``path``: proof that a pickle from the store ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _plant(store: Sql, key: str, payload: bytes) -> None:
    with store.session() as connection:
        connection.execute(update(calls).where(calls.c.key == key).values(meta_extra=payload))


def test_a_crafted_pickle_in_the_store_never_runs(store: Sql, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    key = store.save(_call(1, metadata={"tags": {"project": "x"}}))
    _plant(store, key, pickle.dumps({"tags": {"evil": _Trap(marker)}}))
    cache = Cache(ValueMemory(), store)
    cache.values.save(1), cache.values.save("a")
    assert store.load(key).metadata == {"tags": {"project": "x"}}
    assert [r.key() for r in store.query(QueryCall(metadata={"tags": {"evil": 1}}))] == []
    assert len(list(store.query(QueryCall(metadata={"tags": {"project": "x"}})))) == 1
    assert store.result_of(key, "tags")[1] == {"project": "x"}
    report = verify(cache, fix=True)
    assert [(p.key, p.kind, p.fixed) for p in report.problems] == [(key, PICKLED_METADATA, False)]
    assert not marker.exists()
    store.convert_legacy_metadata(unpickle=False)  # dropped unread
    assert not marker.exists() and verify(cache).ok


def test_legacy_metadata_is_converted_only_on_request(store: Sql) -> None:
    key = store.save(_call(1, metadata={"tags": {"project": "x"}}))
    _plant(store, key, pickle.dumps({"tags": {"pair": (1, 2)}, 3: {"a": 1}}))
    assert store.load(key).metadata == {"tags": {"project": "x"}}
    assert store.convert_legacy_metadata(unpickle=True) == 1
    assert store.load(key).metadata == {"tags": {"project": "x", "pair": (1, 2)}, 3: {"a": 1}}
    assert store.audit() == [] and store.convert_legacy_metadata(unpickle=True) == 0


def test_a_schema_1_store_is_migrated_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    old = Sql(str(path))
    key = old.save(_call(1, metadata={"tags": {"project": "x"}}))
    _plant(old, key, pickle.dumps({"tags": {"pair": (1, 2)}}))
    with old.session() as connection:  # the layout of schema 1
        connection.exec_driver_sql("ALTER TABLE calls DROP COLUMN meta_typed")
        connection.exec_driver_sql("ALTER TABLE calls DROP COLUMN seal")
        connection.execute(update(schema).values(version=1))
    with pytest.warns(FlecheWarning, match="1 records whose metadata an older fleche pickled"):
        store = Sql(str(path))
    assert store.load(key).metadata == {"tags": {"project": "x"}}
    with store.session() as connection:
        assert connection.execute(select(schema.c.version)).scalar() == SCHEMA_VERSION
    again = store.load(store.save(_call(1, metadata={"tags": {"pair": (1, 2)}})))
    assert again.metadata == {"tags": {"pair": (1, 2)}} and store.audit() == []


# -- stale argument rows ------------------------------------------------------------


def _argument_rows(store: Sql) -> list[tuple[str, str]]:
    with store.session() as connection:
        rows = connection.execute(select(arguments.c.call_key, arguments.c.name)).all()
    return sorted(tuple(r) for r in rows)


def _deleted_by_hand(path: Path) -> tuple[Sql, str]:
    """A SQLite store whose one record was deleted in a plain ``sqlite3`` session (foreign keys off).

    The store's triggers take its argument rows with it.
    """
    store = Sql(str(path))
    key = store.save(_call(1))
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM calls WHERE key = ?", (key,))
    assert _argument_rows(store) == []
    return store, key


def test_a_record_deleted_by_hand_can_be_saved_again(tmp_path: Path) -> None:
    store, key = _deleted_by_hand(tmp_path / "calls.db")
    assert store.save(_call(1)) == key
    assert _argument_rows(store) == [(key, "x"), (key, "y")]
    assert [r.key() for r in store.query(QueryCall(arguments={"x": 1}))] == [key]


def test_rows_of_other_names_left_by_a_hand_deleted_record_are_dropped(tmp_path: Path) -> None:
    store, key = _deleted_by_hand(tmp_path / "calls.db")
    other = dataclasses.replace(_call(1), arguments={"x": 1, "z": 2}).digested()
    store.put(other, key)  # another record under the same key: ``y`` is not one of its names
    assert _argument_rows(store) == [(key, "x"), (key, "z")]
    assert list(store.query(QueryCall(arguments={"y": "a"}))) == []


def _orphan(store: Sql, key: str) -> None:
    """Leave the argument rows of ``key`` behind its deleted record, as a hand edit would."""
    if store.engine.dialect.name == "sqlite":
        with sqlite3.connect(store.engine.url.database) as connection:
            connection.execute("DROP TRIGGER fleche_index_removed")  # made again when reopened
            connection.execute("DELETE FROM calls WHERE key = ?", (key,))
        return
    with store.session() as connection:
        try:
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        except Exception:
            pytest.skip("the PostgreSQL test user may not switch foreign keys off")
        connection.execute(calls.delete().where(calls.c.key == key))


def test_verify_reports_and_removes_orphan_argument_rows(store: Sql) -> None:
    kept, gone = store.save(_call(1)), store.save(_call(2))
    cache = Cache(ValueMemory(), store)
    for value in (1, 2, "a"):
        cache.values.save(value)
    _orphan(store, gone)
    report = verify(cache)
    assert [(p.key, p.kind, p.fixed) for p in report.problems] == [(gone, ORPHAN_ARGUMENTS, False)]
    fixed = verify(cache, fix=True)
    assert [(p.key, p.fixed) for p in fixed.problems] == [(gone, True)]
    assert _argument_rows(store) == [(kept, "x"), (kept, "y")] and verify(cache).ok
    assert store.save(_call(2)) == gone


def test_no_warning_on_a_clean_store(store: Sql) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.save(_call(1, metadata={"tags": {"t": (1,)}}))
        assert store.audit() == []
