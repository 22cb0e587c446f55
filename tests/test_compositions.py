"""Compositions of caches: stacks, pools, read-only, filtered, refreshing, transfer.

Each runs against a memory store and persistent ones (pickle files, and
pickle values with SQLite calls).
"""

from __future__ import annotations

import pickle
import threading
import time
import warnings
from pathlib import Path

import pytest

from fleche import (
    Cache,
    CacheBase,
    CachePool,
    CacheStack,
    CacheWarning,
    Call,
    FilteredCache,
    QueryCall,
    ReadOnlyCache,
    ReadOnlyError,
    RefreshingCache,
    fleche,
)
from fleche.caches import WrapperCache
from fleche.storage import CallMemory, CallPickleFile, Sql, ValueMemory, ValuePickleFile

KINDS = ["memory", "pickle", "sqlite"]


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make(kind: str, root: Path, clock: Clock | None = None) -> Cache:
    options = {} if clock is None else {"clock": clock}
    if kind == "memory":
        return Cache(ValueMemory(), CallMemory(), **options)
    if kind == "pickle":
        return Cache(
            ValuePickleFile(root=root / "values"), CallPickleFile(root=root / "calls"), **options
        )
    return Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")), **options)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Cache:
    return make(kind, tmp_path / "store")


def call(x, result=None, name: str = "f") -> Call:
    return Call(name=name, module="tests", arguments={"x": x}, result=result)


class Counting(WrapperCache):
    """Counts the saves that reach the wrapped cache."""

    def __init__(self, cache: CacheBase) -> None:
        super().__init__(cache)
        object.__setattr__(self, "saves", [])

    def save(self, call):
        self.saves.append(call.key())
        time.sleep(0.01)  # widen the window in which concurrent readers could copy it too
        return super().save(call)


class Flaky(WrapperCache):
    """Raises ``OSError`` on every operation while ``broken`` is set (a database that went down)."""

    def __init__(self, cache: CacheBase) -> None:
        super().__init__(cache)
        object.__setattr__(self, "broken", [False])

    def _check(self):
        if self.broken[0]:
            raise OSError("database is down")

    def load(self, key):
        self._check()
        return super().load(key)

    def load_result(self, key):
        self._check()
        return super().load_result(key)

    def contains(self, key):
        self._check()
        return super().contains(key)

    def save(self, call):
        self._check()
        return super().save(call)

    def prepare(self, record, arguments, key):
        self._check()
        return super().prepare(record, arguments, key)


# -- the wrapper base --------------------------------------------------------------


def test_wrapper_forwards_every_operation_by_name():
    abstract = {
        name
        for name in dir(CacheBase)
        if getattr(getattr(CacheBase, name), "__isabstractmethod__", False)
    }
    assert abstract >= {"save", "prepare", "load", "query", "expand"}
    # these have derived defaults, but the inner cache may do better
    assert abstract | {"load_result", "now", "referenced", "gc"} <= set(vars(WrapperCache))
    assert "__getattr__" not in vars(WrapperCache) and "__getattribute__" not in vars(WrapperCache)


def test_wrappers_pickle_by_their_fields(store):
    wrapped = ReadOnlyCache(store)
    assert pickle.loads(pickle.dumps(wrapped)) == wrapped
    stack = CacheStack([Cache(ValueMemory(), CallMemory()), store], retry_after=5)
    clone = pickle.loads(pickle.dumps(stack))
    assert clone == stack and clone.retry_after == 5


# -- CacheStack ----------------------------------------------------------------------


def test_stack_reads_top_down_and_back_fills(store):
    top = Cache(ValueMemory(), CallMemory())
    stack = CacheStack([top, store])
    key = store.save(call([1, 2], result={"sum": 3}))
    assert not top.contains(key)
    assert stack.load_result(key) == {"sum": 3}
    assert top.contains(key) and top.load(key).arguments["x"] == [1, 2]
    assert stack.load(key).result == {"sum": 3}


def test_stack_back_fills_once_with_concurrent_readers(store):
    top = Counting(Cache(ValueMemory(), CallMemory()))
    stack = CacheStack([top, store])
    key = store.save(call(7, result=49))
    barrier = threading.Barrier(8)
    results = []

    def read():
        barrier.wait()
        results.append(stack.load_result(key))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [49] * 8
    assert top.saves == [key]


def test_stack_saves_to_every_writable_layer(store):
    top = Cache(ValueMemory(), CallMemory())
    stack = CacheStack([top, store])
    runs = []

    @fleche(cache=stack)
    def square(x):
        runs.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9 and runs == [3]
    key = square.digest(3)
    assert top.contains(key) and store.contains(key)
    assert stack.query().count() == 1  # each call once, though two layers hold it
    assert stack.shrink(key) and stack.expand(stack.shrink(key)) == key
    stack.evict(key)
    assert not top.contains(key) and not store.contains(key)


