"""The conformance tests of a whole cache on a backend: the decorator, processes, crashes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

from ..caches import Cache
from ..call import Call
from ..digest import digest
from ..storage.memory import CallMemory, ValueMemory
from ..wrapper import fleche
from .backend import Backend, calls_of, require, values_of

__all__ = ["CacheTests"]


def _cache(backend: Backend, root: Path) -> Cache:
    return Cache(values_of(backend, root / "values"), calls_of(backend, root / "calls"))


def _half(backend: Backend, root: Path, **options: Any) -> Cache:
    """A cache of the backend's storages, memory standing in for a half it does not have."""
    values = backend.values(root / "values") if backend.values else ValueMemory()
    calls = backend.calls(root / "calls") if backend.calls else CallMemory()
    return Cache(values, calls, **options)


def _square(x: int) -> int:
    return x * x


def _hammer(cache: Cache, worker: int, n: int) -> None:
    """A worker process: ``n`` decorated calls into one shared store."""
    f = fleche(cache=cache)(_square)
    for i in range(n):
        assert f((i + worker) % n) == ((i + worker) % n) ** 2


def _save_forever(cache: Cache) -> None:
    f = fleche(cache=cache)(_square)
    i = 0
    while True:
        f(i)
        i += 1


class CacheTests:
    """A whole :class:`Cache` on the backend: the decorator end to end, processes, crashes."""

    def test_decorator_end_to_end(self, backend: Backend, tmp_path: Path) -> None:
        cache = _cache(backend, tmp_path)
        runs = []

        @fleche(cache=cache)
        def simulate(temperature: float, steps: int = 10) -> dict[str, Any]:
            runs.append(temperature)
            return {"temperature": temperature, "energy": [temperature * s for s in range(steps)]}

        first = simulate(300.0)
        assert simulate(300.0) == first and runs == [300.0]
        simulate(310.0)
        assert simulate.contains(300.0) and not simulate.contains(320.0)
        assert simulate.load(310.0)["temperature"] == 310.0
        assert simulate.query(temperature=300.0).only().result == first
        assert simulate.query().count() == 2
        assert cache.load_value(cache.shrink(simulate.record(300.0).digested_call.result)) == first

    def test_processes_share_a_store(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "processes")
        context = multiprocessing.get_context("spawn")
        cache = _cache(backend, tmp_path)  # pickled into each worker: constructor arguments only
        workers = [context.Process(target=_hammer, args=(cache, w, 200)) for w in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
            assert w.exitcode == 0
        cache = _cache(backend, tmp_path)
        f = fleche(cache=cache)(_square)
        assert all(f.contains(i) and f.load(i) == i * i for i in range(200))
        assert cache.query().count() == 200

    def test_killed_writer_leaves_a_readable_store(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "processes")
        context = multiprocessing.get_context("spawn")
        cache = _cache(backend, tmp_path)
        writer = context.Process(target=_save_forever, args=(cache,))
        writer.start()
        deadline = time.monotonic() + 60
        while cache.query().count() < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        cache = _cache(backend, tmp_path)
        done = list(cache.query())
        assert len(done) >= 20
        for call in done:
            assert call.result == call.arguments["x"] ** 2

    def test_len_and_count_leave_out_expired_calls(self, backend: Backend, tmp_path: Path) -> None:
        now = [1000.0]
        cache = _half(backend, tmp_path, ttl=10, clock=lambda: now[0])
        lasting = Cache(cache.values, cache.calls, clock=lambda: now[0])
        assert len(cache) == 0 and cache  # an empty cache is still true
        for i in range(3):
            cache.save(Call("f", {"x": i}, module="m", result=i))
        for i in range(3, 5):
            lasting.save(Call("f", {"x": i}, module="m", result=i))
        lasting.save(Call("g", {"x": 0}, module="m", result=0))
        assert len(cache) == cache.query().count() == 6
        now[0] += 20
        assert len(cache) == cache.query().count() == len(list(cache.query())) == 3
        assert cache.query(expired=True).count() == 6
        assert cache.query(name="f").count() == 2
        assert cache.query(name="f", expired=True).count() == 5
        assert cache.query(name="f").filter(lambda c: c.result > 3).count() == 1

    def test_gc_keeps_what_calls_reach_and_collects_the_rest(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        cache = _half(backend, tmp_path)
        result = {"parts": [1.5, 2.5], "label": "x" * 300}  # children stored apart
        cache.save(Call("f", {"x": [7, 8]}, module="m", result=result))
        stray = cache.values.save(["nobody", "uses", "this"])
        prepared = cache.prepare(Call("f", {"x": "in flight"}, module="m"))
        assert cache.gc(grace=0) == {stray}
        assert cache.values.contains(digest("in flight"))  # pinned while the call runs
        prepared.abandon()
        assert cache.gc(grace=0) == {digest("in flight")}
        (call,) = cache.query()
        assert call.result == result and call.arguments["x"] == [7, 8]
        assert cache.gc(grace=0) == set()

    def test_gc_grace_spares_young_values(self, backend: Backend, tmp_path: Path) -> None:
        cache = _half(backend, tmp_path)
        stray = cache.values.save("young")
        knows_age = cache.values.stored_at(stray) is not None
        assert cache.gc() == (set() if knows_age else {stray})
        assert cache.gc(grace=0) == ({stray} if knows_age else set())
