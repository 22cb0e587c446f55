"""Locking mixins: the one layer where threads are serialised.

Both inject their lock through ``_operation_context``; put them before the
concrete storage in the MRO.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from ..digest import Digest
from .keys import NO_CONTEXT, KeyManagement

__all__ = ["PerKeyLockMixin", "SerializingMixin"]


@dataclasses.dataclass(frozen=True)
class SerializingMixin(KeyManagement):
    """Every operation runs behind one reentrant lock.

    For backends that cannot be used from two threads at once::

        @dataclass(frozen=True)
        class SerializingValueMemory(SerializingMixin, ValueMemory): ...
    """

    _lock: threading.RLock = dataclasses.field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )

    @contextlib.contextmanager
    def _operation_context(self, key: Digest | str) -> Iterator[None]:
        with self._lock, super()._operation_context(key):
            yield


class _KeyLocks(Mapping[Any, threading.RLock]):
    """Reentrant locks by key, made on demand and dropped once no thread holds or awaits one.

    A small guard protects the table only while an entry is counted in or
    out, so the table never outgrows the keys in use.  As a mapping it
    shows the locks in use, by key.
    """

    __slots__ = ("guard", "table")

    def __init__(self) -> None:
        self.guard = threading.Lock()
        #: key -> [its lock, how many threads hold or await it]
        self.table: dict[Digest | str, list[Any]] = {}

    def __getitem__(self, key: Any) -> threading.RLock:
        return self.table[key][0]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.table))

    def __len__(self) -> int:
        return len(self.table)


class _HoldingKey:
    """The context of one operation on a key: its lock held, then the inner context."""

    __slots__ = ("_locks", "_key", "_inner", "_entry")

    def __init__(
        self,
        locks: _KeyLocks,
        key: Digest | str,
        inner: contextlib.AbstractContextManager[None],
    ) -> None:
        self._locks = locks
        self._key = key
        self._inner = inner

    def __enter__(self) -> None:
        locks = self._locks
        with locks.guard:
            entry = locks.table.get(self._key)
            if entry is None:
                entry = locks.table[self._key] = [threading.RLock(), 1]
            else:
                entry[1] += 1
        entry[0].acquire()
        self._entry = entry
        if self._inner is not NO_CONTEXT:
            try:
                self._inner.__enter__()
            except BaseException:
                self._release()
                raise

    def __exit__(self, *exc_info: Any) -> bool | None:
        try:
            if self._inner is not NO_CONTEXT:
                return self._inner.__exit__(*exc_info)
            return None
        finally:
            self._release()

    def _release(self) -> None:
        entry = self._entry
        entry[0].release()
        locks = self._locks
        with locks.guard:
            entry[1] -= 1
            if not entry[1]:
                del locks.table[self._key]


@dataclasses.dataclass(frozen=True)
class PerKeyLockMixin(KeyManagement):
    """Operations on one key are serialised; different keys run in parallel.

    The per-key locks are reentrant (``expand`` inside ``load``) and live
    only while some thread holds or awaits them.  A hit pays two short
    acquisitions of a guard and one of the key's lock, no generator
    (benchmarks/bench_files.py compares it with no lock at all).
    """

    #: The locks of the keys in use (a mapping key -> ``RLock``).
    _key_locks: _KeyLocks = dataclasses.field(
        default_factory=_KeyLocks, init=False, repr=False, compare=False
    )

    @property
    def _meta_lock(self) -> threading.Lock:
        """The ``threading.Lock`` guarding the lock table (held only while an entry is counted)."""
        return self._key_locks.guard

    def _get_key_lock(self, key: Digest | str) -> threading.RLock:
        """The reentrant lock operations on ``key`` take.

        Holding it excludes every operation on ``key``.  A lock fetched here
        and never used stays in the table until the next operation on
        ``key`` ends.
        """
        locks = self._key_locks
        with locks.guard:
            entry = locks.table.get(key)
            if entry is None:
                entry = locks.table[key] = [threading.RLock(), 0]
            return entry[0]

    _context_only_locks: ClassVar[bool] = True
    #: No class below this one in the MRO wraps operations: the lock is the whole context.
    _lock_innermost: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        below = cls.__mro__[cls.__mro__.index(PerKeyLockMixin) + 1 :]
        wrapper = next(c for c in below if "_operation_context" in vars(c))
        cls._lock_innermost = wrapper is KeyManagement

    def _operation_context(self, key: Digest | str) -> contextlib.AbstractContextManager[None]:
        inner = NO_CONTEXT if self._lock_innermost else super()._operation_context(key)
        return _HoldingKey(self._key_locks, key, inner)
