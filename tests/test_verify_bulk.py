"""Verify's bulk reads: every value file examined once, in one pass, as a load would."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings

import numpy as np
import pytest

from fleche import Cache, CorruptEntryWarning
from fleche.caches import verify_worker
from fleche.call import UNSTORED, Call
from fleche.digest import Digest, digest
from fleche.storage import CallMemory, Sql, ValuePickleFile

from .backends import corrupt_file, postgres_calls, sqlite_calls


def test_examine_many_gives_what_examine_gives(tmp_path):
    values = ValuePickleFile(tmp_path)
    keys = sorted(
        [values.save(i) for i in range(600)]
        + [values.save({"a": np.arange(3), "b": [1, 2]}), values.save([1, "y" * 300])]
    )
    assert list(values.examine_many(keys)) == [(key, values.examine(key)) for key in keys]


def test_examine_many_reports_each_failure_as_a_load_would(tmp_path):
    values = ValuePickleFile(tmp_path)
    keys = sorted(values.save(i) for i in range(600))
    torn, gone = keys[400], keys[500]
    corrupt_file(values, torn)
    os.unlink(values._path(gone))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = dict(values.examine_many(keys))
    assert [str(w.message) for w in caught if torn in str(w.message)] and len(caught) == 1
    assert type(found[torn]) is KeyError and type(found[gone]) is KeyError
    assert all(found[key] == (key, []) for key in keys if key not in (torn, gone))


def test_examine_many_skips_files_unchanged_since(tmp_path):
    values = ValuePickleFile(tmp_path)
    old, new = values.save("old"), values.save("new")
    os.utime(values._path(old), (1000.0, 1000.0))
    assert dict(values.examine_many([new, old], since=2000.0)) == {new: (new, []), old: None}


def test_verify_finds_damage_among_many_values(tmp_path):
    store = Cache(ValuePickleFile(tmp_path / "values"), CallMemory())
    keys = sorted(store.values.save(i) for i in range(1000))
    corrupt_file(store.values, keys[900])
    store.values.save(7, digest("not its key"))  # stored under a key its content does not match
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        report = store.verify()
    kinds = {p.key: p.kind for p in report.problems}
    assert kinds == {keys[900]: "corrupt value", digest("not its key"): "digest mismatch"}
    assert report.values == 1001


def test_verify_checks_each_record_of_a_page_of_many_sql_records(tmp_path):
    """Records read a page at a time: the sound ones in bulk, each problem still named by its key."""
    store = Cache(ValuePickleFile(tmp_path / "values"), Sql(url=str(tmp_path / "calls.db")))
    misfiled = Call("f", {"x": -2}, module="m", result=1).stash(store.values)
    store.calls.put(misfiled, digest("not its lookup key"))  # in the first page: read in bulk
    for x in range(1500):
        store.save(Call("f", {"x": x}, module="m", result=[x, x * 0.5]))
    store.save(Call("g", {"x": 1}, module="m", code=digest("its source"), version="2", result=1))
    unstored = Call("f", {"x": -1, "data": "kept by the user"}, module="m", result=1)
    unstored.metadata[UNSTORED] = {"arguments": ["data"]}
    store.save(unstored)
    store.values.evict(digest("kept by the user"))  # not stored with it: not missing either
    lost = Call("f", {"x": 1500}, module="m", result="lost")
    store.save(lost)
    store.values.evict(digest("lost"))
    report = store.verify()
    kinds = {p.key: p.kind for p in report.problems}
    assert kinds == {lost.key(): "missing value", digest("not its lookup key"): "misfiled record"}
    assert report.calls == 1504
    assert store.verify(since=time.time() + 60).problems == report.problems[:1]  # no key computed


@pytest.fixture
def helped(monkeypatch):
    """Verify's child process reading values even for a small store on one core, in chunks of 100."""
    monkeypatch.setattr(verify_worker, "MINIMUM", 0)
    monkeypatch.setattr(verify_worker, "SPARE", float("-inf"))
    monkeypatch.setattr(verify_worker, "CHUNK", 100)


