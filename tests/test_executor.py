"""wrap_executor: tasks in thread and process pools use the submitter's cache, metadata and tags."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from fleche import Cache, CacheWarning, cache, fleche, tags, wrap_executor
from fleche.executor import CachingExecutor
from fleche.storage import CallPickleFile, ValuePickleFile

pytestmark = pytest.mark.timeout(60)


@fleche
def double(x):
    return x * 2, os.getpid()


@fleche
def tagged(x):
    return x + 1


def plain(x):
    return x - 1


def store(root: Path) -> Cache:
    return Cache(ValuePickleFile(root=root / "values"), CallPickleFile(root=root / "calls"))


def sqlite_store(root: Path) -> Cache:
    from fleche.storage import Sql

    return Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")))


def pools():
    yield "threads", lambda: ThreadPoolExecutor(max_workers=3)
    for method in ("fork", "spawn"):
        context = multiprocessing.get_context(method)
        yield method, lambda context=context: ProcessPoolExecutor(max_workers=2, mp_context=context)


POOLS = dict(pools())


@pytest.mark.parametrize("make", [store, sqlite_store], ids=["pickle", "sqlite"])
@pytest.mark.parametrize("kind", POOLS)
def test_submitted_calls_are_stored_in_the_active_cache(kind, make, tmp_path):
    active = make(tmp_path)
    with wrap_executor(POOLS[kind]()) as pool, cache(active), tags(project="x"):
        futures = [pool.submit(double, i) for i in range(4)]
        mapped = list(pool.map(tagged, range(3)))
        results = [f.result() for f in futures]
    assert [r for r, _ in results] == [0, 2, 4, 6]
    if kind != "threads":
        assert all(pid != os.getpid() for _, pid in results)  # computed in the workers
    assert mapped == [1, 2, 3]
    with cache(active):
        assert all(double.contains(i) for i in range(4))
        assert double.load(1) == results[1]
        assert tagged.record(2).metadata["tags"] == {"project": "x"}
        assert sorted(
            call.arguments["x"] for call in tagged.query(metadata={"tags": {"project": "x"}})
        ) == [0, 1, 2]


def test_chunked_map_in_processes(tmp_path):
    active = store(tmp_path)
    with wrap_executor(POOLS["fork"]()) as pool, cache(active):
        assert list(pool.map(tagged, range(10), chunksize=4)) == list(range(1, 11))
    with cache(active):
        assert all(tagged.contains(i) for i in range(10))


def test_a_stored_call_resolves_without_scheduling(tmp_path):
    active = store(tmp_path)
    executor = ThreadPoolExecutor(max_workers=1)
    pool = wrap_executor(executor)
    with cache(active):
        assert pool.submit(double, 5).result()[0] == 10
        pool.shutdown()
        # A shut-down executor refuses new work: only a stored call can still resolve.
        future = pool.submit(double, 5)
        assert future.done() and future.result()[0] == 10
        with pytest.raises(RuntimeError):
            pool.submit(double, 6)


@pytest.mark.parametrize("kind", ["threads", "fork"])
def test_plain_functions_open_no_cache(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default store would be made
    with wrap_executor(POOLS[kind]()) as pool:
        assert pool.submit(plain, 3).result() == 2
        assert list(pool.map(plain, [1, 2])) == [0, 1]
    assert not (tmp_path / ".fleche").exists()


def test_wrapping_is_idempotent_and_checked():
    executor = ThreadPoolExecutor(max_workers=1)
    wrapped = wrap_executor(executor)
    assert isinstance(wrapped, CachingExecutor)
    assert wrap_executor(wrapped) is wrapped
    with pytest.raises(TypeError, match="Executor"):
        wrap_executor(object())
    wrapped.shutdown()


def test_a_memory_cache_in_processes_warns(tmp_path):
    with wrap_executor(POOLS["fork"]()) as pool, cache("memory"):
        with pytest.warns(CacheWarning, match="not persistent"):
            future = pool.submit(tagged, 1)
        assert future.result() == 2


def test_an_unpicklable_cache_warns_and_still_computes(tmp_path):
    active = Cache(
        ValuePickleFile(root=tmp_path / "values"),
        CallPickleFile(root=tmp_path / "calls"),
        clock=lambda: 0.0,
    )
    with wrap_executor(POOLS["fork"]()) as pool, cache(active):
        with pytest.warns(CacheWarning, match="cannot send the active cache"):
            future = pool.submit(plain, 1)
        assert future.result() == 0


class Inline(Executor):
    """An executor of an older interface, like Dask's: ``shutdown`` takes only ``wait``."""

    def __init__(self) -> None:
        self.shut: list[bool] = []

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future

    def shutdown(self, wait=True):
        self.shut.append(wait)


def test_only_the_keywords_an_executor_takes_are_passed(tmp_path):
    inline = Inline()
    with wrap_executor(inline) as pool, cache(store(tmp_path)):
        assert pool.submit(tagged, 1).result() == 2
        assert list(pool.map(tagged, [2, 3], timeout=5)) == [3, 4]
    assert inline.shut == [True]  # without ``cancel_futures``, which it does not take
    pool.shutdown(wait=False)
    assert inline.shut == [True, False]
    with pytest.raises(TypeError, match="cancel_futures"):
        pool.shutdown(cancel_futures=True)  # asked for: passed, and refused by the executor
    with pytest.raises(TypeError, match="linger"):
        pool.shutdown(linger=1)  # a keyword fleche does not know goes through as given
