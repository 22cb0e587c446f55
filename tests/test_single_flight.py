"""One single flight for plain and awaited calls: one table of calls in flight, the same leases.

An awaited miss waits for a plain call of the same key and the other way
round, in one process (without blocking the event loop) and across
processes (through the store's leases); and a miss reads the store once.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from fleche import Cache, cache, fleche
from fleche.storage import CallMemory, CallPickleFile, Sql, ValueMemory, ValuePickleFile

from .test_no_duplicate_work import STORES, computations

pytestmark = pytest.mark.timeout(60)

SPAWN = multiprocessing.get_context("spawn")


@fleche(ignore=("marks", "pause"))
async def fetch(x, marks="", pause=0.0):
    """Marks each computation with a line in ``marks``."""
    with open(marks, "a") as file:
        file.write(f"{os.getpid()}\n")
    await asyncio.sleep(pause)
    return x * x


async def _ticking(awaitable, ticks: list[int]):
    """``await awaitable`` while counting the turns of the event loop meanwhile."""

    async def tick():
        while True:
            ticks.append(1)
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    try:
        return await awaitable
    finally:
        ticker.cancel()


async def _fetch_many(x: int, marks: str, n: int) -> list[int]:
    return await asyncio.gather(*(fetch(x, marks=marks, pause=0.5) for _ in range(n)))


def _fetch_in_process(store: str, root: str, marks: str, start, results, x: int) -> None:
    with cache(STORES[store](Path(root))):
        start.wait()
        results.put(asyncio.run(_fetch_many(x, marks, 3)))


@pytest.mark.parametrize("store", STORES)
def test_awaited_calls_in_two_processes_compute_once(store, tmp_path):
    local = STORES[store](tmp_path)  # here first: a store that cannot be had skips the test
    marks = tmp_path / "marks"
    start, results = SPAWN.Barrier(2), SPAWN.Queue()
    other = SPAWN.Process(
        target=_fetch_in_process, args=(store, str(tmp_path), str(marks), start, results, 6)
    )
    other.start()
    with cache(local):
        start.wait(timeout=30)
        ticks: list[int] = []
        here = asyncio.run(_ticking(_fetch_many(6, str(marks), 3), ticks))
    there = results.get(timeout=30)
    other.join(timeout=30)
    assert other.exitcode == 0
    assert here == there == [36] * 3
    assert computations(marks) == 1
    assert len(ticks) >= 5  # the loop kept turning while it waited (0.5 s at least)


def twins():
    """A plain and an awaited cached function with one name: their calls have the same keys."""
    gate, runs = threading.Event(), []

    def shared(x):
        runs.append("plain")
        assert gate.wait(30)
        return x * 10

    plain = fleche(shared)

    async def shared(x):  # noqa: F811 - the same name on purpose
        runs.append("awaited")
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return x * 10

    awaited = fleche(shared)
    assert plain.digest(1) == awaited.digest(1)
    return plain, awaited, gate, runs


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,))
    thread.start()
    return thread


def test_an_awaited_call_waits_for_a_plain_one_without_blocking_its_loop(memory):
    plain, awaited, gate, runs = twins()
    out = []
    leader = _in_thread(lambda: out.append(plain(4)))

    async def main():
        while runs != ["plain"]:  # the plain call leads
            await asyncio.sleep(0.005)
        asyncio.get_running_loop().call_later(0.2, gate.set)  # only a turning loop opens it
        return await awaited(4)

    ticks: list[int] = []
    assert asyncio.run(_ticking(main(), ticks)) == 40
    leader.join()
    assert out == [40] and runs == ["plain"]  # one computation
    assert len(ticks) >= 3  # and the loop turned while it waited (it opened the gate, too)


def test_a_plain_call_waits_for_an_awaited_one(memory):
    plain, awaited, gate, runs = twins()
    out = []
    leader = _in_thread(lambda: out.append(asyncio.run(awaited(5))))
    while runs != ["awaited"]:
        threading.Event().wait(0.005)
    threading.Timer(0.1, gate.set).start()
    assert plain(5) == 50
    leader.join()
    assert out == [50] and runs == ["awaited"]


def test_an_awaited_call_gets_the_exception_of_the_plain_leader(memory):
    runs = []

    def failing(x):
        runs.append("plain")
        threading.Event().wait(0.2)
        raise ValueError("no")

    plain = fleche(failing)

    async def failing(x):  # noqa: F811 - the same name on purpose
        runs.append("awaited")
        return x

    awaited = fleche(failing)
    errors = []
    leader = _in_thread(lambda: errors.append(pytest.raises(ValueError, plain, 1)))
    while runs != ["plain"]:
        threading.Event().wait(0.005)
    with pytest.raises(ValueError, match="no"):
        asyncio.run(awaited(1))
    leader.join()
    assert runs == ["plain"] and len(errors) == 1


# -- a miss reads the store once ------------------------------------------------------------


LOOKUPS: list[str] = []


@dataclasses.dataclass(frozen=True)
class CountedMemory(CallMemory):
    def result_of(self, key, namespace):
        LOOKUPS.append(key)
        return super().result_of(key, namespace)


@dataclasses.dataclass(frozen=True)
class CountedFiles(CallPickleFile):
    def result_of(self, key, namespace):
        LOOKUPS.append(key)
        return super().result_of(key, namespace)


@dataclasses.dataclass(frozen=True)
class CountedSql(Sql):
    def result_of(self, key, namespace):
        LOOKUPS.append(key)
        return super().result_of(key, namespace)


COUNTED = {
    "memory (no leases)": lambda root: Cache(ValueMemory(), CountedMemory()),
    "pickle (lease files)": lambda root: Cache(
        ValuePickleFile(root=root / "values"), CountedFiles(root=root / "calls")
    ),
    "sqlite (byte locks)": lambda root: Cache(
        ValuePickleFile(root=root / "values"), CountedSql(url=str(root / "calls.db"))
    ),
}


@pytest.mark.parametrize("store", COUNTED)
def test_a_miss_reads_the_store_once(store, tmp_path):
    runs = []

    @fleche
    def double(x):
        runs.append(x)
        return 2 * x

    @fleche
    async def triple(x):
        runs.append(x)
        return 3 * x

    with cache(COUNTED[store](tmp_path)):
        LOOKUPS.clear()
        assert double(1) == 2
        assert LOOKUPS == [double.digest(1)]  # the decorator's lookup, none after the lease
        assert double(1) == 2 and len(LOOKUPS) == 2  # a hit: one more
        LOOKUPS.clear()
        assert asyncio.run(triple(1)) == 3
        assert LOOKUPS == [triple.digest(1)]
    assert runs == [1, 1]


def test_a_dropped_cache_lets_go_of_its_storage(tmp_path: Path) -> None:
    """A cache's leases are remembered per cache, not beyond it: its SQL connections close with it.

    Table leases refer to their store; remembered past the cache, they kept
    every store's runtime and connections alive (a leak of one PostgreSQL
    connection per cache ever opened).
    """
    import gc
    import weakref

    calls = Sql(url=f"sqlite:///file:{tmp_path / 'calls.db'}?uri=true")  # table leases
    runtime = weakref.ref(calls.engine)
    store = Cache(ValueMemory(), calls)

    @fleche(cache=store)
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42  # a miss: its lease taken and released
    assert store.leases() is not None
    del double, store, calls
    gc.collect()
    assert runtime() is None
