"""Verifying a store: every problem reported with its key; repairs only on request, only the broken."""

from __future__ import annotations

import gc
import os
import threading
import warnings

import numpy as np
import pytest

from fleche import Cache, Call, CorruptEntryWarning, cache, fleche
from fleche.digest import digest
from fleche.storage import CallMemory, CallPickleFile, Sql, ValueMemory, ValuePickleFile

from .backends import BACKENDS


def build(backend, root) -> Cache:
    """A cache over one conformance-suite backend (memory for a half it lacks)."""
    # Collect the stores of earlier tests now: an SQL engine freed by the cyclic
    # collector inside a strict verify() below warns of its open connection there.
    gc.collect()
    values = backend.values(root / "values") if backend.values else ValueMemory()
    calls = backend.calls(root / "calls") if backend.calls else CallMemory()
    return Cache(values, calls)


def fill(store: Cache):
    """Three calls: a scalar, a destructured container with an array, and a shared argument."""

    @fleche()
    def run(x, table=None):
        return {"sum": np.arange(x, dtype=float), "label": f"run {x}", "rows": [x, "y" * 300]}

    with cache(store):
        run(3)
        run(4, table=[1, 2, 3])
        run(5, table=[1, 2, 3])
    return run


def keys(store: Cache) -> tuple[set, set]:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", CorruptEntryWarning
        )  # verify reports them; here we only list
        return set(store.values.list()), set(store.calls.list())


@pytest.fixture(params=BACKENDS, ids=str)
def store(request, tmp_path) -> Cache:
    return build(request.param, tmp_path)


def test_a_sound_store_verifies_clean(store):
    fill(store)
    seen = []
    report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.ok, str(report)
    values, calls = keys(store)
    assert (report.values, report.calls) == (len(values), len(calls)) == (report.values, 3)
    assert seen[-1] == (len(values) + 3, len(values) + 3) and len(seen) == len(values) + 3
    assert "no problems" in str(report)


def test_a_deleted_referenced_value(store):
    run = fill(store)
    with cache(store):
        record = run.record(3).digested_call
    store.values.evict(record.arguments["x"])
    before = keys(store)

    report = store.verify()
    (problem,) = report.problems
    assert (problem.store, problem.key, problem.kind) == ("calls", record.key(), "missing value")
    assert record.arguments["x"][:12] in problem.detail and "argument 'x'" in problem.detail
    assert keys(store) == before  # reporting changes nothing

    fixed = store.verify(fix=True)
    assert fixed.fixed == (fixed.problems[0],) and fixed.problems[0].fixed
    values, calls = keys(store)
    assert values == before[0] and calls == before[1] - {record.key()}
    assert store.verify().ok


def test_a_missing_part_of_a_container(store):
    run = fill(store)
    with cache(store):
        record = run.record(4, table=[1, 2, 3]).digested_call
    parts = list(store.values.children(record.result))
    assert parts, "the result is destructured into parts"
    store.values.evict(parts[0])
    report = store.verify()
    kinds = {(p.store, p.key): p.kind for p in report.problems}
    assert kinds == {
        ("values", record.result): "missing part",
        ("calls", record.key()): "broken value",
    }

    store.verify(fix=True)
    values, calls = keys(store)
    assert record.result not in values and record.key() not in calls
    assert set(parts[1:]) <= values  # the sound parts stay (gc collects them later)
    assert len(calls) == 2 and store.verify().ok


FILE_BACKENDS = [b for b in BACKENDS if b.corrupt is not None]


@pytest.mark.parametrize("backend", FILE_BACKENDS, ids=str)
def test_a_corrupt_value_file(backend, tmp_path):
    store = build(backend, tmp_path)
    run = fill(store)
    with cache(store):
        record = run.record(3).digested_call
    backend.corrupt(store.values, record.result)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verify turns corrupt-entry warnings into findings
        report = store.verify()
    found = {(p.store, p.key): p for p in report.problems}
    if ("values", None) in found:
        # A shared file holding several entries (grouped HDF5) cannot even be listed:
        # its entries read as missing, and the records that need them are reported.
        assert found[("values", None)].kind == "unreadable entries"
        assert found[("calls", record.key())].kind == "missing value"
    else:
        assert found[("values", record.result)].kind == "corrupt value"
        assert found[("calls", record.key())].kind == "broken value"
        assert len(found) == 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.verify(fix=True)
    values, calls = keys(store)
    assert record.result not in values and record.key() not in calls
    with cache(store), warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)  # a grouped file is set aside on write
        run(3)  # computed and stored again
    assert store.verify().ok


