"""The size-limit policy: which calls (and values) go, and in which order.

The bookkeeping tests are in ``test_storage_sized.py``; the budget itself
(bytes, shared values, in-flight arguments, processes) in
``test_maintenance.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleche import Cache, Call, SizeLimitedCache
from fleche.caches.pins import Pins
from fleche.digest import digest
from fleche.storage import CallMemory, ValueMemory
from fleche.storage.sized import SizedValues

from .backends import hdf5_calls, hdf5_values
from .test_compositions import Clock


def call(x, result=None) -> Call:
    return Call(name="f", module="tests", arguments={"x": x}, result=result)


def limited(clock: Clock, **options) -> SizeLimitedCache:
    return SizeLimitedCache(Cache(ValueMemory(), CallMemory(), clock=clock), clock=clock, **options)


def _evicted_in_order(cache: SizeLimitedCache, clock: Clock, keys: list, extra: int) -> list:
    """Store ``extra`` more calls one by one; the keys of ``keys`` gone after each."""
    order = []
    for i in range(extra):
        clock.now += 1
        cache.save(call(100 + i, result=i))
        order.extend(k for k in keys if not cache.contains(k) and k not in order)
    return order


def test_least_recently_used_calls_go_first(tmp_path):
    clock = Clock()
    cache = limited(clock, max_calls=5)
    keys = []
    for i in range(5):
        clock.now += 1
        keys.append(cache.save(call(i, result=i)))
    for i in (3, 0, 4):  # read: 1 and 2 are now the least recently used
        clock.now += 1
        cache.load_result(keys[i])
    assert _evicted_in_order(cache, clock, keys, 5) == [keys[1], keys[2], keys[3], keys[0], keys[4]]


def test_fifo_evicts_in_the_order_stored(tmp_path):
    clock = Clock()
    cache = limited(clock, max_calls=3, policy="fifo")
    keys = []
    for i in range(3):
        clock.now += 1
        keys.append(cache.save(call(i, result=i)))
    clock.now += 1
    cache.load_result(keys[0])
    assert _evicted_in_order(cache, clock, keys, 3) == keys


def test_a_value_no_call_holds_goes_before_newer_calls(tmp_path):
    clock = Clock()
    cache = limited(clock, max_bytes=2500)
    record = call(np.zeros(200)).digested()
    prepared = cache.prepare(record, {"x": np.zeros(200)}, record.key())
    prepared.abandon()  # the call failed: its argument is left, held by no call
    orphan = digest(np.zeros(200))
    clock.now += 1
    first = cache.save(call(1, result=np.ones(125)))
    clock.now += 1
    second = cache.save(call(2, result=np.full(125, 2.0)))
    assert not cache.cache.values.contains(orphan)
    assert cache.contains(first) and cache.contains(second)
    assert cache.total() <= 2500


def test_the_usage_the_values_declare_is_used(tmp_path):
    values = SizedValues(ValueMemory())
    cache = SizeLimitedCache(Cache(values, CallMemory()), max_bytes=10**6)
    key = cache.save(call(1, result=np.ones(100)))
    assert values.usage().total() == cache.total() >= 800
    assert values.usage().holders() == 1
    cache.evict(key)
    assert values.usage().total() == 0


def test_a_size_limit_on_hdf5_values(tmp_path: Path):
    pytest.importorskip("bagofholding")
    clock = Clock()
    store = Cache(hdf5_values(tmp_path / "values"), hdf5_calls(tmp_path / "calls"), clock=clock)
    cache = SizeLimitedCache(store, max_bytes=2500, index=tmp_path / "usage.db", clock=clock)
    keys = []
    for i in range(4):
        clock.now += 1
        keys.append(cache.save(call(i, result=np.full(125, i, dtype=np.int64))))
    assert [cache.contains(k) for k in keys] == [False, False, True, True]
    assert not store.values.contains(digest(np.full(125, 0, dtype=np.int64)))
    assert cache.load_result(keys[3]).tolist() == [3] * 125


def test_pins_count_and_release():
    pins = Pins()
    pins.pin(["a", "a", "b"])
    pins.unpin(["a"])
    assert "a" in pins and pins.contains("b")
    assert pins.snapshot() == {"a", "b"}
    removed = []
    assert not pins.unless_pinned("a", lambda: removed.append("a"))
    assert pins.unless_pinned("c", lambda: removed.append("c"))
    pins.unpin(["a", "b"])
    assert pins.snapshot() == frozenset() and removed == ["c"]
