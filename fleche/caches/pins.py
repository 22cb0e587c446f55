"""Values in use by calls running in this process, kept from being removed.

A call that is prepared but not yet committed has stored its arguments and
no record refers to them yet: garbage collection and the size limit would
see them as unused.  :class:`Pins` counts them (a value may be the argument
of several calls at once) in one place, shared by every cache that removes
values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..digest import Digest

__all__ = ["Pins"]


class Pins:
    """A thread-safe count of pinned value keys."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        # A plain dict, counted by hand: ``Counter.update``/``subtract`` cost more than the miss
        # path's two or three keys.
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pins({len(self._counts)} pinned)"

    def pin(self, keys: Iterable[Digest]) -> None:
        """Pin each key once more."""
        counts = self._counts
        with self._lock:
            for key in keys:
                counts[key] = counts.get(key, 0) + 1

    def unpin(self, keys: Iterable[Digest]) -> None:
        """Release one pin of each key; a key no longer pinned is forgotten."""
        counts = self._counts
        with self._lock:
            for key in keys:
                left = counts.get(key, 0) - 1
                if left > 0:
                    counts[key] = left
                else:
                    counts.pop(key, None)

    def contains(self, key: Digest | str) -> bool:
        """Whether ``key`` is pinned now."""
        with self._lock:
            return key in self._counts

    __contains__ = contains

    def snapshot(self) -> frozenset[Digest]:
        """The keys pinned now."""
        with self._lock:
            return frozenset(self._counts)

    def unless_pinned(self, key: Digest | str, action: Callable[[], Any]) -> bool:
        """Run ``action`` (removing ``key``) unless ``key`` is pinned; whether it ran.

        Checked and run under the lock: a call that pins before it stores
        either sees the value gone and stores it again, or pinned it first
        and the value is kept.
        """
        with self._lock:
            if key in self._counts:
                return False
            action()
            return True