@pytest.mark.parametrize("backend", FILE_BACKENDS, ids=str)
def test_a_corrupt_record_file(backend, tmp_path):
    store = build(backend, tmp_path)
    run = fill(store)
    with cache(store):
        key = run.digest(5, table=[1, 2, 3])
    try:
        backend.corrupt(store.calls, key)
    except AttributeError:
        pytest.skip(f"{backend} can damage its value files only")
    problems = store.verify().problems
    if problems[0].key is None:  # a shared file (grouped HDF5): its records cannot be listed
        assert [(p.store, p.kind) for p in problems] == [("calls", "unreadable entries")]
        assert not problems[0].fixable
    else:
        (problem,) = problems
        assert (problem.store, problem.key, problem.kind) == ("calls", key, "corrupt record")
        store.verify(fix=True)
        assert key not in set(store.calls.list()) and store.verify().ok


def signed(tmp_path, secret="lab-key") -> Cache:
    return Cache(
        ValuePickleFile(root=tmp_path / "values", secret_key=secret),
        CallPickleFile(root=tmp_path / "calls", secret_key=secret),
    )


def test_a_tampered_signed_file(tmp_path):
    store = signed(tmp_path)
    run = fill(store)
    with cache(store):
        record = run.record(3).digested_call
    path = store.values._path(record.arguments["x"])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the payload: the signature no longer matches
    path.write_bytes(bytes(data))

    report = store.verify()
    found = {(p.store, p.key): p for p in report.problems}
    bad = found[("values", record.arguments["x"])]
    assert bad.kind == "corrupt value" and "signature" in bad.detail.lower()
    assert found[("calls", record.key())].kind == "broken value"
    store.verify(fix=True)
    assert store.verify().ok


def test_a_file_signed_with_an_unknown_key(tmp_path):
    store = signed(tmp_path / "ours")
    foreign = signed(tmp_path / "theirs", secret="someone-else")
    key = store.values.save(np.arange(5))
    foreign.values.save(np.arange(5))
    store.values._path(key).write_bytes(foreign.values._path(key).read_bytes())
    (problem,) = store.verify().problems
    assert (problem.key, problem.kind) == (key, "corrupt value")


def test_a_value_changed_in_place_is_a_mismatch():
    store = Cache(ValueMemory(), CallMemory())
    run = fill(store)
    with cache(store):
        result = run(3)
        result["sum"][0] = 99.0  # the memory store hands out the stored object itself
        record = run.record(3).digested_call
    report = store.verify()
    kinds = {p.kind for p in report.problems}
    assert "digest mismatch" in kinds
    mismatch = report.by_kind("digest mismatch")
    assert all(p.fixable for p in mismatch)
    store.verify(fix=True)
    assert record.key() not in set(store.calls.list())
    assert store.verify().ok


def test_systematic_mismatches_are_kept():
    # Every value under a key its content does not match: the digest rules changed, not the data.
    values = ValueMemory()
    for i in range(12):
        values.save(i, digest(("old scheme", i)))
    store = Cache(values, CallMemory())
    report = store.verify(fix=True)
    assert len(report.problems) == 12 and not report.fixed
    assert all(p.kind == "digest mismatch" and not p.fixable for p in report.problems)
    assert "digest rules changed" in report.problems[0].detail
    assert len(list(values.list())) == 12


class NoRule:
    """No digest rule (its state holds a lock): a value of this type cannot be re-digested."""

    def __init__(self, x):
        self.x = x
        self.guard = threading.Lock()


def test_an_unverifiable_value_is_reported_and_kept():
    store = Cache(ValueMemory(), CallMemory())
    key = store.values.save(NoRule(1), digest("made up"))
    (problem,) = store.verify(fix=True).problems
    assert (problem.key, problem.kind, problem.fixable, problem.fixed) == (
        key,
        "unverifiable value",
        False,
        False,
    )
    assert store.values.contains(key)


def test_a_misfiled_record_is_reported_and_kept(store):
    fill(store)
    record = Call(name="f", module="m", arguments={}, result=None).digested()
    store.values.save(None)
    wrong = digest("not the lookup key")
    store.calls.put(record, wrong)
    (problem,) = store.verify(fix=True).problems
    assert (problem.key, problem.kind, problem.fixed) == (wrong, "misfiled record", False)
    assert "transform" in problem.detail
    assert wrong in set(store.calls.list())


