"""The stored forms of destructured containers as fleche wrote them before ``Digested``.

Entries written by earlier versions of this package pickled these two
classes; they stay importable under ``fleche.storage.destructuring`` so
those entries load, and :mod:`fleche.storage.destructuring` reads them as
the forms that replaced them.  Nothing writes them any more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ..digest import Digest

__all__ = ["Node", "Ref", "legacy_refs", "legacy_value"]


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """A child stored under its own key."""

    key: Digest


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """A container: ``kind`` is list, tuple, dict (items key, value, …) or dataclass."""

    kind: str
    items: tuple[Any, ...]
    cls: type | None = None


def legacy_value(form: Any, load: Callable[[Digest], Any]) -> Any:
    """The value an entry written before :class:`Digested` stands for (children loaded)."""
    if type(form) is Ref:
        return load(form.key)
    if type(form) is not Node:
        return form
    if form.kind == "dataclass":
        return form.cls(**{name: legacy_value(x, load) for name, x in form.items})
    items = [legacy_value(x, load) for x in form.items]
    if form.kind == "dict":
        return dict(zip(items[::2], items[1::2], strict=True))
    return items if form.kind == "list" else tuple(items)


def legacy_refs(form: Any) -> Iterable[Digest]:
    """The children an entry written before :class:`Digested` keeps apart, in order."""
    if type(form) is Ref:
        yield form.key
    elif type(form) is Node:
        for item in form.items:
            yield from legacy_refs(item[1] if form.kind == "dataclass" else item)
