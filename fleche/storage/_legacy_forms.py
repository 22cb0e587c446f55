"""The stored forms of destructured containers as fleche wrote them before ``Digested``.

Entries written by earlier versions of this package pickled these two
classes; they stay importable under ``fleche.storage.destructuring`` so
those entries load, and :mod:`fleche.storage.destructuring` reads them as
the forms that replaced them.  Nothing writes them any more.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..digest import Digest


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