def test_fix_removes_only_the_broken(tmp_path):
    store = Cache(ValuePickleFile(root=tmp_path / "v"), CallPickleFile(root=tmp_path / "c"))
    run = fill(store)
    with cache(store):
        broken = run.record(3).digested_call
        sound = [
            run.record(4, table=[1, 2, 3]).digested_call,
            run.record(5, table=[1, 2, 3]).digested_call,
        ]
    store.values.evict(broken.result)
    values, calls = keys(store)
    report = store.verify(fix=True)
    assert {p.key for p in report.fixed} == {broken.key()}
    assert keys(store) == (values, calls - {broken.key()})
    with cache(store):
        for record in sound:
            assert store.load_result(record.key()) is not None


def test_report_text_lists_each_problem(store):
    run = fill(store)
    with cache(store):
        record = run.record(3).digested_call
    store.values.evict(record.result)
    text = str(store.verify())
    assert "1 problem" in text and record.key()[:12] in text and "missing value" in text


def test_missing_values_are_kept_when_no_referenced_value_is_listed():
    # The values of these calls live elsewhere (another layout, a lost mount): removing
    # the records would lose them, even when too few to look systematic.
    values, calls = ValueMemory(), CallMemory()
    with cache(Cache(ValueMemory(), calls)):  # the values went to another storage

        @fleche
        def square(x):
            return x * x

        square(3)
    values.save("something unrelated")
    store = Cache(values, calls)
    (problem,) = store.verify(fix=True).problems
    assert problem.kind == "missing value" and not problem.fixable and not problem.fixed
    assert "lists no value any record refers to" in problem.detail
    assert len(list(calls.list())) == 1


def test_verify_since_rereads_only_values_written_after(tmp_path):
    store = Cache(ValuePickleFile(tmp_path / "values"), CallMemory())
    run = fill(store)
    with cache(store):
        old = run.record(3).digested_call
    first = store.verify()
    assert first.ok and first.started is not None
    path = store.values._path(old.result)
    stamp = path.stat().st_mtime
    path.write_bytes(b"garbage")  # damaged in place, its time set back: not a change since
    os.utime(path, (stamp, stamp))
    with cache(store):
        run(6)
        new = run.record(6).digested_call
    path = store.values._path(new.result)
    path.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        since = store.verify(since=first.started)
        full = store.verify()
    assert {p.key for p in since.problems if p.store == "values"} == {new.result}
    assert {p.key for p in full.problems if p.store == "values"} == {old.result, new.result}
    store.values.evict(new.arguments["x"])  # records and their references are always checked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        since = store.verify(since=first.started)
    assert ("calls", new.key()) in {(p.store, p.key) for p in since.problems}
    assert since.values == full.values - 1  # every value is counted, checked or not


def test_verify_reads_records_in_bulk_and_alone_when_damaged(tmp_path):
    store = Cache(ValueMemory(), Sql(url=str(tmp_path / "calls.db")))
    run = fill(store)
    with cache(store):
        damaged = run.record(4, table=[1, 2, 3]).key()
    with store.calls.session() as connection:
        connection.exec_driver_sql(f"UPDATE calls SET seal = 'x' WHERE key = '{damaged}'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        report = store.verify()
    assert [(p.store, p.key, p.kind) for p in report.problems] == [
        ("calls", damaged, "corrupt record")
    ]
    assert report.calls == 3


def test_verify_since_last_checks_what_changed_since_the_last_verify(tmp_path):
    store = Cache(ValuePickleFile(tmp_path / "values"), CallMemory())
    run = fill(store)
    with cache(store):
        old = run.record(3).digested_call
    path = store.values._path(old.result)
    assert store.verify(since_last=True).ok  # none recorded yet: everything is read
    stamp = path.stat().st_mtime
    path.write_bytes(b"garbage")  # damaged in place, its time set back: not a change
    os.utime(path, (stamp, stamp))
    with cache(store):
        run(6)
        new = run.record(6).digested_call
    store.values._path(new.result).write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        changed = Cache(ValuePickleFile(tmp_path / "values"), store.calls).verify(since_last=True)
        again = store.verify(since_last=True)  # the last verify is the one just done
        full = store.verify()
    assert {p.key for p in changed.problems if p.store == "values"} == {new.result}
    assert not {p.key for p in again.problems if p.store == "values"}
    assert {p.key for p in full.problems if p.store == "values"} == {old.result, new.result}