def test_a_child_process_reading_values_finds_what_this_one_finds(tmp_path, helped):
    store = Cache(ValuePickleFile(tmp_path / "values"), Sql(url=str(tmp_path / "calls.db")))
    for x in range(400):
        store.save(Call("f", {"x": x}, module="m", result={"a": [x, "y" * 300]}))
    keys = sorted(store.values.list())
    corrupt_file(store.values, keys[10])
    store.values.save(7, digest("not its key"))
    helper = verify_worker.Helper.start(store.values, keys)
    answers = [found for _, found in helper.chunks_read() if found is not None]
    assert answers and all(keys[10] not in examined for examined, _ in answers)
    assert [keys[10]] in [again for _, again in answers]  # damaged: read again here
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning but the findings raised here
        helped_report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(keys) + 1 + 400,) * 2 and len(seen) == len(keys) + 1 + 400
    later = time.time() + 60  # every value unchanged since: none read (by this process alone)
    helped_since = store.verify(since=later)
    verify_worker.MINIMUM = 10**9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        alone = store.verify()
    assert helped_report.problems == alone.problems and helped_report.values == alone.values
    assert helped_since == dataclasses.replace(
        store.verify(since=later), started=helped_since.started
    )
    assert not [p for p in helped_since.problems if p.store == "values"]
    kinds = {p.kind for p in alone.problems}
    assert {"corrupt value", "digest mismatch"} <= kinds


@pytest.fixture(params=[sqlite_calls, postgres_calls], ids=["sqlite", "postgres"])
def small(request, tmp_path):
    """A value storage of files keeping entries of up to 100 bytes in a call database."""
    database = request.param(tmp_path)
    return ValuePickleFile(tmp_path / "values", database=database, inline_limit=100)


def _damage_row(values, key, stored=None) -> None:
    """Cut the bytes of the small entry of ``key`` short, its time of writing set to ``stored``."""
    table = values.database.small_values()
    written = table.stored_at(key)
    table.put(key, table.get(key)[:-3], replace=True)
    with values.database.session() as connection:
        connection.exec_driver_sql(
            f"UPDATE small_values SET stored = {stored or written} WHERE key = '{key}'"
        )


def test_examine_many_reads_the_small_values_of_a_call_database_by_range(small):
    keys = [small.save(i) for i in range(2500)] + [small.save("y" * 300), small.save({"a": [1]})]
    damaged = sorted(keys)[7]
    assert small.database.small_values().get(damaged) and not small._path(damaged).exists()
    _damage_row(small, damaged)
    sound = sorted(key for key in keys if key != damaged)
    expected = [(key, small.examine(key)) for key in sound]
    assert list(small.examine_many(sound)) == expected  # sorted: one range scan
    assert list(small.examine_many(sound[::-1])) == expected[::-1]  # any order: one by one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = dict(small.examine_many(sorted(keys)))
    assert type(found[damaged]) is KeyError and damaged in str(caught[0].message)


def test_verify_since_skips_small_values_unchanged_since(small):
    store = Cache(small, small.database)
    for x in range(3):
        store.save(Call("f", {"x": x}, module="m", result=[x]))
    _damage_row(small, digest([1]), stored=1000.0)  # damaged, its time set back: not a change
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        assert store.verify(since=2000.0).ok
        assert digest([1]) in {p.key for p in store.verify().problems}


def _steps_to_list(table, rows: int) -> int:
    """SQLite's steps (in hundreds) to list ``rows`` keys of ``table`` and to read them by range."""
    connection = table.runtime.handle().connection
    keys = [f"{n:032x}" for n in range(rows)]
    connection.execute("BEGIN")
    connection.execute("DELETE FROM small_values")
    connection.executemany("INSERT INTO small_values VALUES (?, x'00', 0)", [(k,) for k in keys])
    connection.execute("COMMIT")
    steps = [0]
    connection.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 100)
    try:
        prefix = keys[-1][:-3]
        assert list(table.keys()) == keys
        assert list(table.keys(prefix)) == [key for key in keys if key.startswith(prefix)]
        assert [row[0] for row in table.rows(keys[1], keys[-2])] == keys[1:-1]
    finally:
        connection.set_progress_handler(None, 0)
    return steps[0]


