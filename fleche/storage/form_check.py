"""A destructured value checked from its stored form: one read, its parts not loaded.

A list, tuple or dict is stored with each part kept apart replaced by its
digest, and a digest digests like the value it names, so the stored form
digests to the container's key with no part loaded: ``verify`` reads every
value once, each part as itself.  Other forms are rebuilt to be digested.
"""

from __future__ import annotations

import dataclasses

from ..digest import Digest, digest
from ._legacy_forms import Node, Ref
from .base import StorageBackend, examined
from .destructuring import Digested, DigestedDict, DigestedIterable, stored_parts

__all__ = ["FormCheck"]


@dataclasses.dataclass(frozen=True)
class FormCheck(StorageBackend):
    """``examine`` from the stored form; place right after ``DestructuringMixin`` in the bases."""

    def _examine(self, key: Digest) -> tuple[Digest | None, list[Digest]]:
        # docstring inherited
        form = super().get(key)  # type: ignore[safe-super]  # below the mixin: as stored
        parts = stored_parts(form, key)
        kind = type(form)
        if kind is DigestedIterable or kind is DigestedDict:
            return digest(form.items), parts
        if parts or kind is Node or kind is Ref or isinstance(form, Digested):
            return examined(lambda: self.get(key), parts)  # rebuilt: its parts loaded
        return digest(form), parts
