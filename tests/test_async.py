"""``async def`` functions: awaited hits and misses, one computation per call, helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect

import pytest

from fleche import CacheWarning, Indigestible, Required, fleche
from fleche.asynchronous import AsyncCachedFunction


def counted_async(**options):
    runs: list = []

    @fleche(**options)
    async def fetch(x, delay=0.0):
        runs.append(x)
        await asyncio.sleep(delay)
        return {"x": x, "double": 2 * x}

    return fetch, runs


def test_decorating_a_coroutine_function_gives_an_async_cached_function(memory):
    fetch, _ = counted_async()
    assert isinstance(fetch, AsyncCachedFunction)
    assert asyncio.iscoroutinefunction(fetch)
    coroutine = fetch(1)
    assert inspect.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == {"x": 1, "double": 2}


def test_awaited_miss_then_hit(memory):
    fetch, runs = counted_async()

    async def main():
        first = await fetch(3)
        second = await fetch(3)
        third = await fetch(x=3, delay=0.0)
        return first, second, third

    first, second, third = asyncio.run(main())
    assert first == second == third == {"x": 3, "double": 6}
    assert runs == [3]
    assert fetch.query().count() == 1


def test_concurrent_awaits_run_the_body_once(memory):
    fetch, runs = counted_async()

    async def main():
        return await asyncio.gather(*(fetch(7, delay=0.01) for _ in range(20)))

    results = asyncio.run(main())
    assert results == [{"x": 7, "double": 14}] * 20
    assert runs == [7]
    assert fetch.query().count() == 1  # stored once
    # Nothing left in flight: once evicted, the call is computed again, not awaited forever.
    memory.evict(fetch.digest(7, delay=0.01))
    assert asyncio.run(asyncio.wait_for(fetch(7, delay=0.01), 10)) == {"x": 7, "double": 14}
    assert runs == [7, 7]


def test_concurrent_awaits_of_different_calls_run_each_once(memory):
    fetch, runs = counted_async()

    async def main():
        return await asyncio.gather(*(fetch(i % 3, delay=0.005) for i in range(12)))

    results = asyncio.run(main())
    assert [r["x"] for r in results] == [i % 3 for i in range(12)]
    assert sorted(runs) == [0, 1, 2]


def test_an_exception_reaches_every_waiter_and_stores_nothing(memory):
    runs = []

    @fleche()
    async def fails(x):
        runs.append(x)
        await asyncio.sleep(0.005)
        raise RuntimeError("boom")

    async def main():
        return await asyncio.gather(*(fails(1) for _ in range(5)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert runs == [1]
    assert not fails.contains(1)
    with pytest.raises(RuntimeError):
        asyncio.run(fails(1))  # not cached: runs again
    assert runs == [1, 1]


def test_a_cancelled_leader_hands_over_to_a_waiter(memory):
    fetch, runs = counted_async()

    async def main():
        leader = asyncio.ensure_future(fetch(5, delay=0.05))
        await asyncio.sleep(0)  # the leader starts and registers its computation
        waiter = asyncio.ensure_future(fetch(5, delay=0.05))
        await asyncio.sleep(0.01)
        leader.cancel()
        result = await waiter
        with pytest.raises(asyncio.CancelledError):
            await leader
        return result

    assert asyncio.run(main()) == {"x": 5, "double": 10}
    assert runs == [5, 5]  # the waiter computed it after the leader was cancelled
    assert fetch.contains(5, delay=0.05)


def test_a_cancelled_waiter_does_not_cancel_the_leader(memory):
    fetch, runs = counted_async()

    async def main():
        leader = asyncio.ensure_future(fetch(6, delay=0.03))
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(fetch(6, delay=0.03))
        await asyncio.sleep(0.005)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return await leader

    assert asyncio.run(main()) == {"x": 6, "double": 12}
    assert runs == [6]


def test_a_coroutine_awaiting_its_own_call_does_not_wait_for_itself(memory):
    calls = []

    @fleche(ignore=("depth",))
    async def reentrant(x, depth=0):
        calls.append(depth)
        return (await reentrant(x, depth=1)) + 1 if depth == 0 else x  # the same key, same task

    assert asyncio.run(asyncio.wait_for(reentrant(1), 10)) == 2  # it once waited forever
    assert calls == [0, 1]


def test_helpers_work_on_async_functions(memory):
    fetch, runs = counted_async(version="2")
    asyncio.run(fetch(1))
    assert fetch.contains(1) and not fetch.contains(2)
    assert fetch.load(1) == {"x": 1, "double": 2}
    assert fetch.call(1).arguments["x"] == 1
    assert fetch.query(x=1).count() == 1
    assert fetch.digest(1) == fetch.call(1).key()
    assert fetch.explain(1).stored and not fetch.explain(2).stored
    assert asyncio.run(fetch.rerun(1)) == {"x": 1, "double": 2}
    assert runs == [1, 1]


def test_async_rerun_recomputes_nested_calls(memory):
    fetch, runs = counted_async()

    @fleche()
    async def outer(x):
        return (await fetch(x))["double"] + 1

    assert asyncio.run(outer(1)) == 3 and asyncio.run(outer(1)) == 3
    assert runs == [1]
    assert asyncio.run(outer.rerun(1)) == 3
    assert runs == [1, 1]  # the nested call was computed again, not read


def test_several_event_loops_in_a_row(memory):
    fetch, runs = counted_async()
    assert asyncio.run(fetch(4)) == asyncio.run(fetch(4))
    assert runs == [4]


def test_indigestible_argument_awaits_uncached(memory):
    runs = []

    @fleche()
    async def total(values):
        runs.append(1)
        return sum(values)

    with pytest.warns(CacheWarning, match="generator"):
        assert asyncio.run(total(x for x in range(3))) == 3

    @fleche()
    async def strict(values: Required[object]):
        return sum(values)

    with pytest.raises(Indigestible):
        asyncio.run(strict(iter([1])))


@dataclasses.dataclass(frozen=True)
class Client:
    endpoint: str

    @fleche()
    async def get(self, path):
        CLIENT_RUNS.append(path)
        await asyncio.sleep(0)
        return f"{self.endpoint}/{path}"


CLIENT_RUNS: list = []


def test_async_methods(memory):
    CLIENT_RUNS.clear()

    async def main():
        client = Client("api")
        results = await asyncio.gather(*(client.get("a") for _ in range(5)))
        again = await Client("api").get("a")
        return results, again

    results, again = asyncio.run(main())
    assert results == ["api/a"] * 5 and again == "api/a"
    assert CLIENT_RUNS == ["a"]
    assert Client("api").get.contains("a")