def test_stack_keeps_serving_when_a_layer_fails_and_warns_once(store):
    clock = Clock()
    top = Cache(ValueMemory(), CallMemory())
    lower = Flaky(store)
    stack = CacheStack([top, lower], retry_after=30, clock=clock)
    runs = []

    @fleche(cache=stack)
    def twice(x):
        runs.append(x)
        return 2 * x

    lower.broken[0] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [twice(i) for i in (1, 2, 1, 3, 2)] == [2, 4, 2, 6, 4]
    assert runs == [1, 2, 3]  # served from the memory layer meanwhile
    failures = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(failures) == 1 and "database is down" in str(failures[0].message)
    assert not store.contains(twice.digest(1))
    lower.broken[0] = False
    twice(4)
    assert not store.contains(twice.digest(4))  # still resting until retry_after has passed
    clock.now += 31
    twice(5)
    assert store.contains(twice.digest(5))


def test_stack_raises_when_no_layer_works(store):
    lower = Flaky(store)
    stack = CacheStack([lower])
    lower.broken[0] = True
    with pytest.warns(CacheWarning), pytest.raises(OSError):
        stack.save(call(1, result=1))


def test_stack_skips_read_only_layers_for_writes(store):
    shared = store
    key = shared.save(call(1, result="shared"))
    top = Cache(ValueMemory(), CallMemory())
    stack = CacheStack([top, ReadOnlyCache(shared)])
    assert stack.load_result(key) == "shared" and top.contains(key)
    new = stack.save(call(2, result="mine"))
    assert top.contains(new) and not shared.contains(new)


# -- CachePool and ReadOnlyCache --------------------------------------------------------


def test_pool_is_a_read_only_union(store):
    mine = Cache(ValueMemory(), CallMemory())
    a = mine.save(call(1, result="mine"))
    b = store.save(call(2, result="theirs"))
    both = store.save(call(1, result="theirs too"))
    pool = CachePool([mine, store])
    assert pool.read_only
    assert pool.load_result(a) == "mine" and pool.load_result(b) == "theirs"
    assert pool.load_result(both) == "mine"  # the first cache that holds it
    assert {c.key() for c in pool.query()} == {a, b}
    assert pool.contains(b) and not pool.contains(call(9).key())
    with pytest.raises(ReadOnlyError):
        pool.save(call(3))
    with pytest.raises(ReadOnlyError):
        pool.evict(a)


def test_read_only_cache_refuses_writes_but_the_decorator_still_returns(store):
    key = store.save(call(1, result="stored"))
    frozen = ReadOnlyCache(store)
    assert frozen.read_only and frozen.load_result(key) == "stored"
    for write in (lambda: frozen.save(call(2)), lambda: frozen.evict(key), lambda: frozen.gc()):
        with pytest.raises(ReadOnlyError):
            write()
    assert frozen.gc(dry_run=True) == set()
    assert frozen.prune(dry_run=True, func="f") == [key]
    with pytest.raises(ReadOnlyError):
        frozen.prune(func="f")

    @fleche(cache=frozen)
    def inc(x):
        return x + 1

    with pytest.warns(CacheWarning, match="read-only"):
        assert inc(1) == 2
    assert not store.contains(inc.digest(1))


# -- FilteredCache --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["function", "template"])
def test_filter_shows_only_matching_calls(store, how):
    kept = store.save(call(1, result=1, name="kept"))
    hidden = store.save(call(2, result=2, name="hidden"))
    predicate = (lambda c: c.name == "kept") if how == "function" else QueryCall(name="kept")
    view = store.filter(predicate)
    assert isinstance(view, FilteredCache)
    assert view.load_result(kept) == 1 and view.contains(kept)
    assert not view.contains(hidden)
    with pytest.raises(KeyError):
        view.load_result(hidden)
    with pytest.raises(KeyError):
        view.evict(hidden)
    assert [c.key() for c in view.query()] == [kept]
    assert view.query().evict() == 1
    assert not store.contains(kept) and store.contains(hidden)


# -- RefreshingCache and transfer --------------------------------------------------------


def test_refreshing_cache_recomputes_and_overwrites(store):
    runs = []

    @fleche(cache=store)
    def stamp(x):
        runs.append(x)
        return len(runs)

    assert stamp(1) == 1 and stamp(1) == 1
    refreshing = RefreshingCache(store)
    assert stamp.__class__(stamp.func, cache=refreshing)(1) == 2
    assert stamp(1) == 2  # the refreshed result replaced the old one


def test_transfer_copies_calls_with_their_values(store, tmp_path):
    source = Cache(ValueMemory(), CallMemory())
    keys = [source.save(call(i, result={"square": [i * i]}, name="g")) for i in range(3)]
    source.save(call(0, result="other", name="h"))
    assert source.transfer(store, QueryCall(name="g")) == 3
    assert all(store.load_result(k) == {"square": [i * i]} for i, k in enumerate(keys))
    assert store.load(keys[2]).arguments["x"] == 2
    assert source.transfer(store, QueryCall(name="g")) == 0  # already there
    assert source.transfer(store, QueryCall(name="g"), overwrite=True) == 3
