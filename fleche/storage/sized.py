"""A value storage that keeps account of the size and the last use of its entries.

:class:`SizedValues` wraps any value storage (memory, pickle files, HDF5,
…) and records, in a :class:`~fleche.storage.usage.UsageIndex` beside the
values, the size of every entry it writes, when each was last written or
read, and which parts a container has stored apart.  It declares that
index through :meth:`~fleche.storage.base.ValueStorage.usage`, which is what
a size limit (:class:`~fleche.caches.SizeLimitedCache`) reads to decide what
to evict.

Sizes are estimates: an array's ``nbytes``, the length of ``bytes`` and
``str``, else the pickled length of the value.  The size of a container is
counted on the value itself; its separately stored parts count zero.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..digest import DIGEST_LENGTH, Digest, digest
from .base import ValueStorage
from .usage import UsageIndex

__all__ = ["SizedValues", "size_of"]

#: This process's id, kept up to date across forks: a hit compares it
#: without a system call (benchmarks/bench_stack.py).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class _Counting:
    """A write-only file that only counts bytes."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.size += n
        return n


def size_of(value: Any) -> int:
    """Estimated bytes of ``value``: ``nbytes`` of arrays, ``len`` of bytes/str, else pickled length."""
    if isinstance(value, bytes | bytearray | memoryview):
        return memoryview(value).nbytes
    if isinstance(value, str):
        return len(value)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int) and type(value).__module__.startswith("numpy"):
        return nbytes
    sink = _Counting()
    try:
        pickle.dump(value, sink, protocol=5)
    except Exception:
        return sys.getsizeof(value)
    return sink.size


@dataclasses.dataclass(frozen=True)
class SizedValues(ValueStorage):
    """``values`` with the size and last use of every entry recorded in a usage index.

    Parameters
    ----------
    values
        The value storage whose entries are counted; every operation is
        its own.
    index
        The SQLite file of the bookkeeping, shared by every process using
        the store (put it beside the values); ``None`` keeps it in memory,
        right for a memory storage.
    clock
        Returns the current time in epoch seconds; injected in tests.
    """

    values: ValueStorage
    index: str | Path | None = None
    clock: Callable[[], float] = time.time
    _box: list[Any] = dataclasses.field(
        default_factory=lambda: [None], init=False, repr=False, compare=False
    )
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.index is not None:
            object.__setattr__(self, "index", Path(self.index).expanduser())

    def __str__(self) -> str:
        return str(self.values)

    @property
    def persistent(self) -> bool:  # type: ignore[override]
        # docstring inherited
        return self.values.persistent

    @property
    def read_only(self) -> bool:  # type: ignore[override]
        # docstring inherited
        return self.values.read_only

    def usage(self) -> UsageIndex:
        """This process's connection to the usage index (opened on first use, again after a fork)."""
        index = self._box[0]
        if index is None or index.pid != _PID[0]:
            with self._lock:
                index = self._box[0]
                if index is None or index.pid != _PID[0]:
                    if self.index is not None:
                        self.index.parent.mkdir(parents=True, exist_ok=True)
                    path = None if self.index is None else str(self.index)
                    index = self._box[0] = UsageIndex(path, self.values.contains)
        return index

    # -- writing and reading: the bookkeeping ----------------------------------------

    def save(self, value: Any, key: Digest | None = None) -> Digest:
        # docstring inherited
        key = self.values.save(value, digest(value) if key is None else key)
        usage, now = self.usage(), self.clock()
        if usage.known(key):
            usage.touch(key, now)  # only its use is new
        else:
            usage.add(key, size_of(value), now, self._parts(key))
        return key

    def _parts(self, key: Digest) -> list[tuple[str, str]]:
        """The ``(parent, child)`` edges below ``key``: the parts its storage keeps apart."""
        edges: list[tuple[str, str]] = []
        todo, seen = [key], {key}
        while todo:
            parent = todo.pop()
            try:
                children = list(self.values.children(parent))
            except KeyError:
                continue
            for child in children:
                edges.append((parent, child))
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return edges

    def load(self, key: Digest | str) -> Any:
        # docstring inherited
        value = self.values.load(key)
        index = self._box[0]
        if index is None or index.pid != _PID[0]:
            index = self.usage()
        index.touch(key if len(key) == DIGEST_LENGTH else self.expand(key), self.clock())
        return value

    def _evict(self, key: Digest) -> None:
        self.values.evict(key)
        self.usage().forget(key)

    def evict_unused(self, key: Digest, horizon: float) -> bool:
        # docstring inherited: the wrapped storage's, with the bookkeeping
        removed = self.values.evict_unused(key, horizon)
        if removed:
            self.usage().forget(key)
        return removed

    # -- everything else is the wrapped storage's ------------------------------------------

    def children(self, key: Digest | str) -> Iterable[Digest]:
        # docstring inherited
        return self.values.children(key)

    def reachable(self, roots: Iterable[Digest], *, since: float | None = None) -> set[Digest]:
        # docstring inherited
        return self.values.reachable(roots, since=since)

    def list(self) -> Iterable[Digest]:
        # docstring inherited
        return self.values.list()

    def _contains(self, key: Digest) -> bool:
        return self.values.contains(key)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        return self.values.expand(key)

    def shrink(
        self, *keys: Digest | str, key: Digest | str | None = None
    ) -> Digest | tuple[Digest, ...]:
        # docstring inherited
        return self.values.shrink(*keys, key=key)

    def stored_at(self, key: Digest) -> float | None:
        # docstring inherited
        return self.values.stored_at(key)
