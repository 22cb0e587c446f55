"""Writes sent on background threads, and waiting for them by the keys they store.

What :meth:`~fleche.storage.ahead.SavesAhead.save_ahead` of a storage with
slow writes uses: the bytes are taken in the caller's thread, the requests
run on a small shared pool while the caller goes on (a call's body, its
result's write), and ``settle`` waits for the keys a record is about to
name.  A failed write stays visible until a settle reports it, so a record
never names a value whose write failed.  The pool's threads are joined at
interpreter exit: a write started is finished.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import SaveError

__all__ = ["PendingWrites", "WORKERS"]

#: Threads sending background writes, shared by every storage of the process.
WORKERS = 4
_pool: dict[str, ThreadPoolExecutor] = {}
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    pool = _pool.get("writes")
    if pool is None:
        with _pool_lock:  # one pool, however many threads start the first write
            pool = _pool.get("writes") or ThreadPoolExecutor(
                WORKERS, thread_name_prefix="fleche-writes"
            )
            _pool["writes"] = pool
    return pool


class PendingWrites:
    """The background writes of one storage that have not succeeded yet, by the keys they store."""

    def __init__(self) -> None:
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def start(self, keys: list[str], send: Callable[[], None]) -> None:
        """Run ``send()`` (the writes of ``keys``) on the pool; it replaces earlier writes of them."""
        future = _executor().submit(send)
        with self._lock:
            for key in keys:
                self._futures[key] = future
        future.add_done_callback(functools.partial(self._done, keys))

    def _done(self, keys: list[str], future: Future[None]) -> None:
        error = future.exception()
        if error is None:
            self._forget(keys, future)
        else:  # stays for settle to report; without its frames, which hold the bytes sent
            error.__traceback__ = None

    def _forget(self, keys: Iterable[str], future: Future[None]) -> None:
        """Drop the entries of ``keys`` that are still ``future``'s (not a later write's)."""
        with self._lock:
            for key in keys:
                if self._futures.get(key) is future:
                    del self._futures[key]

    def wait(self, key: str) -> bool:
        """Wait for a write of ``key`` still running, whatever its outcome; whether there was one."""
        future = self._futures.get(key)
        if future is None:
            return False
        future.exception()
        return True

    def wait_all(self) -> None:
        """Wait for every write started so far, whatever its outcome."""
        for future in list(self._futures.values()):
            future.exception()

    def settle(self, keys: Iterable[str]) -> None:
        """Wait for the writes of ``keys``; :class:`SaveError` if one failed (reported once)."""
        failure: tuple[str, BaseException] | None = None
        for key in keys:
            future = self._futures.get(key)
            if future is None:
                continue
            error = future.exception()
            if error is not None:
                self._forget([key], future)
                failure = failure or (key, error)
        if failure is not None:
            key, error = failure
            raise SaveError(
                f"the value {key[:12]} could not be stored: {type(error).__name__}: {error}"
            ) from error
