"""Expiry, prune, history, gc with a grace period, and the size-limited cache.

Time is injected everywhere: nothing here sleeps.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fleche import Cache, CacheStack, Call, QueryCall, SizeLimitedCache, fleche
from fleche.caches import EXPIRY, expires_at
from fleche.digest import digest
from fleche.storage import CallMemory, ValueMemory

from .test_compositions import KINDS, Clock, make


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(kind: str, tmp_path: Path, clock: Clock) -> Cache:
    return make(kind, tmp_path / "store", clock)


def call(x, result=None, name="f", created=None) -> Call:
    extra = {} if created is None else {"created": created}
    return Call(name=name, module="tests", arguments={"x": x}, result=result, **extra)


# -- expiry ------------------------------------------------------------------------


def test_decorator_ttl_expires_calls(store, clock):
    runs = []

    @fleche(cache=store, ttl=datetime.timedelta(seconds=10))
    def slow(x):
        runs.append(x)
        return x * 10

    assert slow(1) == 10 and slow(1) == 10 and runs == [1]
    record = slow.record(1).digested_call
    assert record.metadata[EXPIRY]["ttl"] == 10.0
    assert expires_at(record) == pytest.approx(clock.now + 10)
    clock.now += 9
    assert slow.contains(1)
    clock.now += 2
    assert not slow.contains(1)
    with pytest.raises(KeyError):
        slow.load(1)
    assert slow.query().count() == 0 and store.query(expired=True).count() == 1
    assert slow(1) == 10 and runs == [1, 1]  # recomputed, stored with a new expiry
    assert slow.contains(1)


def test_cache_ttl_applies_to_calls_without_their_own(kind, tmp_path, clock):
    store = make(kind, tmp_path, clock)
    limited = Cache(store.values, store.calls, ttl=60, clock=clock)
    plain = limited.save(call(1, result=1))
    own = call(2, result=2)
    own = own.replace(metadata={EXPIRY: {"ttl": 5.0}})
    short = limited.save(own)
    clock.now += 10
    assert limited.contains(plain) and not limited.contains(short)
    # Another process opening the store without a ttl agrees: the expiry is in the record.
    assert not store.contains(short)
    clock.now += 60
    assert not store.contains(plain)


def test_prune_removes_expired_calls_then_gc_their_values(store, clock):
    @fleche(cache=store, ttl=5)
    def brief(x):
        return [x, "brief"]

    @fleche(cache=store)
    def lasting(x):
        return [x, "lasting"]

    brief(1), lasting(1)
    clock.now += 6
    expired = brief.digest(1)
    assert store.prune(dry_run=True) == [expired]
    assert store.contains(lasting.digest(1))
    assert store.prune() == [expired]
    assert store.query(expired=True).count() == 1
    removed = store.gc(grace=0)
    assert digest([1, "brief"]) in removed and digest(1) not in removed


def test_prune_by_age_and_function(store, clock):
    old = store.save(call(1, result=1, created=clock.now - 100))
    old_g = store.save(call(1, result=1, name="g", created=clock.now - 100))
    new = store.save(call(2, result=2, created=clock.now))
    assert set(store.prune(older_than=50, dry_run=True)) == {old, old_g}
    assert store.prune(older_than=datetime.timedelta(seconds=50), func="g") == [old_g]
    assert store.prune(func="tests.f") and not store.contains(old) and not store.contains(new)
    assert store.prune() == []  # nothing expired


def test_prune_by_decorated_function(store):
    @fleche(cache=store)
    def h(x):
        return x

    h(1), h(2)
    other = store.save(call(3, result=3))
    assert len(store.prune(func=h)) == 2 and store.contains(other)


def test_history_lists_calls_with_timestamps(store, clock):
    store.save(call(2, result=2, created=clock.now - 5))
    store.save(call(1, result=1, created=clock.now - 50))

    @fleche(cache=store, ttl=1)
    def brief(x):
        return x

    brief(3)
    clock.now += 2
    history = store.history()
    assert list(history["function"]) == ["tests.f", "tests.f", f"{brief.module}.{brief.name}"]
    assert history["created"].is_monotonic_increasing
    assert list(history["expired"]) == [False, False, True]
    assert history["expires"].isna().sum() == 2
    assert len(store.history(func="f")) == 2


def test_evict_everything_a_query_matches(store):
    for i in range(4):
        store.save(call(i, result=i, name="g" if i % 2 else "f"))
    assert store.query(QueryCall(name="g")).evict() == 2
    assert store.query().count() == 2


# -- gc --------------------------------------------------------------------------------


def test_gc_keeps_values_of_calls_in_flight(store):
    record = call(np.arange(5)).digested()
    prepared = store.prepare(record, {"x": np.arange(5)}, record.key())
    assert digest(np.arange(5)) not in store.gc(grace=0)
    assert store.values.contains(digest(np.arange(5)))
    prepared.commit("done")
    assert store.gc(grace=0) == set()


def test_gc_grace_period_protects_young_values_of_other_processes(kind, tmp_path, clock):
    if kind == "memory":
        pytest.skip("a memory store is private to its process: in-process pins protect it")
    store = make(kind, tmp_path, clock)
    orphan = store.values.save("written by a run still going elsewhere")
    assert store.gc() == set()  # younger than the default grace period
    assert store.gc(grace=datetime.timedelta(minutes=5)) == set()
    clock.now += 600
    assert store.gc(grace=300, dry_run=True) == {orphan}
    assert store.gc(grace=300) == {orphan}
    assert not store.values.contains(orphan)


# -- SizeLimitedCache ----------------------------------------------------------------------


def _limited(kind, root: Path, clock, max_bytes, policy="lru"):
    inner = make(kind, root, clock)
    index = None if kind == "memory" else root / "size-index.db"
    return SizeLimitedCache(inner, max_bytes=max_bytes, policy=policy, index=index, clock=clock)


def test_size_limit_evicts_least_recently_used(kind, tmp_path, clock):
    cache = _limited(kind, tmp_path, clock, max_bytes=3500)
    keys = []
    for i in range(3):
        clock.now += 1
        keys.append(cache.save(call(i, result=np.full(125, i, dtype=np.int64))))  # 1000 bytes each
    assert cache.total() <= 3500
    clock.now += 1
    cache.load_result(keys[0])  # now the most recently used
    clock.now += 1
    keys.append(cache.save(call(3, result=np.full(125, 3, dtype=np.int64))))
    assert cache.total() <= 3500
    assert [cache.contains(k) for k in keys] == [True, False, True, True]
    assert not cache.cache.values.contains(digest(np.full(125, 1, dtype=np.int64)))


def test_size_limit_fifo_ignores_reads(tmp_path, clock):
    cache = _limited("memory", tmp_path, clock, max_bytes=2500, policy="fifo")
    first = cache.save(call(0, result=np.zeros(125)))
    clock.now += 1
    second = cache.save(call(1, result=np.ones(125)))
    cache.load_result(first)
    clock.now += 1
    cache.save(call(2, result=np.full(125, 2.0)))
    assert not cache.contains(first) and cache.contains(second)


def test_size_limit_keeps_values_other_calls_still_use(kind, tmp_path, clock):
    cache = _limited(kind, tmp_path, clock, max_bytes=2500)
    shared = np.arange(125)  # 1000 bytes, the result of two calls
    a = cache.save(call(1, result=shared))
    clock.now += 1
    b = cache.save(call(2, result=shared))
    clock.now += 1
    parts = {"big": np.ones(50), "tag": "x" * 200}  # a container stored as children
    c = cache.save(call(3, result=parts))
    clock.now += 1
    cache.load_result(b)
    clock.now += 1
    d = cache.save(call(4, result=np.full(125, 4)))
    # a goes first but frees nothing b uses; c goes next, with its children.
    assert [cache.contains(k) for k in (a, b, c, d)] == [False, True, False, True]
    assert cache.load_result(b).tolist() == shared.tolist()
    assert not cache.cache.values.contains(digest(np.ones(50)))
    assert not cache.cache.values.contains(digest(parts))
    cache.evict(b)
    assert not cache.cache.values.contains(digest(shared))
    assert cache.cache.values.contains(digest(np.full(125, 4)))


def test_size_limit_decorator_path_and_in_flight_arguments(kind, tmp_path, clock):
    cache = _limited(kind, tmp_path, clock, max_bytes=3000)

    @fleche(cache=cache)
    def grow(x):
        return np.full(125, x)

    for i in range(6):
        clock.now += 1
        grow(i)
    assert cache.total() <= 3000
    assert not grow.contains(0) and grow.contains(5)
    record = call(np.arange(300)).digested()
    prepared = cache.prepare(record, {"x": np.arange(300)}, record.key())
    for i in range(6, 9):
        clock.now += 1
        grow(i)
    assert cache.cache.values.contains(digest(np.arange(300)))
    prepared.abandon()


def test_size_index_survives_a_restart_without_reading_records(kind, tmp_path, clock):
    if kind == "memory":
        pytest.skip("a memory store does not outlive its process")
    cache = _limited(kind, tmp_path, clock, max_bytes=10_000)
    for i in range(5):
        cache.save(call(i, result=np.full(125, i)))
    total = cache.total()
    reopened = _limited(kind, tmp_path, clock, max_bytes=10_000)
    loads = []
    original = type(reopened.cache.calls).load
    type(reopened.cache.calls).load = lambda self, key: (loads.append(key), original(self, key))[1]
    try:
        assert reopened.total() == total
        reopened.save(call(9, result=np.full(125, 9)))
    finally:
        type(reopened.cache.calls).load = original
    assert loads == []


def test_size_limit_registers_calls_stored_behind_its_back(tmp_path, clock):
    inner = Cache(ValueMemory(), CallMemory(), clock=clock)
    before = inner.save(call(0, result=np.zeros(125)))
    cache = SizeLimitedCache(inner, max_bytes=1500, clock=clock)
    assert cache.total() == 0  # nothing is read on start
    cache.load_result(before)
    cache.flush()
    assert cache.total() >= 1000
    clock.now += 1
    cache.save(call(1, result=np.ones(125)))
    assert not cache.contains(before)


def test_size_limited_memory_in_front_of_a_store(tmp_path, clock):
    disk = make("sqlite", tmp_path, clock)
    memory = SizeLimitedCache(
        Cache(ValueMemory(), CallMemory(), clock=clock), max_bytes=2500, clock=clock
    )
    stack = CacheStack([memory, disk])

    @fleche(cache=stack)
    def grow(x):
        return np.full(125, x)

    for i in range(5):
        clock.now += 1
        grow(i)
    assert memory.total() <= 2500
    assert all(disk.contains(grow.digest(i)) for i in range(5))
    assert grow(0).tolist() == [0] * 125  # back from disk, into memory again
    assert memory.contains(grow.digest(0))


def test_bad_size_limits_are_rejected():
    inner = Cache(ValueMemory(), CallMemory())
    with pytest.raises(ValueError, match="policy"):
        SizeLimitedCache(inner, max_bytes=10, policy="random")
    with pytest.raises(ValueError, match="max_bytes"):
        SizeLimitedCache(inner, max_bytes=-1)
    with pytest.raises(TypeError):
        SizeLimitedCache(CacheStack([inner]), max_bytes=10)


def test_stored_at_is_the_write_time(tmp_path):
    store = make("pickle", tmp_path, None)
    key = store.values.save("x")
    assert abs(store.values.stored_at(key) - time.time()) < 60
    assert store.values.stored_at(digest("never stored")) is None
    assert os.path.isdir(tmp_path / "values")


def _fill(cache: SizeLimitedCache, worker: int) -> None:
    """A worker process: stores 20 calls of 1000 bytes each through the shared size limit."""
    for i in range(20):
        cache.save(call(worker * 100 + i, result=np.full(125, worker * 100 + i, dtype=np.int64)))


def test_size_limit_shared_by_processes(tmp_path):
    import multiprocessing

    cache = _limited("sqlite", tmp_path, time.time, max_bytes=8000)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill, args=(cache, w)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    reopened = _limited("sqlite", tmp_path, time.time, max_bytes=8000)
    assert 0 < reopened.total() <= 8000
    stored = list(reopened.cache.query())
    assert 0 < len(stored) <= 8
    assert all(c.result.tolist() == [c.arguments["x"]] * 125 for c in stored)


# -- leftovers of killed writers (issue 11, item 8) -------------------------------------------


def _leftovers(root: Path, age: float) -> dict[str, Path]:
    """What killed writers leave in a store, last touched ``age`` seconds ago."""
    from fleche import open_cache

    store = open_cache({"template": "pickle", "root": str(root)})
    store.save(Call(name="f", module="m", arguments={"x": 1}, result=2))
    value_dir = next(p.parent for p in (root / "values").rglob("*") if p.is_file())
    made = {
        "temporary": value_dir / f".{'a' * 29}.0123456789ab0.tmp",
        "lock": value_dir / ".abc.h5.lock",
        "busy lock": value_dir / ".abd.h5.lock",  # not empty: kept (not a leftover lock)
        "lease aside": root / "calls" / "leases" / f"{'b' * 32}.0a0b0c0d0e0f.stale",
    }
    for name, path in made.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000 if name != "lock" else b"")
        if name == "busy lock":
            path.write_bytes(b"1")
        os.utime(path, (time.time() - age, time.time() - age))
    return made


def test_gc_removes_old_temporaries_and_empty_lock_files_and_verify_reports_them(tmp_path):
    from fleche import open_cache
    from fleche.cli import main

    made = _leftovers(tmp_path / "store", age=2 * 3600)
    report = open_cache(str(tmp_path / "store")).verify()
    reported = {p.detail.split(" ")[0] for p in report.by_kind("stale temporary file")}
    assert reported == {str(made[k]) for k in ("temporary", "lock", "lease aside")}
    assert main(["--cache", str(tmp_path / "store"), "gc", "--dry-run"]) == 0
    assert all(path.exists() for path in made.values())
    assert main(["--cache", str(tmp_path / "store"), "gc"]) == 0
    assert [name for name, path in made.items() if path.exists()] == ["busy lock"]
    assert open_cache(str(tmp_path / "store")).verify().ok


def test_gc_keeps_young_temporaries_of_writers_still_running(tmp_path):
    from fleche import open_cache
    from fleche.cli import main

    made = _leftovers(tmp_path / "store", age=60)
    assert open_cache(str(tmp_path / "store")).verify().ok
    assert main(["--cache", str(tmp_path / "store"), "gc"]) == 0
    assert all(path.exists() for path in made.values())
