"""Containers stored as separately kept, deduplicated children.

A result that is a dict of arrays, a list of DataFrames or a dataclass of
both is stored as one small :class:`Digested` form whose parts are either
kept inline or are the :class:`~fleche.digest.Digest` of a value stored on
its own.  A child that appears in many results (the same input array, the
same parameter table) is then stored once.  A list, tuple or dict whose
parts are all kept inline is stored as itself: it loads as it is, with no
form to rebuild (``[x, x / 2]`` unpickles in 0.2 µs instead of 1.1 µs).

A ``Digest`` inside a saved container is such a reference: loading gives
back the value it names.  Since ``digest(Digest(x)) == x``, the container
keeps the digest it would have with the value in place.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from ..digest import Digest, digest
from ._legacy_forms import Node, Ref, legacy_refs, legacy_value
from .base import StorageBackend

__all__ = [
    "INLINE_DEPTH",
    "DestructuringMixin",
    "Digested",
    "DigestedAttrs",
    "DigestedDataclass",
    "DigestedDict",
    "DigestedFields",
    "DigestedIterable",
    "HasChildDigests",
    "register_destructurer",
    "stored_parts",
]

#: Leaves kept inside their parent: small, cheap to copy, never shared.
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
#: Strings and bytes longer than this are stored as children of their own.
_INLINE_LIMIT = 256
_TEXTS = (str, bytes)
#: What an entry that loads as it is can be: a scalar, or a container with every part inline.
_AS_STORED = frozenset({*_SCALARS, list, tuple, dict})
#: ``remaining_depth`` of the value storages fleche ships: scalars and short strings
#: inline, every container and heavy leaf apart.  At 0 a list of 1,000 floats costs
#: 1,001 entries; at 2 a list of records is one entry (20 times faster) but lineage
#: stops at it and equal records are stored twice (benchmarks/bench_destructuring.py).
INLINE_DEPTH = 1


@runtime_checkable
class HasChildDigests(Protocol):
    """A stored form that names other stored values (what gc, verify and lineage follow)."""

    def child_digests(self) -> Iterable[Digest]:
        """The digests of the values this form refers to."""


class Digested(ABC):
    """A container as stored: its parts, each inline or the ``Digest`` of a stored value.

    Subclasses say which parts a container has (:meth:`parts`), how to
    put other parts in their place (:meth:`with_parts`) and how to rebuild
    the container from loaded parts (:meth:`restore`).
    """

    __slots__ = ()

    @abstractmethod
    def parts(self) -> list[Any]:
        """The children, in a fixed order."""

    @abstractmethod
    def with_parts(self, parts: list[Any]) -> Digested:
        """The same form with ``parts`` (as many, in the same order) in place of the children."""

    @abstractmethod
    def restore(self, parts: list[Any]) -> Any:
        """The container these parts (loaded values) make up."""

    def key(self, value: Any) -> Digest:
        """The digest of the container ``value`` this form was made from (override to reuse parts)."""
        return digest(value)

    def child_digests(self) -> list[Digest]:
        """The parts stored apart, by digest."""
        return [part for part in self.parts() if type(part) is Digest]


@dataclasses.dataclass(frozen=True, slots=True)
class DigestedIterable(Digested):
    """A list or tuple; ``items`` is of the container's own type."""

    items: list[Any] | tuple[Any, ...]

    def __setstate__(self, state: list[Any]) -> None:  # not dataclasses' loop: 1/3 of a load
        object.__setattr__(self, "items", state[0])

    def parts(self) -> list[Any]:
        # docstring inherited
        return list(self.items)

    def with_parts(self, parts: list[Any]) -> DigestedIterable:
        # docstring inherited
        return DigestedIterable(self.restore(parts))

    def restore(self, parts: list[Any]) -> Any:
        # docstring inherited
        return parts if type(self.items) is list else type(self.items)(parts)

    def key(self, value: Any) -> Digest:
        # A digest stands for its value, so the stored form digests like the container.
        return digest(self.items)


@dataclasses.dataclass(frozen=True, slots=True)
class DigestedDict(Digested):
    """A dict: its values are the parts, its keys are kept as they are."""

    items: dict[Any, Any]
    key, __setstate__ = DigestedIterable.key, DigestedIterable.__setstate__  # as a list's

    def parts(self) -> list[Any]:
        # docstring inherited
        return list(self.items.values())

    def with_parts(self, parts: list[Any]) -> DigestedDict:
        # docstring inherited
        return DigestedDict(self.restore(parts))

    def restore(self, parts: list[Any]) -> Any:
        # docstring inherited
        return dict(zip(self.items, parts, strict=True))


