"""Locking mixins: the one layer where threads are serialised.

Both inject their lock through ``_operation_context``; put them before the
concrete storage in the MRO.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import weakref
from collections.abc import Iterator

from ..digest import Digest
from .base import KeyManagement

__all__ = ["PerKeyLockMixin", "SerializingMixin"]


@dataclasses.dataclass(frozen=True, kw_only=True)
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PerKeyLockMixin(KeyManagement):
    """Operations on one key are serialised; different keys run in parallel.

    A small lock guards the table of per-key locks only while a lock is
    fetched.  The per-key locks are reentrant (``expand`` inside ``load``)
    and held weakly, so the table never outgrows the keys in use.
    """

    _key_locks: weakref.WeakValueDictionary[Digest | str, threading.RLock] = dataclasses.field(
        default_factory=weakref.WeakValueDictionary, init=False, repr=False, compare=False
    )
    _meta_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def _get_key_lock(self, key: Digest | str) -> threading.RLock:
        with self._meta_lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.RLock()
            return lock

    @contextlib.contextmanager
    def _operation_context(self, key: Digest | str) -> Iterator[None]:
        lock = self._get_key_lock(key)
        with lock, super()._operation_context(key):
            yield
