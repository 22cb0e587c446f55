"""Small values kept in the call database (storage/small_values.py), through the public API."""

from __future__ import annotations

import json
import os
import threading
import warnings

import numpy as np
import pytest

from fleche import Call, cache, fleche, from_config
from fleche.caches.core import prepare_committed_here
from fleche.digest import digest
from fleche.errors import CorruptEntryWarning
from fleche.storage import Sql, ValuePickleFile
from fleche.storage.small_values import INLINE_LIMIT
from fleche.store_layout import MANIFEST


def _value_files(root) -> list[str]:
    return [n for _, _, names in os.walk(root / "values") for n in names if len(n) == 29]


def test_a_small_miss_writes_no_value_file_and_a_large_one_does(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    assert store.values.inline_limit == INLINE_LIMIT and store.values.database is store.calls
    double = fleche(cache=store)(lambda x: x * 2)
    assert double(21) == 42
    assert _value_files(tmp_path) == []
    assert double(21) == 42 and store.load_value(digest(42)) == 42
    big = np.arange(10_000.0)
    assert np.array_equal(double(big), big * 2)
    assert len(_value_files(tmp_path)) == 2  # the array argument and the array result
    assert set(store.values.list()) >= {digest(21), digest(42), digest(big)}
    assert store.values.expand(str(digest(21))[:8]) == digest(21)


def test_the_values_of_a_miss_are_committed_with_its_record(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    seen = []

    def body(x):  # another process's view, while the call runs
        other = from_config({"template": "sql", "root": str(tmp_path)})
        seen.append((other.values.contains(digest(x)), other.contains(keyed.digest(x))))
        return x + 1

    keyed = fleche(cache=store)(body)
    commits = store.calls._runtime().commits
    keyed(7)
    assert seen == [(False, False)]  # held for the record's transaction
    assert store.calls._runtime().commits == commits + 1  # one transaction for the miss
    other = from_config({"template": "sql", "root": str(tmp_path)})
    assert other.load(keyed.digest(7)).result == 8 and other.load_value(digest(8)) == 8
    assert other.load_value(digest(7)) == 7


def test_a_prepared_call_stores_its_arguments_at_once(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    prepared = store.prepare(Call(name="succ", module="tests", arguments={"x": 5}))
    other = from_config({"template": "sql", "root": str(tmp_path)})
    assert other.values.contains(digest(5))  # as documented: a remote server relies on it
    prepared.abandon()


def test_a_call_prepared_to_be_committed_elsewhere_carries_its_arguments(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    call = Call(name="succ", module="tests", arguments={"x": 5})
    record = call.digested()
    prepared = prepare_committed_here(store, record, call.arguments, record.key())
    other = from_config({"template": "sql", "root": str(tmp_path)})
    assert not other.values.contains(digest(5))
    worker = threading.Thread(target=prepared.commit, args=(6,))
    worker.start()
    worker.join()
    loaded = other.load(prepared.key)
    assert loaded.arguments == {"x": 5} and loaded.result == 6


def test_a_call_prepared_in_one_thread_and_committed_in_another_is_whole(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    prepared = store.prepare(Call(name="succ", module="tests", arguments={"x": 5}))
    worker = threading.Thread(target=prepared.commit, args=(6,))
    worker.start()
    worker.join()
    other = from_config({"template": "sql", "root": str(tmp_path)})
    call = other.load(prepared.key)
    assert call.arguments == {"x": 5} and call.result == 6


def test_a_failed_call_leaves_no_record_and_the_next_miss_stores_its_values(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})

    @fleche(cache=store)
    def fails(x):
        if x < 0:
            raise ValueError(x)
        return x

    with pytest.raises(ValueError):
        fails(-1)
    assert not store.values.contains(digest(-1))  # held for a record that never came
    assert fails(3) == 3
    assert not store.contains(fails.digest(-1))
    assert store.load_value(digest(3)) == 3


def test_a_store_made_before_keeps_its_values_in_files(tmp_path):
    old = from_config({"template": "sql", "root": str(tmp_path), "inline_limit": 0})
    fleche(cache=old)(lambda x: x)(1)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["fleche_store"] == 1 and manifest["inline_limit"] == 0  # older fleche reads it
    (tmp_path / MANIFEST).unlink()  # a store from before manifests: recognised by its content
    reopened = from_config({"template": "sql", "root": str(tmp_path)})
    assert reopened.values.inline_limit == 0
    fleche(cache=reopened)(lambda x: x)(2)
    assert len(_value_files(tmp_path)) == 2
    assert reopened.load_value(digest(1)) == 1


def test_a_new_store_records_that_older_fleche_cannot_read_it(tmp_path):
    from_config({"template": "sql", "root": str(tmp_path)})
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest == {"fleche_store": 2, "inline_limit": INLINE_LIMIT, "template": "sql"}
    assert (
        from_config({"template": "sql", "root": str(tmp_path)}).values.inline_limit == INLINE_LIMIT
    )


def test_values_kept_either_way_read_the_same(tmp_path):
    database = Sql(url=str(tmp_path / "calls.db"))
    inline = ValuePickleFile(tmp_path / "values", database=database, inline_limit=INLINE_LIMIT)
    files = ValuePickleFile(tmp_path / "values")
    in_files = files.save("in a file")
    in_table = inline.save("in the table")
    assert inline.load(in_files) == "in a file" and inline.load(in_table) == "in the table"
    assert inline.save("in a file") == in_files  # also kept in the table now: listed once
    assert sorted(inline.list()) == sorted({in_files, in_table})
    inline.evict(in_files)
    assert not inline.contains(in_files)
    with pytest.raises(KeyError):
        files.load(in_files)


def test_gc_spares_a_small_value_used_again_after_it_looked(tmp_path):
    database = Sql(url=str(tmp_path / "calls.db"))
    values = ValuePickleFile(tmp_path / "values", database=database, inline_limit=INLINE_LIMIT)
    key = values.save(5)
    written = values.stored_at(key)
    assert not values.evict_unused(key, horizon=written - 1)  # stored again after the horizon
    assert values.load(key) == 5
    assert values.evict_unused(key, horizon=written + 1)
    assert not values.contains(key)


def test_a_damaged_small_value_is_a_miss_that_verify_finds_and_a_save_repairs(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    square = fleche(cache=store)(lambda x: x * x)
    square(9)
    table = store.calls.small_values()
    table.put(digest(81), table.get(digest(81))[:-3], replace=True)
    report = store.verify()
    assert digest(81) in {problem.key for problem in report.problems}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert square(9) == 81  # computed again
    assert any(issubclass(w.category, CorruptEntryWarning) for w in caught)
    assert store.load_value(digest(81)) == 81  # rewritten


def test_a_damaged_small_argument_is_repaired_by_a_call_that_is_committed(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    table = store.calls.small_values()
    store.values.save(7)
    table.put(digest(7), table.get(digest(7))[:-3], replace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(KeyError):
            store.load_value(digest(7))  # found damaged: the next save replaces it

    @fleche(cache=store)
    def fails_once(x, fail):
        if fail:
            raise ValueError(x)
        return x

    with pytest.raises(ValueError):
        fails_once(7, True)  # its repair was collected, and dropped with the call
    assert fails_once(7, False) == 7
    assert store.load_value(digest(7)) == 7  # repaired by the call that was committed


def test_a_signed_store_refuses_an_unsigned_row(tmp_path, monkeypatch):
    table = {"template": "sql", "root": str(tmp_path)}
    with cache(from_config(table)):
        fleche(lambda x: [x, x])(1)
    monkeypatch.setenv("FLECHE_SECRET_KEY", "k")  # a reader that only trusts signed entries
    reader = from_config(table)
    with pytest.warns(CorruptEntryWarning, match="unsigned"), pytest.raises(KeyError):
        reader.load_value(digest([1, 1]))


def test_to_config_names_the_database_of_a_storage_standing_alone(tmp_path):
    database = Sql(url=str(tmp_path / "calls.db"))
    values = ValuePickleFile(tmp_path / "values", database=database, inline_limit=100)
    key = values.save("x")
    table = values.to_config()
    assert table["database"] == {"type": "Sql", "url": str(tmp_path / "calls.db")}
    rebuilt = from_config({"values": table, "calls": {"type": "memory"}}).values
    assert rebuilt.load(key) == "x" and rebuilt.inline_limit == 100


def test_compress_all_rewrites_small_values_where_they_are(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    key = store.values.save("x" * 500)
    assert store.values.compress_all() == 1
    row = store.calls.small_values().get(key)
    assert len(row) < 100 and _value_files(tmp_path) == []  # compressed, still a row
    assert store.values.load(key) == "x" * 500
    store.values.decompress_all()
    assert len(store.calls.small_values().get(key)) > 500