@dataclasses.dataclass(frozen=True, slots=True)
class DigestedFields(Digested):
    """An object rebuilt as ``cls(**fields)``: the field values are the parts."""

    cls: type
    fields: dict[str, Any]

    def parts(self) -> list[Any]:
        # docstring inherited
        return list(self.fields.values())

    def with_parts(self, parts: list[Any]) -> DigestedFields:
        # docstring inherited
        return type(self)(self.cls, dict(zip(self.fields, parts, strict=True)))

    def restore(self, parts: list[Any]) -> Any:
        # docstring inherited
        return self.cls(**dict(zip(self.fields, parts, strict=True)))


@dataclasses.dataclass(frozen=True, slots=True)
class DigestedDataclass(DigestedFields):
    """A dataclass instance whose fields are all ``__init__`` parameters."""

    @classmethod
    def of(cls, value: Any) -> DigestedDataclass:
        """The form of a dataclass instance, its field values as parts."""
        return cls(type(value), {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})


@dataclasses.dataclass(frozen=True, slots=True)
class DigestedAttrs(DigestedFields):
    """An attrs instance whose attributes are all ``__init__`` parameters (by their alias)."""

    @classmethod
    def of(cls, value: Any) -> DigestedAttrs:
        """The form of an attrs instance, its attribute values as parts."""
        import attrs

        fields = attrs.fields(type(value))
        return cls(type(value), {a.alias: getattr(value, a.name) for a in fields})


def _rebuildable_dataclass(value: Any) -> bool:
    return (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type)
        and all(f.init for f in dataclasses.fields(value))
    )


def _rebuildable_attrs(value: Any) -> bool:
    fields = getattr(type(value), "__attrs_attrs__", None)
    return fields is not None and all(a.init for a in fields)


#: (predicate, form maker), newest first; consulted after lists, tuples and dicts.
_DESTRUCTURERS: list[tuple[Callable[[Any], bool], Callable[[Any], Digested]]] = [
    (_rebuildable_dataclass, DigestedDataclass.of),
    (_rebuildable_attrs, DigestedAttrs.of),
]


def register_destructurer(pred: Callable[[Any], bool], fn: Callable[[Any], Digested]) -> None:
    """Store values for which ``pred(value)`` holds as ``fn(value)``, a :class:`Digested` form.

    The form's parts are then stored like any child (inline or apart, by
    depth).  Registered destructurers are tried newest first, before the
    built-in ones for dataclasses and attrs classes.
    """
    _DESTRUCTURERS.insert(0, (pred, fn))


def _form(value: Any) -> Digested | None:
    """The :class:`Digested` form of a container, ``None`` for a leaf."""
    kind = type(value)
    if kind is list or kind is tuple:
        return DigestedIterable(value)
    if kind is dict:
        return DigestedDict(value)
    if kind in _SCALARS or kind is Digest or isinstance(value, tuple):
        return None  # a leaf; a named tuple (a tuple's subclass) is stored whole, never split
    for pred, fn in _DESTRUCTURERS:
        if pred(value):
            return fn(value)
    return None


def _leaf_depth(value: Any) -> float:
    """0 for small scalars; infinite for heavy leaves and for references (never inline)."""
    kind = type(value)
    if kind in _SCALARS and (kind not in _TEXTS or len(value) <= _INLINE_LIMIT):
        return 0
    return math.inf


#: The forms :class:`DestructuringMixin` writes, read back without an ``isinstance`` test.
_OWN_FORMS = frozenset({DigestedIterable, DigestedDict, DigestedDataclass, DigestedAttrs})


def stored_parts(form: Any, key: Digest) -> list[Digest]:
    """The keys of the values an entry as stored under ``key`` refers to (none for a leaf)."""
    if (kind := type(form)) in _OWN_FORMS or hasattr(kind, "child_digests"):
        return list(form.child_digests())  # HasChildDigests, without the slow protocol test
    if kind is Node or kind is Ref:
        return list(legacy_refs(form))
    return [form] if kind is Digest and form != key else []


