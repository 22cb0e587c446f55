"""The usage bookkeeping of a value storage: sizes, last uses, parts and holds.

:class:`SizedValues` around every kind of value backend (memory, pickle
files, HDF5), its index across a reopen and across processes.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from fleche.digest import digest
from fleche.storage import ValueMemory, ValuePickleFile
from fleche.storage.sized import SizedValues, size_of
from fleche.testing.storage import value_state_machine

from .backends import hdf5_values, pickle_values
from .test_compositions import Clock


def _memory(root: Path) -> ValueMemory:
    return ValueMemory()


def _hdf5(root: Path):
    pytest.importorskip("bagofholding")
    return hdf5_values(root)


#: The wrapper keeps the value storage contract (a dict model, hypothesis state machine).
TestSizedValuesMachine = value_state_machine(lambda: SizedValues(ValueMemory())).TestCase

BACKENDS = {"memory": _memory, "pickle": pickle_values, "hdf5": _hdf5}
PERSISTENT = ["pickle", "hdf5"]


def sized(kind: str, root: Path, clock=None) -> SizedValues:
    index = None if kind == "memory" else root / "usage.db"
    options = {} if clock is None else {"clock": clock}
    return SizedValues(BACKENDS[kind](root / "values"), index=index, **options)


@pytest.fixture(params=list(BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_save_load_and_evict_keep_the_account(kind, tmp_path):
    clock = Clock()
    values = sized(kind, tmp_path, clock)
    usage = values.usage()
    small, big = np.zeros(10), np.ones(100)
    keys = [values.save(small), values.save(big)]
    assert [usage.size(k) for k in keys] == [80, 800]
    assert usage.total() == 880
    written = usage.last_used(keys[0])
    clock.now += 5
    assert values.load(keys[0]).tolist() == small.tolist()
    usage.flush()
    assert usage.last_used(keys[0]) == written + 5
    assert usage.last_used(keys[1]) == written
    values.save(big)  # stored already: counted once, used again
    assert usage.total() == 880
    values.evict(keys[1])
    assert not values.contains(keys[1]) and usage.size(keys[1]) is None
    assert usage.total() == 80


def test_the_parts_of_a_container_count_zero_and_are_freed_with_it(kind, tmp_path):
    values = sized(kind, tmp_path)
    usage = values.usage()
    container = {"a": np.arange(50), "b": "x" * 300}
    key = values.save(container)
    parts = list(values.children(key))
    assert parts and all(usage.size(part) == 0 for part in parts)
    assert usage.total() == size_of(container)
    assert usage.hold("call", [key], 1.0) == ([], [])
    freed = usage.release("call")
    assert set(freed) == {key, *parts}
    assert usage.total() == 0


def test_a_value_held_twice_is_freed_by_its_last_holder(tmp_path):
    values = sized("memory", tmp_path)
    usage = values.usage()
    key = values.save("shared")
    usage.hold("first", [key], 1.0)
    usage.hold("second", [key], 2.0)
    assert usage.release("first") == []
    assert usage.release("second") == [key]
    assert usage.hold("third", [key], 3.0) == ([key], [])  # no longer recorded


def test_holding_other_values_frees_the_old_ones(tmp_path):
    values = sized("memory", tmp_path)
    usage = values.usage()
    old, new = values.save("old result"), values.save("new result")
    usage.hold("call", [old], 1.0)
    assert usage.hold("call", [new], 2.0) == ([], [old])
    assert usage.holders() == 1


def test_oldest_lists_holders_and_unheld_values_by_last_use(tmp_path):
    clock = Clock()
    values = sized("memory", tmp_path, clock)
    usage = values.usage()
    held = values.save("held")
    usage.hold("call", [held], clock.now + 1)
    orphan = values.save("nobody holds me")
    clock.now += 2
    usage.touch(orphan, clock.now)
    usage.flush()
    assert usage.oldest(5) == [("call", True), (orphan, False)]


def test_a_value_removed_before_it_is_written_to_the_index_is_not_counted(tmp_path):
    inner = ValuePickleFile(root=tmp_path / "values")
    values = SizedValues(inner, index=tmp_path / "usage.db")
    key = values.save("short-lived")
    inner.evict(key)  # behind the bookkeeping's back, before it is written
    assert values.usage().total() == 0
    assert values.usage().size(key) is None


@pytest.mark.parametrize("kind", PERSISTENT)
def test_the_account_survives_a_reopen(kind, tmp_path):
    clock = Clock()
    values = sized(kind, tmp_path, clock)
    keys = [values.save(np.full(25, i)) for i in range(3)]
    clock.now += 10
    values.load(keys[1])
    usage = values.usage()
    usage.flush()
    total, used = usage.total(), usage.last_used(keys[1])
    del values, usage
    reopened = sized(kind, tmp_path, clock).usage()
    assert reopened.total() == total == 3 * 200
    assert reopened.last_used(keys[1]) == used
    assert [reopened.size(k) for k in keys] == [200] * 3


def _write(kind: str, root: Path, worker: int) -> None:
    """A worker process: stores five arrays and exits without flushing by hand."""
    values = sized(kind, root)
    for i in range(5):
        values.save(np.full(25, worker * 100 + i, dtype=np.int64))


@pytest.mark.parametrize("kind", PERSISTENT)
def test_the_account_is_shared_by_processes(kind, tmp_path):
    if kind == "hdf5":
        pytest.importorskip("bagofholding")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write, args=(kind, tmp_path, w)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    usage = sized(kind, tmp_path).usage()
    expected = [
        digest(np.full(25, w * 100 + i, dtype=np.int64)) for w in range(2) for i in range(5)
    ]
    assert [usage.size(k) for k in expected] == [200] * 10
    assert usage.total() == 2000
