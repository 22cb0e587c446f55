"""In-process storage: a dict, with a sorted key index for short digests."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from sortedcontainers import SortedList

from ..digest import Digest
from .base import CallMixin, StorageBackend, ValueMixin
from .destructuring import INLINE_DEPTH, DestructuringMixin

__all__ = ["CallMemory", "MemoryBackend", "ValueMemory"]


@dataclasses.dataclass(frozen=True)
class MemoryBackend(StorageBackend):
    """Objects kept by reference in ``storage`` (no copies on put or get).

    The sorted key index that makes ``expand``/``shrink`` O(log n) is built
    on the first short-digest lookup and kept up to date from then on, so
    stores that never use short digests do not pay for it.
    """

    storage: dict[str, Any] = dataclasses.field(default_factory=dict)
    _index: list[SortedList | None] = dataclasses.field(
        default_factory=lambda: [None], init=False, repr=False, compare=False
    )
    _index_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    supports_prefix_range = True

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        if key not in self.storage:
            with self._index_lock:
                self.storage[key] = value
                index = self._index[0]
                if index is not None:
                    index.add(key)
        elif not self.content_addressed:
            self.storage[key] = value
        return key

    def get(self, key: Digest) -> Any:
        # docstring inherited
        return self.storage[key]

    def _contains(self, key: Digest) -> bool:
        return key in self.storage

    def _evict(self, key: Digest) -> None:
        with self._index_lock:
            del self.storage[key]
            index = self._index[0]
            if index is not None:
                index.discard(key)

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        return iter(list(self.storage))

    def _prefix_range(self, prefix: str) -> Iterable[Digest]:
        with self._index_lock:
            index = self._index[0]
            if index is None:
                index = self._index[0] = SortedList(self.storage)
            return list(index.irange(prefix, prefix + "g", inclusive=(True, False)))


@dataclasses.dataclass(frozen=True)
class ValueMemory(ValueMixin, DestructuringMixin, MemoryBackend):
    """Values in memory; containers split into deduplicated children."""

    content_addressed = True

    remaining_depth: int = dataclasses.field(default=INLINE_DEPTH, kw_only=True)


@dataclasses.dataclass(frozen=True)
class CallMemory(CallMixin, MemoryBackend):
    """Call records in memory, shared by reference (records are immutable)."""
