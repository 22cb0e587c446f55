"""Destructuring: which elements are inlined, forms, references and registered destructurers."""

from __future__ import annotations

import collections
import dataclasses

import attrs
import numpy as np
import pytest

from fleche.digest import Digest, digest
from fleche.storage import (
    ValueMemory,
    register_destructurer,
)
from fleche.storage.destructuring import (
    Digested,
    DigestedAttrs,
    DigestedDataclass,
    DigestedDict,
    DigestedFields,
    DigestedIterable,
    HasChildDigests,
)
from fleche.testing.storage import value_state_machine

VALUE = {"a": [1, 2], "b": [3], "c": 4}

# The dict model of the conformance suite, at the depths on either side of the default.
TestEveryElementApartMachine = value_state_machine(lambda: ValueMemory(remaining_depth=0)).TestCase
TestRecordsInlineMachine = value_state_machine(lambda: ValueMemory(remaining_depth=2)).TestCase


@pytest.mark.parametrize(
    ("depth", "entries"),
    [
        (0, 7),  # every element on its own: 4 scalars, 2 lists and the dict
        (1, 3),  # scalars inline, each container apart
        (2, 1),  # the lists (depth 1) inline in the dict
        (3, 1),
    ],
)
def test_elements_are_inlined_exactly_below_remaining_depth(depth, entries):
    values = ValueMemory(remaining_depth=depth)
    key = values.save(VALUE)
    assert len(values.storage) == entries
    assert values.load(key) == VALUE


def test_at_depth_zero_every_element_is_stored_on_its_own():
    values = ValueMemory(remaining_depth=0)
    key = values.save(VALUE)
    stored = {digest(x) for x in (1, 2, 3, 4, [1, 2], [3], VALUE)}
    assert set(values.storage) == stored
    assert values.storage[key] == DigestedDict({k: digest(v) for k, v in VALUE.items()})


def test_intern_rec_returns_the_plain_value_or_the_digest():
    values = ValueMemory(remaining_depth=2)
    assert values._intern_rec([1, 2]) == ([1, 2], 1)
    result, depth = values._intern_rec([[1], [2]])
    assert (result, depth) == (digest([[1], [2]]), 2)
    assert values._intern_rec(np.ones(3))[1] == float("inf")


def test_heavy_leaves_are_always_stored_apart():
    array = np.arange(100.0)
    values = ValueMemory(remaining_depth=5)
    key = values.save({"x": array})
    assert values.child_digests(key) == [digest(array)]


def test_a_stored_digest_is_a_reference_to_its_value():
    values = ValueMemory()
    part = values.save([1, 2, 3])
    key = values.save((part, "label"))
    assert values.load(key) == ([1, 2, 3], "label")
    assert values.save(part) == part  # a digest saved on its own names its value: nothing to store
    assert values.load(part) == [1, 2, 3]


def test_named_tuples_are_stored_whole():
    Point = collections.namedtuple("Point", "x y")
    values = ValueMemory()
    key = values.save([Point(1, 2)])
    (part,) = values.child_digests(key)
    assert type(values.storage[part]) is Point  # a leaf of its own, not split as a tuple
    assert type(values.load(key)[0]) is Point


@dataclasses.dataclass(frozen=True)
class Run:
    label: str
    data: list


@attrs.frozen
class Job:
    _name: str
    sizes: list


def test_dataclasses_and_attrs_instances_are_destructured():
    values = ValueMemory()
    run, job = Run("a", [1, 2]), Job("b", [3])
    for value, form in ((run, DigestedDataclass), (job, DigestedAttrs)):
        key = values.save(value)
        assert type(values.storage[key]) is form
        assert values.load(key) == value
    assert values.child_digests(digest(run)) == [digest([1, 2])]


class Pair:
    def __init__(self, left, right):
        self.left, self.right = left, right

    def __eq__(self, other):
        return type(other) is Pair and (self.left, self.right) == (other.left, other.right)

    def __digest__(self):
        return (self.left, self.right)


def test_registered_destructurer():
    register_destructurer(
        lambda v: type(v) is Pair,
        lambda v: DigestedFields(Pair, {"left": v.left, "right": v.right}),
    )
    values = ValueMemory()
    big = np.ones(10)
    key = values.save(Pair(big, [1]))
    assert isinstance(values.storage[key], Digested) and isinstance(
        values.storage[key], HasChildDigests
    )
    loaded = values.load(key)
    assert type(loaded) is Pair and loaded.right == [1] and (loaded.left == big).all()


def test_count_reuses_counts_the_entries_referring_to_each_value():
    values = ValueMemory()
    shared = np.zeros(5)
    values.save({"run": 1, "data": shared})
    values.save({"run": 2, "data": shared})
    uses = values.count_reuses()
    assert uses[digest(shared)] == 2
    assert sum(uses.values()) == 2


def test_forms_are_plain_data():
    assert DigestedIterable((1, 2)).restore([1, 2]) == (1, 2)
    assert DigestedDict({"a": Digest("0" * 32)}).child_digests() == [Digest("0" * 32)]


def test_entries_written_before_the_digested_forms_still_load(tmp_path):
    # Entries of earlier fleche versions pickled Node/Ref; they load and keep their parts alive.
    from fleche.storage import PickleFileBackend, ValuePickleFile
    from fleche.storage.destructuring import Node, Ref

    values = ValuePickleFile(tmp_path)
    array_key = values.save(list(range(300)))
    legacy = Node("dict", ("runs", Node("list", (1, Ref(array_key))), "name", "a"))
    key = Digest("ab" * 16)
    PickleFileBackend.put(values, legacy, key)  # as the old mixin stored it
    assert values.load(key) == {"runs": [1, list(range(300))], "name": "a"}
    assert list(values.children(key)) == [array_key]