def test_small_values_are_listed_in_pages_that_each_start_where_the_last_ended(tmp_path):
    """Linear, not quadratic: SQLite seeks by one of a range's two lower bounds."""
    table = Sql(url=str(tmp_path / "calls.db")).small_values()
    few, many = _steps_to_list(table, 5_000), _steps_to_list(table, 20_000)
    assert many < 6 * few  # 4x the rows; from the start each page: 15x the steps


def test_a_child_process_reads_small_values_by_range_as_this_one_does(small, helped):
    store = Cache(small, small.database)
    for x in range(300):
        store.save(Call("f", {"x": x}, module="m", result=[x, "y" * 200 if x % 3 else x]))
    keys = sorted(small.list())
    damaged = next(key for key in keys if small.database.small_values().get(key))
    _damage_row(small, damaged)
    small.save(7, digest("not its key"))  # kept in the table under a key it does not digest to
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        helped_report = store.verify()
        verify_worker.MINIMUM = 10**9
        alone = store.verify()
    assert helped_report.problems == alone.problems and helped_report.values == alone.values
    kinds = {p.key: p.kind for p in alone.problems}
    assert kinds[damaged] == "corrupt value" and kinds[digest("not its key")] == "digest mismatch"


def test_a_page_of_keys_with_one_that_is_no_digest_is_refused_as_before(tmp_path):
    table = Sql(url=str(tmp_path / "calls.db")).small_values()
    connection = table.runtime.handle().connection
    keys = [f"{n:032x}" for n in range(5)]
    connection.executemany("INSERT INTO small_values VALUES (?, x'00', 0)", [(k,) for k in keys])
    assert list(table.keys()) == keys and all(type(key) is Digest for key in table.keys())
    connection.execute("INSERT INTO small_values VALUES (?, x'00', 0)", ("0" * 30 + " z",))
    with pytest.raises(ValueError, match="is not a digest"):
        list(table.keys())


def test_verify_since_finds_a_value_gone_or_a_row_damaged_since_in_records_checked_before(small):
    """Records created before ``since`` are not read whole, yet what changed under them is found."""
    store = Cache(small, small.database)
    lost, sealed = (Call("f", {"x": x}, module="m", result=str(x)) for x in (-2, -3))
    store.save(sealed)  # in the first page of rows, the lost one in the second
    for x in range(1500):
        store.save(Call("f", {"x": x}, module="m", result=[x]))
    unstored = Call("f", {"x": -1, "data": "kept by the user"}, module="m", result=1)
    unstored.metadata[UNSTORED] = {"arguments": ["data"]}
    store.save(unstored)
    store.values.evict(digest("kept by the user"))  # not stored with it: not missing either
    store.save(lost)
    assert store.verify().ok
    since = time.time()
    fresh = Call("f", {"x": -4}, module="m", result=[5])
    store.save(fresh)  # stored since: read whole
    store.values.evict(digest("-2"))  # a value gone since the last verify
    with small.database.session() as connection:  # rows changed in place
        for key in (sealed.key(), fresh.key()):
            connection.exec_driver_sql(
                f"UPDATE calls SET result = '{digest([6])}' WHERE key = '{key}'"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        report = store.verify(since=since)
    kinds = {p.key: p.kind for p in report.problems}
    damaged = {sealed.key(): "corrupt record", fresh.key(): "corrupt record"}
    assert kinds == {lost.key(): "missing value", **damaged}
    assert report.calls == 1504


def test_a_sql_store_splits_its_records_at_a_time(small):
    """What a verify of what changed reads: the references of the records before, the records since."""
    calls = small.database
    store = Cache(small, calls)
    store.save(Call("f", {"x": 1}, module="m", result=[1]))
    unstored = Call("f", {"x": -1, "data": "kept by the user"}, module="m", result=1)
    unstored.metadata[UNSTORED] = {"arguments": ["data"]}
    store.save(unstored)
    since = time.time()
    new = store.save(Call("f", {"x": 2}, module="m", result=[2]))
    settled, changed, unread = calls.split_since(since)
    keys, references = zip(*settled, strict=True)
    old = Call("f", {"x": 1}, module="m", result=[1])
    assert sum(keys, []) == [old.key()]
    assert sorted(sum(references, [])) == sorted([digest(1), digest([1])])
    assert {key for page in changed for key in page.keys} == {unstored.key(), new}
    assert unread == []  # every row read sound
    assert CallMemory().split_since(since) is None  # every record read
