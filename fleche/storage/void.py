"""Storages that keep nothing: caching switched off without a branch."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from ..digest import Digest
from .base import CallMixin, StorageBackend, ValueMixin

__all__ = ["CallVoid", "ValueVoid", "VoidBackend"]


@dataclasses.dataclass(frozen=True)
class VoidBackend(StorageBackend):
    """Accepts every put and forgets it; every get is a miss."""

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        return key

    def get(self, key: Digest) -> Any:
        # docstring inherited
        raise KeyError(key)

    def _contains(self, key: Digest) -> bool:
        return False

    def _evict(self, key: Digest) -> None:
        raise KeyError(key)

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        return iter(())


@dataclasses.dataclass(frozen=True)
class ValueVoid(ValueMixin, VoidBackend):
    """A value storage that stores nothing."""


@dataclasses.dataclass(frozen=True)
class CallVoid(CallMixin, VoidBackend):
    """A call storage that stores nothing: every call is computed."""