@dataclasses.dataclass(frozen=True)
class DestructuringMixin(StorageBackend):
    """Splits lists, tuples, dicts, dataclasses and attrs classes into separately stored children.

    Place before a concrete backend in the MRO::

        @dataclass(frozen=True)
        class ValueMemory(ValueMixin, DestructuringMixin, MemoryBackend): ...

        vm = ValueMemory({})
        key = vm.save([1, [2, 3]])
        assert vm.load(key) == [1, [2, 3]]

    The depth of a value is 0 for a small scalar, infinite for a heavy
    leaf (an array, a frame, a long string) and for a ``Digest``, and one
    more than its deepest child for a container.  An element is kept inline
    in its parent exactly when its depth is below ``remaining_depth``; any
    other element is stored on its own under its digest, so equal elements
    are stored once.  At ``remaining_depth=0`` every element is stored on
    its own; at 1 scalars stay inline and every container is stored apart,
    as a :class:`Digested` form, or as itself if no part of it is apart.
    """

    remaining_depth: int = dataclasses.field(default=0, kw_only=True)

    def _intern_rec(
        self, value: Any, key: Digest | None = None, writes: list[Any] | None = None
    ) -> tuple[Any, int | float]:
        """Post-order traversal: recurse to leaves, decide inline-vs-store on the way back up.

        Returns ``(result, depth)``: the plain value when ``depth <
        remaining_depth`` (inlined in its parent), else the :class:`Digest` it
        was written under (``key``, else its digest; appended to ``writes`` as
        ``(entry, key)`` when a list is given).  Each node is digested once.
        """
        kind = type(value)
        if kind is list or kind is tuple or kind is dict:
            form, parts = None, (value.values() if kind is dict else value)
        else:
            form = _form(value)
            if form is None:
                return self._intern_leaf(value, key, writes)
            parts = form.parts()
        inline = self.remaining_depth > 0
        interned, depth = [], 0
        for part in parts:
            small = type(part)
            if inline and small in _SCALARS and (small not in _TEXTS or len(part) <= _INLINE_LIMIT):
                interned.append(part)  # depth 0: kept inline
                continue
            result, below = self._intern_rec(part, None, writes)
            interned.append(result)
            depth = below if below > depth else depth
        depth += 1
        if depth < self.remaining_depth:
            return value, depth
        if form is not None:
            form = form.with_parts(interned)
            key = form.key(value) if key is None else key
        else:  # a list, tuple or dict digests as its interned items (what form.key gives)
            form = dict(zip(value, interned, strict=True)) if kind is dict else kind(interned)
            key = digest(form) if key is None else key
            if Digest in map(type, interned):  # a part stored apart: the form says to load it
                form = DigestedDict(form) if kind is dict else DigestedIterable(form)
        self._emit(form, key, writes)
        return key, depth

    def _intern_leaf(self, value: Any, key: Digest | None, writes: list | None) -> tuple[Any, Any]:
        """A leaf: kept inline when shallow enough, else stored under ``key`` (or its digest)."""
        depth = _leaf_depth(value)
        if type(value) is Digest or depth < self.remaining_depth:
            return value, depth  # a Digest is a reference to a value stored already
        key = digest(value) if key is None else key
        self._emit(value, key, writes)
        return key, depth

    def _emit(self, entry: Any, key: Digest, writes: list[Any] | None) -> None:
        """Write an entry now, or add it to the ``writes`` of a plan."""
        if writes is None:
            self._write_plan([(entry, key)])
        else:
            writes.append((entry, key))

    def _plan(self, value: Any, key: Digest | None) -> tuple[Digest, list[Any]]:
        # docstring inherited
        kind = type(value)
        if kind is Digest and value == key:
            return key, []  # a value's own digest: a reference to itself, nothing to store
        writes: list[Any] = []
        if kind not in _SCALARS:  # a scalar leaf is stored whole under its key
            result, _ = self._intern_rec(value, key, writes)
            if result is not value:
                return result, writes
        key = digest(value) if key is None else key
        writes.append((value, key))  # shallow enough to be kept whole
        return key, writes

    def _write_plan(self, writes: list[Any]) -> None:
        # docstring inherited
        for entry, key in writes:
            if type(entry) not in _SCALARS and (parts := stored_parts(entry, key)):
                self._writing_parts(key, parts)
            super().put(entry, key)

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        if type(value) in _SCALARS:
            super().put(value, key)  # a leaf is stored whole under its key, whatever its depth
        else:
            self._write_plan(self._plan(value, key)[1])
        return key

    def get(self, key: Digest | Any) -> Any:
        # docstring inherited
        return self._resolve(super().get(key), key)

    def _resolve(self, form: Any, key: Digest) -> Any:
        """The value a stored form stands for: references loaded, containers rebuilt."""
        kind = type(form)
        if kind in _AS_STORED:
            return form  # the common hit (a scalar, a container of inline parts): no form test
        if kind is Digest:
            if form == key:
                raise KeyError(key)  # a reference to itself names no value
            return self.get(form)
        if kind is Node or kind is Ref:  # written by an earlier version of fleche
            return legacy_value(form, self.get)
        if kind in _OWN_FORMS or isinstance(form, Digested):
            return form.restore(
                [self.get(part) if type(part) is Digest else part for part in form.parts()]
            )
        return form

    def _children(self, key: Digest) -> list[Digest]:
        return stored_parts(super().get(key), key)

    def child_digests(self, key: Digest | str) -> list[Digest]:
        """The digests of the values the entry under ``key`` refers to (its parts stored apart)."""
        with self._operation_context(key := self.expand(key)):
            return self._children(key)

    def count_reuses(self) -> Counter[Digest]:
        """How many stored entries refer to each stored value (absent: none); reads every entry."""
        uses: Counter[Digest] = Counter()
        for key in self.list():
            try:
                uses.update(self._children(key))
            except KeyError:
                continue  # evicted meanwhile
        return uses
