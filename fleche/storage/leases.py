"""Leases: which process computes a missed call, recorded in the store all of them share.

A lease is a capability a call storage declares: :meth:`CallStorage.leases()
<fleche.storage.base.CallStorage.leases>` returns where its leases are kept
(a :class:`LeaseBackend`), or ``None`` for a store no other process sees.
Each medium keeps them beside its records: lease files under a file store
(:mod:`fleche.storage.file_leases`), byte locks beside a SQLite database
(:mod:`fleche.storage.lock_leases`), rows of a table in a SQL database
(:mod:`fleche.storage.sql_leases`).  Caches forward the capability; the decorator's
single flight (:mod:`fleche.single_flight`) takes the lease of a missed
call before computing it.

A lease that expires lapses :data:`LEASE_SECONDS` after it was last renewed
(the environment variable ``FLECHE_LEASE_SECONDS`` overrides it); its
holder renews it while the body runs (:func:`keep_renewed`, one background
thread for the whole process), so a crashed holder blocks the others
for one expiry at most, and not at all on its own host once its process is
gone (:func:`holder_gone`).  A lease names its holder by host (host name
and boot id), pid namespace and pid: a holder on another host is judged
by its lease's expiry and renewals alone, never by a pid looked up here.  Leases decide only who computes, never what is
stored, so a failing lease costs at worst a duplicate computation.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import warnings
from typing import Any, ClassVar, Protocol

from ..errors import CacheWarning

__all__ = [
    "LEASE_SECONDS",
    "LeaseBackend",
    "holder_gone",
    "keep_renewed",
    "lease_owner",
    "lease_seconds",
    "stop_renewing",
]

#: How long (seconds) a lease lasts unless renewed; ``FLECHE_LEASE_SECONDS`` overrides it.
LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    """The lease duration in force: ``FLECHE_LEASE_SECONDS``, else :data:`LEASE_SECONDS`."""
    value = os.environ.get("FLECHE_LEASE_SECONDS")
    try:
        return float(value) if value else LEASE_SECONDS
    except ValueError:
        warnings.warn(
            f"FLECHE_LEASE_SECONDS={value!r} is not a number of seconds; using {LEASE_SECONDS:g}",
            CacheWarning,
            stacklevel=2,
        )
        return LEASE_SECONDS


class LeaseBackend(Protocol):
    """Where the leases of one store are recorded; every method is safe across processes."""

    #: Whether a lease lapses unless renewed (the holder then renews it while the body runs).
    expires: ClassVar[bool]
    #: Whether processes of many hosts share these leases: a taker then reads the
    #: store once more, since the call may have been stored while the lease was free.
    across_hosts: ClassVar[bool]

    def acquire(self, key: str, duration: float) -> Any | None:
        """Take the lease of ``key`` for ``duration`` seconds; a token, or ``None`` if another holds it.

        Never waits for a holder.  An expired lease, or one whose holder is
        known to be dead, is taken over.
        """

    def renew(self, key: str, token: Any, duration: float) -> None:
        """Extend a lease held with ``token`` by ``duration`` seconds from now."""

    def release(self, key: str, token: Any) -> None:
        """Give a lease back (only if ``token`` still holds it)."""


@functools.cache
def _here() -> dict[str, str]:
    """Where a pid means the same process: this host (name and boot) and pid namespace.

    The boot id tells apart two hosts of one name, or one host before and
    after a reboot; the pid namespace, two containers of one host.
    """
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
    except OSError:  # not Linux: no boot id, so no pid is ever judged (leases expire instead)
        boot = ""
    return {"host": socket.gethostname(), "boot": boot, "pidns": namespace}


def lease_owner() -> dict[str, Any]:
    """A new owner for a lease taken by this process: host, boot id, pid namespace, pid and a nonce."""
    return {**_here(), "pid": os.getpid(), "nonce": os.urandom(8).hex()}


def holder_gone(owner: Any) -> bool:
    """Whether the process ``owner`` (from :func:`lease_owner`) is known to be gone.

    Known only where its pid means the same process as here: same host
    name, boot id and pid namespace.  A holder on another host (or one
    recorded without a boot id, by an older fleche or on a system without
    one), or something unreadable, counts as alive: its lease's expiry
    decides.
    """
    here = _here()
    if not here["boot"] or not isinstance(owner, dict):
        return False
    if any(owner.get(name) != value for name, value in here.items()):
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. another user's live process
    return False


# -- renewing the leases this process holds ----------------------------------------------


class Held:
    """A lease this process holds and renews (from :func:`keep_renewed`)."""

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
        self._held: dict[int, Held] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake_at = 0.0

    def hold(self, held: Held) -> None:
        with self._changed:
            self._held[id(held)] = held
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fleche-lease-renewer", daemon=True
                )
                self._thread.start()
            elif held.due < self._wake_at:
                self._changed.notify()

    def drop(self, held: Held) -> None:
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
                        with contextlib.suppress(Exception):  # it expires: at worst a duplicate
                            held.backend.renew(held.key, held.token, held.duration)


_renewer = _Renewer()


def _new_renewer() -> None:
    """A forked child holds none of its parent's leases, nor its renewer thread."""
    global _renewer
    _renewer = _Renewer()


os.register_at_fork(after_in_child=_new_renewer)


def keep_renewed(backend: LeaseBackend, key: str, token: Any, duration: float) -> Held:
    """Renew the lease ``token`` of ``key`` in the background until :func:`stop_renewing`."""
    held = Held(backend, key, token, duration)
    _renewer.hold(held)
    return held


def stop_renewing(held: Held) -> None:
    """Renew ``held`` no more; returns once no renewal of it is under way."""
    _renewer.drop(held)
