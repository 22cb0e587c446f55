"""A hypothesis state machine that drives a value storage beside a dict model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ..digest import Digest, digest
from ..storage.base import ValueStorage

__all__ = ["value_state_machine"]


def _nested_values() -> Any:
    """Small JSON-like values: leaves, lists and dicts nested a few levels."""
    from hypothesis import strategies as st

    leaves = st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(
        leaves,
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3)
        ),
        max_leaves=8,
    )


def _descendants(storage: ValueStorage, key: Digest) -> set[Digest]:
    """Every value stored as a part of the one under ``key``, at any depth."""
    found: set[Digest] = set()
    todo = list(storage.children(key))
    while todo:
        child = todo.pop()
        if child not in found:
            found.add(child)
            todo.extend(storage.children(child))
    return found


def value_state_machine(make: Callable[[], ValueStorage]) -> type:
    """A hypothesis state machine driving a value storage beside a dict model.

    ``make`` builds a fresh, empty storage; the returned class is a
    ``unittest.TestCase`` (``.TestCase``) that pytest collects.
    """
    from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

    class ValueMachine(RuleBasedStateMachine):
        keys = Bundle("keys")

        def __init__(self) -> None:
            super().__init__()
            self.storage = make()
            self.model: dict[Digest, Any] = {}

        @rule(target=keys, value=_nested_values())
        def save(self, value: Any) -> Digest:
            key = self.storage.save(value)
            assert key == digest(value)
            self.model[key] = value
            return key

        @rule(key=keys)
        def load(self, key: Digest) -> None:
            if key in self.model:
                assert digest(self.storage.load(key)) == key
            else:  # evicted, or dropped from the model; if it loads, it is right
                try:
                    assert digest(self.storage.load(key)) == key
                except KeyError:
                    pass

        @rule(key=keys)
        def evict(self, key: Digest) -> None:
            if key not in self.model:
                return
            # values holding the evicted one as a stored child cannot load any more
            for other in list(self.model):
                if other != key and key in _descendants(self.storage, other):
                    del self.model[other]
            self.storage.evict(key)
            del self.model[key]
            with pytest.raises(KeyError):
                self.storage.load(key)

        @rule(key=keys)
        def short_names(self, key: Digest) -> None:
            if key in self.model:
                assert self.storage.expand(self.storage.shrink(key)) == key

        @invariant()
        def contains_model(self) -> None:
            for key in self.model:
                assert self.storage.contains(key)

    return ValueMachine
