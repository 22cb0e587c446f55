"""No duplicate work: concurrent identical calls compute once, plain or awaited.

:func:`compute_once` (a plain call) and :func:`compute_once_async` (an
awaited one) are the decorator's miss path.  They share one table of the
calls in flight in this process, keyed by (cache, lookup key): the first
caller to miss a call leads and computes it; the others wait for it — a
thread blocks, a coroutine awaits without blocking its event loop — and
then load the stored result, or receive the leader's own result if storing
it failed, or its exception if the body raised.  A leader interrupted
(``KeyboardInterrupt``, ``SystemExit``, a cancelled task) is taken over by
a waiter.

Across processes sharing a store, the leader also holds the call's lease
while the body runs (where the cache keeps leases:
:meth:`~fleche.caches.CacheBase.leases`, :mod:`fleche.storage.leases`),
renewed in the background.  Taking a lease never blocks: a process that
finds it held polls the store with backoff (a coroutine awaits its pauses)
until the call appears, or the lease is released or expires and it takes
over.

A miss reads the store once, in the decorator, where leases serve one
host: a leader that gets the lease at its first try computes at once, and
the store is read again only after waiting for another holder.  This
leaves a small window: another leader that stores the call and lets go of
its flight and lease between our read and our taking its place goes
unnoticed, and the call is computed a second time.  At worst a duplicate
computation, never a wrong value: values are content-addressed and every
write is atomic.  Where leases serve many hosts (rows in PostgreSQL:
:attr:`~fleche.storage.leases.LeaseBackend.across_hosts`), the leader
reads the store once more after taking the lease, which closes the
window.  Leases never cost the user a result either: if taking one fails,
the call is computed anyway, with a :class:`~fleche.errors.CacheWarning`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CacheWarning, warn
from .storage.leases import (
    LEASE_SECONDS,
    Held,
    LeaseBackend,
    keep_renewed,
    lease_seconds,
    stop_renewing,
)

if TYPE_CHECKING:  # imported by the awaited path only: ``import fleche`` stays without asyncio
    import asyncio

__all__ = ["POLL_MAX", "POLL_START", "compute_once", "compute_once_async"]

R = TypeVar("R")

#: The first and the longest pause (seconds) between two looks of a waiting process.
POLL_START, POLL_MAX = 0.005, 0.5

_MISSING = object()
#: What a waiter gets from an interrupted leader: look again, and maybe lead.
_AGAIN = object()


class _Flight:
    """One call being computed in this process, and how it ended.

    Its leader computes, then calls :meth:`land` however it ended: the lease
    it took (``claim``) is given back and the flight lands.
    """

    __slots__ = (
        "cache",
        "claim",
        "done",
        "error",
        "finished",
        "result",
        "slot",
        "task",
        "thread",
        "waiters",
    )

    # Made by _join only, fields and all: no __init__ call on every miss.
    cache: Any  # held, so that id(cache) in the slot is not reused meanwhile
    slot: tuple[int, str]
    claim: _Claim | None
    #: Set when the flight lands; made by the first thread that waits (most flights have none).
    done: threading.Event | None
    thread: int
    task: asyncio.Task | None  # the task leading it, or None for a plain call
    finished: bool
    result: Any
    error: Exception | None
    #: Futures of coroutines awaiting it, each with its loop; None once it has landed.
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] | None

    def land(self, error: BaseException | None, result: Any = None) -> Any:
        """The leader is done: lease given back, flight landed, waiters woken; returns ``result``.

        ``error`` is what the leader raised, or ``None`` if it ended with ``result``.
        """
        if error is None:
            self.result, self.finished = result, True
        elif isinstance(error, Exception):
            self.error = error
        if self.claim is not None:
            self.claim.release()
        with _flights_lock:
            _flights.pop(self.slot, None)
            waiters, self.waiters = self.waiters or [], None
            done = self.done
        if done is not None:
            done.set()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody awaits
                loop.call_soon_threadsafe(_wake, future)
        return result

    def landed(self) -> threading.Event:
        """An event set once the flight has landed, for a thread to wait on."""
        with _flights_lock:
            if self.done is None:
                self.done = threading.Event()
                if self.waiters is None:  # landed already
                    self.done.set()
            return self.done

    def outcome(self, load: Callable[[], Any]) -> Any:
        """What a waiter returns once the flight has landed (or ``_AGAIN``); raises its error."""
        if self.error is not None:
            raise self.error
        if not self.finished:
            return _AGAIN
        found = _try(load)
        return self.result if found is _MISSING else found


_flights: dict[tuple[int, str], _Flight] = {}
_flights_lock = threading.Lock()
_new_flight = object.__new__


def _join(cache: Any, key: str, task: asyncio.Task | None) -> tuple[_Flight, bool]:
    """The flight of the call ``key`` of ``cache``, and whether the caller leads it (it is new)."""
    slot = (id(cache), key)
    with _flights_lock:
        flight = _flights.get(slot)
        if flight is not None:
            return flight, False
        flight = _flights[slot] = _new_flight(_Flight)
        flight.cache, flight.slot, flight.task = cache, slot, task
        flight.claim = flight.done = flight.result = flight.error = None
        flight.thread, flight.finished, flight.waiters = threading.get_ident(), False, []
    return flight, True


def _wake(future: asyncio.Future) -> None:
    if not future.done():  # a waiter cancelled meanwhile
        future.set_result(None)


async def _landed(flight: _Flight) -> None:
    """Until ``flight`` has landed, awaited in the running loop without blocking it."""
    import asyncio

    future = asyncio.get_running_loop().create_future()
    with _flights_lock:
        if flight.waiters is None:
            return
        flight.waiters.append((future.get_loop(), future))
    await future


def compute_once(cache: Any, key: str, load: Callable[[], R], compute: Callable[[], R]) -> R:
    """``compute()`` the call ``key`` of ``cache`` unless another thread or process is already at it.

    ``load()`` reads the stored result (``KeyError`` if not stored); it is
    tried again whenever another computation of the call may have ended.
    """
    while True:
        flight, leading = _join(cache, key, None)
        if leading:
            break
        if flight.thread == threading.get_ident():
            return compute()  # the body calls itself with the same arguments: never wait for it
        flight.landed().wait()
        found = flight.outcome(load)
        if found is not _AGAIN:
            return found
    try:
        claim = flight.claim = _Claim(cache, key, load)
        if claim.waiting:
            for pause in claim.pauses():
                time.sleep(pause)
        result = compute() if claim.found is _MISSING else claim.found
    except BaseException as err:
        flight.land(err)
        raise
    return flight.land(None, result)


async def compute_once_async(
    cache: Any, key: str, load: Callable[[], R], compute: Callable[[], Awaitable[R]]
) -> R:
    """:func:`compute_once` for a coroutine: ``await compute()``, and every wait awaited."""
    import asyncio

    task = asyncio.current_task()
    while True:
        flight, leading = _join(cache, key, task)
        if leading:
            break
        if flight.thread == threading.get_ident() and (flight.task is None or flight.task is task):
            return await compute()  # led by this task, or by the plain call running this loop
        await _landed(flight)
        found = flight.outcome(load)
        if found is not _AGAIN:
            return found
    try:
        claim = flight.claim = _Claim(cache, key, load)
        if claim.waiting:
            for pause in claim.pauses():
                await asyncio.sleep(pause)
        result = await compute() if claim.found is _MISSING else claim.found
    except BaseException as err:
        flight.land(err)
        raise
    return flight.land(None, result)


def _try(load: Callable[[], Any]) -> Any:
    """The stored result, or ``_MISSING`` (an unreadable store counts as a miss: it was reported)."""
    try:
        return load()
    except Exception:
        return _MISSING


#: id(cache) -> (the cache, weakly; the pid; its lease backend): ``leases()`` once per cache and process.
_backends: dict[int, tuple[weakref.ref, int, LeaseBackend | None]] = {}
#: This process's id, kept here (``os.getpid()`` is a system call); set again in a forked child.
_pid = os.getpid()


def _ask_leases(cache: Any) -> LeaseBackend | None:
    """``cache.leases()``, remembered in :data:`_backends` (a cache's leases never change)."""
    backend = cache.leases()
    slot = id(cache)
    with contextlib.suppress(TypeError):  # a cache that cannot be weakly referenced: ask each time
        _backends[slot] = (weakref.ref(cache, lambda ref: _forget(slot, ref)), _pid, backend)
    return backend


def _forget(slot: int, ref: weakref.ref) -> None:
    """Drop a dead cache's entry: its lease backend holds its storage's connections."""
    known = _backends.get(slot)
    if known is not None and known[0] is ref:
        del _backends[slot]


class _Claim:
    """The lease of a call as its leader takes it, if its cache has leases.

    Made, it has tried once: it holds the lease (``token``, renewed in the
    background if it expires), or there is none to take (no leases, or
    they failed: compute anyway), or another process holds it
    (``waiting``).  Then :meth:`pauses` yields how long to wait before each
    next try (the caller sleeps or awaits) and ends holding the lease, or
    with the result the other process stored (``found``).
    """

    __slots__ = ("backend", "duration", "found", "held", "key", "load", "token", "waiting")

    def __init__(self, cache: Any, key: str, load: Callable[[], Any]) -> None:
        self.key, self.load = key, load
        self.token: Any = None
        self.held: Held | None = None
        self.found: Any = _MISSING
        self.waiting = False
        known = _backends.get(id(cache))  # asked once per cache and process
        if known is not None and known[0]() is cache and known[1] == _pid:
            self.backend: LeaseBackend | None = known[2]
        else:
            try:
                self.backend = _ask_leases(cache)
            except Exception as err:
                _warn("find where to record the lease", key, err)
                self.backend = None
        if self.backend is not None:
            # A lease that never lapses (a lock held while its process lives) has no duration.
            self.duration = lease_seconds() if self.backend.expires else LEASE_SECONDS
            self.waiting = not self._take()
            if self.token is not None and self.backend.across_hosts:
                # The call may have been stored, and its lease let go, since the
                # decorator read the store (over a network, a gap worth closing).
                self.found = _try(self.load)
                if self.found is not _MISSING:
                    self.release()

    def pauses(self) -> Iterator[float]:
        pause = POLL_START
        while True:
            yield pause
            pause = min(pause * 1.5, POLL_MAX)
            self.found = _try(self.load)
            if self.found is not _MISSING:
                return
            if self._take():
                break
        if self.token is not None:
            # Waited for another holder: it has likely stored the call before letting go.
            self.found = _try(self.load)
            if self.found is not _MISSING:
                self.release()

    def _take(self) -> bool:
        """Try once to take the lease; whether to stop trying (taken, or failing: go without)."""
        try:
            self.token = self.backend.acquire(self.key, self.duration)
        except Exception as err:
            _warn(f"take the lease in {self.backend}", self.key, err)
            return True
        if self.token is None:
            return False
        if self.backend.expires:
            self.held = keep_renewed(self.backend, self.key, self.token, self.duration)
        return True

    def release(self) -> None:
        """Give the lease back, if held."""
        if self.token is None:
            return
        if self.held is not None:
            stop_renewing(self.held)
        try:
            self.backend.release(self.key, self.token)
        except Exception as err:
            _warn(f"release the lease in {self.backend}", self.key, err)
        self.token = self.held = None


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


def _after_fork() -> None:
    """A forked child holds none of its parent's flights."""
    global _flights_lock, _pid
    _flights.clear()
    _backends.clear()
    _flights_lock = threading.Lock()
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)
