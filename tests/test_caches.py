"""Cache: storing calls with their values, short digests across both storages, gc."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fleche import AmbiguousDigestError, Cache, Call, QueryCall
from fleche.digest import digest
from fleche.storage import CallMemory, ValueMemory


@pytest.fixture
def store() -> Cache:
    return Cache(ValueMemory(), CallMemory())


def call(x, result=None) -> Call:
    return Call(name="f", module="m", arguments={"x": x}, result=result)


def test_save_stores_values_then_record(store):
    key = store.save(call(np.arange(3), result={"sum": 3}))
    lazy = store.load(key)
    assert lazy.result == {"sum": 3}
    np.testing.assert_array_equal(lazy.arguments["x"], np.arange(3))
    assert store.load_result(key) == {"sum": 3}
    assert store.load_value(digest(np.arange(3))) is not None


def test_expand_across_calls_and_values(store):
    key = store.save(call(1, result=2))
    assert store.expand(store.shrink(key)) == key
    value_key = digest(2)
    assert store.expand(store.shrink(value_key)) == value_key
    with pytest.raises(KeyError):
        store.expand(next(p for p in (f"{i:04x}" for i in range(65536)) if not _taken(store, p)))


def _taken(store, prefix):
    try:
        store.expand(prefix)
    except KeyError:
        return False
    except AmbiguousDigestError:
        return True
    return True


def test_ambiguous_between_a_call_and_a_value(store):
    keys = [store.save(call(i, result=-i)) for i in range(200)]
    values = [digest(i) for i in range(200)]
    # find a call key and a value key sharing their first two characters
    pair = next((k, v) for k in keys for v in values if k[:2] == v[:2] and k != v)
    with pytest.raises(AmbiguousDigestError) as info:
        store.expand(pair[0][:2])
    assert pair[0] in info.value.candidates and pair[1] in info.value.candidates
    assert info.value.needed > 2


def test_gc_collects_only_unreferenced_values(store):
    kept = store.save(call([1, [2, 3]], result={"a": np.ones(4)}))
    orphan = store.values.save("orphan")
    removed = store.gc()
    assert orphan in removed
    lazy = store.load(kept)
    assert lazy.arguments["x"] == [1, [2, 3]]
    np.testing.assert_array_equal(lazy.result["a"], np.ones(4))


def test_gc_dry_run_removes_nothing(store):
    orphan = store.values.save("orphan")
    assert store.gc(dry_run=True) == {orphan}
    assert store.values.contains(orphan)


def test_gc_keeps_values_of_calls_in_flight(store):
    record = call(5).digested()
    prepared = store.prepare(record, {"x": 5}, record.key())
    assert digest(5) not in store.gc()
    assert store.values.contains(digest(5))
    prepared.commit("done")
    assert store.load_result(record.key()) == "done"
    assert store.gc() == set()


def test_evict_leaves_values_for_gc(store):
    key = store.save(call(7, result=8))
    store.evict(key)
    assert not store.contains(key)
    assert store.gc() == {digest(7), digest(8)}


def test_query_and_table(store):
    for i in range(5):
        store.save(call(i, result=i * i))
    assert store.query(QueryCall(arguments={"x": 3})).only().result == 9
    table = store.query().table()
    assert sorted(table["x"]) == [0, 1, 2, 3, 4]
    assert {"key", "function", "result", "created"} <= set(table.columns)


def test_cache_pickles_by_its_storages(store):
    store.save(call(1, result=2))
    clone = pickle.loads(pickle.dumps(store))
    assert clone.load_result(call(1).key()) == 2
