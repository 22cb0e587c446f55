"""No duplicate work: concurrent identical calls compute once.

:func:`compute_once` is the decorator's miss path.  Within a process, the
first thread to miss a call becomes its leader; the others wait for it and
then load the stored result — or receive the leader's own result if storing
it failed, or its exception if the body raised (a body interrupted by
``KeyboardInterrupt`` or ``SystemExit`` is taken over by a waiter instead).
Across processes sharing a store, the leader also holds the call's lease
(:mod:`fleche.leases`) while the body runs, renewing it in the background;
other processes poll the store with backoff until the call appears, or the
lease is released or expires and they take over.

Leases never cost the user a result: if taking one fails, the call is
computed anyway, with a :class:`~fleche.errors.CacheWarning`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .errors import CacheWarning, warn
from .leases import LeaseBackend, lease_seconds, leases_of

__all__ = ["POLL_MAX", "POLL_START", "compute_once"]

R = TypeVar("R")

#: The first and the longest pause (seconds) between two looks of a waiting process.
POLL_START, POLL_MAX = 0.005, 0.5

_MISSING = object()


class _Flight:
    """One call being computed in this process, and how it ended."""

    __slots__ = ("cache", "done", "error", "finished", "owner", "result")

    def __init__(self, cache: Any) -> None:
        self.cache = cache  # held, so that id(cache) in the slot is not reused meanwhile
        self.done = threading.Event()
        self.owner = threading.get_ident()
        self.finished = False
        self.result: Any = None
        self.error: Exception | None = None


_flights: dict[tuple[int, str], _Flight] = {}
_flights_lock = threading.Lock()


def compute_once(cache: Any, key: str, load: Callable[[], R], compute: Callable[[], R]) -> R:
    """``compute()`` the call ``key`` of ``cache`` unless another thread or process is already at it.

    ``load()`` reads the stored result (``KeyError`` if not stored); it is
    tried again whenever another computation of the call may have ended.
    """
    slot = (id(cache), key)
    while True:
        with _flights_lock:
            flight = _flights.get(slot)
            if flight is None:
                flight = _flights[slot] = _Flight(cache)
                break
        if flight.owner == threading.get_ident():
            return compute()  # the body calls itself with the same arguments
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        if flight.finished:
            found = _try(load)
            return flight.result if found is _MISSING else found
        # The leader was interrupted: look again, and maybe lead.
    try:
        result = _lead(cache, key, load, compute)
    except Exception as err:
        flight.error = err
        raise
    else:
        flight.result = result
        flight.finished = True
        return result
    finally:
        with _flights_lock:
            _flights.pop(slot, None)
        flight.done.set()


def _try(load: Callable[[], Any]) -> Any:
    """The stored result, or ``_MISSING`` (an unreadable store counts as a miss: it was reported)."""
    try:
        return load()
    except Exception:
        return _MISSING


def _lead(cache: Any, key: str, load: Callable[[], R], compute: Callable[[], R]) -> R:
    """Compute the call as this process's leader: under its lease, if the store has leases."""
    try:
        backend = leases_of(cache)
    except Exception as err:
        _warn("find where to record the lease", key, err)
        backend = None
    if backend is None:
        found = _try(load)  # stored by a leader that finished since our miss
        return compute() if found is _MISSING else found
    duration = lease_seconds()
    pause = POLL_START
    while True:
        try:
            token = backend.acquire(key, duration)
        except Exception as err:
            _warn(f"take the lease in {backend}", key, err)
            return compute()
        if token is not None:
            break
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX)
        found = _try(load)
        if found is not _MISSING:
            return found
    try:
        found = _try(load)  # stored by the holder we waited for, just before it let go
        if found is not _MISSING:
            return found
        if not getattr(backend, "expires", True):
            return compute()  # a lease that lasts as long as this process needs no renewal
        with _renewer.holding(backend, key, token, duration):
            return compute()
    finally:
        try:
            backend.release(key, token)
        except Exception as err:
            _warn(f"release the lease in {backend}", key, err)


_warned: set[tuple[str, type]] = set()


def _warn(what: str, key: str, err: Exception) -> None:
    """Warn once per process for each kind of failure and store: a broken lease store fails every call."""
    if (what, type(err)) in _warned:
        return
    _warned.add((what, type(err)))
    warn(
        f"fleche could not {what} for call {key[:12]} ({type(err).__name__}: {err}); "
        "computing it anyway (another process may compute the same call); "
        "further failures of this kind are not reported",
        CacheWarning,
    )


class _Held:
    """A lease held by this process, renewed until it is dropped."""

    __slots__ = ("alive", "backend", "due", "duration", "key", "lock", "token")

    def __init__(self, backend: LeaseBackend, key: str, token: Any, duration: float) -> None:
        self.backend, self.key, self.token, self.duration = backend, key, token, duration
        self.due = time.monotonic() + duration / 3
        self.lock = threading.Lock()  # a renewal never overlaps the release
        self.alive = True


class _Renewer:
    """One daemon thread that renews every lease this process holds, a third of a duration apart.

    It sleeps until the next renewal is due and ends when no lease is held,
    so taking and giving back a lease for a short call wakes no thread.
    """

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake_at = 0.0

    @contextlib.contextmanager
    def holding(
        self, backend: LeaseBackend, key: str, token: Any, duration: float
    ) -> Iterator[None]:
        held = _Held(backend, key, token, duration)
        with self._changed:
            self._held[id(held)] = held
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fleche-lease-renewer", daemon=True
                )
                self._thread.start()
            elif held.due < self._wake_at:
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._held.pop(id(held), None)
            with held.lock:
                held.alive = False

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._held:
                    self._thread = None
                    return
                now = time.monotonic()
                due = [held for held in self._held.values() if held.due <= now]
                if not due:
                    self._wake_at = min(held.due for held in self._held.values())
                    self._changed.wait(self._wake_at - now)
                    continue
                for held in due:
                    held.due = now + held.duration / 3
            for held in due:
                with held.lock:
                    if held.alive:
                        try:
                            held.backend.renew(held.key, held.token, held.duration)
                        except (
                            Exception
                        ):  # the lease expires then: at worst a duplicate computation
                            pass


_renewer = _Renewer()


def _after_fork() -> None:
    """A forked child holds none of its parent's flights or leases, nor its renewer thread."""
    global _flights_lock, _renewer
    _flights.clear()
    _flights_lock = threading.Lock()
    _renewer = _Renewer()


os.register_at_fork(after_in_child=_after_fork)
