"""Containers stored as separately kept, deduplicated children.

A result that is a dict of arrays, a list of DataFrames or a dataclass of
both is stored as one small node that refers to each heavy child by digest.
A child that appears in many results (the same input array, the same
parameter table) is then stored once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..digest import Digest, digest
from .base import StorageBackend

__all__ = ["DestructuringMixin", "Node", "Ref"]

#: Leaves kept inside their parent node: small, cheap to copy, never shared.
_SCALARS = (type(None), bool, int, float, complex, str)
#: Strings and bytes longer than this are stored as children of their own.
_INLINE_LIMIT = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """A child stored under its own key.

    A private type (not a bare :class:`Digest`), so that a user value
    holding ``Digest`` objects round-trips unchanged.
    """

    key: Digest


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """A destructured container: its kind and its children (inline or :class:`Ref`)."""

    kind: str  # "list", "tuple", "dict" or "dataclass"
    items: tuple[Any, ...]
    cls: type | None = None  # the dataclass, for kind "dataclass"


def _destructurable(value: Any) -> bool:
    tp = type(value)
    if tp in (list, tuple, dict):
        return True
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and _rebuildable(tp)


def _rebuildable(cls: type) -> bool:
    """A dataclass is rebuilt through ``cls(**fields)``: every field must be an init field."""
    return all(f.init for f in dataclasses.fields(cls))


def _leaf_depth(value: Any) -> float:
    """0 for small scalars (kept inline), infinity for everything heavy (kept apart)."""
    if type(value) in _SCALARS and not (type(value) is str and len(value) > _INLINE_LIMIT):
        return 0
    if type(value) is bytes and len(value) <= _INLINE_LIMIT:
        return 0
    return math.inf


@dataclasses.dataclass(frozen=True, kw_only=True)
class DestructuringMixin(StorageBackend):
    """Splits lists, tuples, dicts and dataclasses into separately stored children.

    Place before a concrete backend in the MRO::

        @dataclass(frozen=True)
        class ValueMemory(ValueMixin, DestructuringMixin, MemoryBackend): ...

        vm = ValueMemory(storage={})
        key = vm.save([1, [2, 3]])
        assert vm.load(key) == [1, [2, 3]]

    The depth of a subtree is 0 for a small scalar, infinite for a heavy
    leaf (an array, a frame, a long string) and one more than its deepest
    child for a container.  A child whose depth is at most
    ``remaining_depth`` is kept inline in its parent; any other child is
    stored under its own digest, so equal children are stored once.  With
    the default 0, scalars stay inline and every container and heavy leaf
    is stored apart.
    """

    remaining_depth: int = 0

    def _intern_rec(self, value: Any, key: Digest | None = None) -> tuple[Any, float]:
        """Store the children of ``value`` bottom up; returns ``(stored form, depth)``.

        Post-order: the children are interned first and each is inlined or
        stored on the way back up, so every node is visited once.  The stored
        form is the value itself for a leaf, a :class:`Node` for a container.
        """
        if not _destructurable(value):
            return value, _leaf_depth(value)
        if type(value) is dict:
            pairs = [(self._child(k), self._child(v)) for k, v in value.items()]
            items = tuple(x for pair in pairs for x in pair)
            depth = max((d for pair in pairs for _, d in pair), default=0)
            node = Node("dict", tuple(form for form, _ in items))
        elif type(value) in (list, tuple):
            children = [self._child(v) for v in value]
            depth = max((d for _, d in children), default=0)
            node = Node(type(value).__name__, tuple(form for form, _ in children))
        else:
            children = [self._child(getattr(value, f.name)) for f in dataclasses.fields(value)]
            depth = max((d for _, d in children), default=0)
            names = tuple(f.name for f in dataclasses.fields(value))
            node = Node(
                "dataclass",
                tuple(zip(names, (form for form, _ in children), strict=True)),
                type(value),
            )
        return node, depth + 1

    def _child(self, value: Any) -> tuple[Any, float]:
        """One child: inline if shallow enough, else stored under its digest."""
        form, depth = self._intern_rec(value)
        if depth <= self.remaining_depth:
            return form, depth
        key = digest(value)
        super().put(form, key)
        return Ref(key), depth

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        form, _ = self._intern_rec(value, key)
        return super().put(form, key)

    def get(self, key: Digest | Any) -> Any:
        # docstring inherited
        return self._reassemble(super().get(key))

    def _children(self, key: Digest) -> list[Digest]:
        found: list[Digest] = []
        todo = [super().get(key)]
        while todo:
            form = todo.pop()
            if type(form) is Ref:
                found.append(form.key)
            elif type(form) is Node:
                # reversed onto the stack: children come out in container order (lineage shows them so)
                todo.extend(reversed([x[1] if form.kind == "dataclass" else x for x in form.items]))
        return found

    def _reassemble(self, form: Any) -> Any:
        if type(form) is Ref:
            return self._reassemble(super().get(form.key))
        if type(form) is not Node:
            return form
        items = [self._reassemble(x) for x in form.items] if form.kind != "dataclass" else None
        if form.kind == "list":
            return items
        if form.kind == "tuple":
            return tuple(items)
        if form.kind == "dict":
            return dict(zip(items[::2], items[1::2], strict=True))
        return form.cls(**{name: self._reassemble(x) for name, x in form.items})
