"""Memory storages: the stateful model test, and what only memory promises."""

from __future__ import annotations

from fleche import Call
from fleche.storage import CallMemory, ValueMemory
from fleche.testing.storage import value_state_machine

TestValueMemoryMachine = value_state_machine(ValueMemory).TestCase


def test_records_are_shared_not_copied():
    calls = CallMemory()
    key = calls.save(Call(name="f", module="m", arguments={"x": 1}))
    assert calls.load(key) is calls.load(key)


def test_prefix_index_follows_saves_and_evictions():
    values = ValueMemory()
    first = values.save(1)
    assert values.expand(first[:6]) == first  # builds the index
    later = values.save(2)
    assert values.expand(later[:6]) == later  # kept up to date after it was built
    values.evict(later)
    assert not values.contains(later[:6])
