"""Leases, a capability of call storages: which storages and caches have them, and each backend."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from fleche import (
    Cache,
    CachePool,
    CacheStack,
    CacheWarning,
    FilteredCache,
    ReadOnlyCache,
    RefreshingCache,
    SizeLimitedCache,
    cache,
)
from fleche.caches import memory_cache
from fleche.caches.unavailable import UnavailableCache
from fleche.config import open_cache
from fleche.storage import CallMemory, CallVoid, ValueMemory
from fleche.storage.file_leases import FileLeases
from fleche.storage.leases import LEASE_SECONDS, holder_gone, lease_owner, lease_seconds
from fleche.storage.lock_leases import LockLeases
from fleche.storage.sql_leases import SqlLeases

from .backends import BACKENDS
from .test_no_duplicate_work import (
    STORES,
    computations,
    pickle_store,
    postgres_store,
    sqlite_store,
    square,
)

pytestmark = pytest.mark.timeout(60)

SPAWN = multiprocessing.get_context("spawn")

# -- which storages and caches have leases ------------------------------------------------

#: What ``calls.leases()`` gives for each storage composition of the conformance suite.
EXPECTED = {
    "memory": type(None),
    "sqlite": LockLeases,
    "sqlite-inline": LockLeases,
    "s3": LockLeases,  # calls in SQLite, values in the object store
    "s3-inline": LockLeases,
    "postgres": SqlLeases,
    "postgres-inline": SqlLeases,
    **dict.fromkeys(
        ["pickle", "cloudpickle", "dill", "signed-pickle", "hdf5", "hdf5-grouped"], FileLeases
    ),
}


@pytest.mark.parametrize("backend", BACKENDS, ids=str)
def test_every_call_storage_declares_its_leases(backend, tmp_path):
    calls = backend.calls(tmp_path / "calls")
    leases = calls.leases()
    assert type(leases) is EXPECTED[backend.name]
    assert (leases is not None) == backend.processes  # shared by processes: leases to share
    if isinstance(leases, FileLeases):
        assert leases.root == tmp_path / "calls" / "leases"  # beside the records
    if leases is not None:  # and they work
        token = leases.acquire("k" * 32, 30.0)
        assert token is not None and leases.acquire("k" * 32, 30.0) is None
        leases.release("k" * 32, token)


def test_storages_of_this_process_only_have_no_leases():
    assert CallMemory().leases() is None
    assert CallVoid().leases() is None
    assert memory_cache().leases() is None


def test_the_default_store_has_byte_lock_leases(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    leases = open_cache(str(tmp_path / "store")).leases()
    assert isinstance(leases, LockLeases)
    assert leases.path.name.endswith("-leases") and leases.path.is_relative_to(tmp_path)


def test_a_cache_has_the_leases_of_its_call_storage(tmp_path):
    files = pickle_store(tmp_path)
    assert files.leases() == files.calls.leases() == FileLeases(root=tmp_path / "calls" / "leases")
    sqlite = sqlite_store(tmp_path).leases()
    assert isinstance(sqlite, LockLeases) and sqlite.path == tmp_path / "calls.db-leases"


def test_a_stack_has_the_leases_of_its_lowest_layer_that_has_some(tmp_path):
    memory = Cache(ValueMemory(), CallMemory())
    upper, lower = pickle_store(tmp_path / "upper"), pickle_store(tmp_path / "lower")
    assert CacheStack([memory, upper]).leases() == upper.leases()
    assert CacheStack([upper, lower]).leases() == lower.leases()  # the one shared widest
    assert CacheStack([upper, memory]).leases() == upper.leases()
    assert CacheStack([upper, ReadOnlyCache(lower)]).leases() == upper.leases()
    assert CacheStack([memory, memory_cache()]).leases() is None


def test_wrappers_forward_leases_unless_they_never_write_or_always_compute(tmp_path):
    files = pickle_store(tmp_path)
    assert FilteredCache(files, lambda call: True).leases() == files.leases()
    assert SizeLimitedCache(files, max_bytes=10**6).leases() == files.leases()
    assert ReadOnlyCache(files).leases() is None
    assert RefreshingCache(files).leases() is None  # a rerun computes whoever else computes
    assert CachePool([files]).leases() is None


def test_a_remote_cache_has_no_leases(tmp_path):
    from .test_remote import PipeCache

    assert PipeCache(pickle_store(tmp_path)).leases() is None  # the server's store coordinates


def test_an_unavailable_store_has_the_leases_of_the_store_once_it_opens(tmp_path):
    files, now, attempts = pickle_store(tmp_path), [0.0], []

    def opener():
        attempts.append(now[0])
        if now[0] < 30:
            raise OSError("still down")
        return files

    with pytest.warns(CacheWarning, match="down"):
        stand_in = UnavailableCache(
            "s", opener, OSError("down"), ReadOnlyCache(files), clock=lambda: now[0]
        )
    assert stand_in.leases() is None  # the fallback stores nothing: nothing to coordinate
    now[0] = 31.0
    assert stand_in.current() is files
    assert stand_in.leases() == files.leases()


def test_the_lease_duration_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("FLECHE_LEASE_SECONDS", raising=False)
    assert lease_seconds() == LEASE_SECONDS
    monkeypatch.setenv("FLECHE_LEASE_SECONDS", "2.5")
    assert lease_seconds() == 2.5
    monkeypatch.setenv("FLECHE_LEASE_SECONDS", "soon")
    with pytest.warns(CacheWarning, match="not a number"):
        assert lease_seconds() == LEASE_SECONDS


# -- the lease backends -------------------------------------------------------------------


def sqlite_table_leases(root: Path) -> SqlLeases:
    """Leases as rows of a SQLite table: where POSIX locks are missing or for ``file:`` URIs."""
    from fleche.storage import Sql

    return SqlLeases(store=Sql(url=str(root / "calls.db")))


LEASES = {
    "pickle": lambda root: pickle_store(root).leases(),
    "sqlite": lambda root: sqlite_store(root).leases(),
    "sqlite-table": sqlite_table_leases,
    "postgres": lambda root: postgres_store(root).leases(),
}


@pytest.mark.parametrize("backend", LEASES)
def test_a_lease_is_exclusive_until_released(backend, tmp_path):
    leases = LEASES[backend](tmp_path)
    token = leases.acquire("k" * 32, 30.0)
    assert token is not None
    assert leases.acquire("k" * 32, 30.0) is None
    other = leases.acquire("j" * 32, 30.0)
    assert other is not None  # keys are independent
    leases.renew("k" * 32, token, 30.0)
    leases.release("k" * 32, token)
    again = leases.acquire("k" * 32, 30.0)
    assert again is not None
    leases.release("k" * 32, token)  # a lease given back cannot be released twice
    assert leases.acquire("k" * 32, 30.0) is None
    leases.release("k" * 32, again)
    leases.release("j" * 32, other)


@pytest.mark.parametrize("backend", ["pickle", "sqlite-table", "postgres"])
def test_an_expired_lease_is_taken_over(backend, tmp_path):
    leases = LEASES[backend](tmp_path)
    assert leases.expires
    expired = leases.acquire("k" * 32, 0.0)  # expires at once
    assert expired is not None
    time.sleep(0.05)
    taken = leases.acquire("k" * 32, 30.0)
    assert taken is not None
    leases.release("k" * 32, expired)  # the expired holder cannot release the new lease
    assert leases.acquire("k" * 32, 30.0) is None
    leases.release("k" * 32, taken)


def _hold_lock_lease(path: str, key: str, held) -> None:
    assert LockLeases(Path(path)).acquire(key, 30.0) is not None
    held.set()
    time.sleep(30)  # until killed


def test_a_lock_lease_is_held_by_its_process_and_dies_with_it(tmp_path):
    leases = sqlite_store(tmp_path).leases()
    assert not leases.expires
    held = SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock_lease, args=(str(leases.path), "k" * 32, held))
    holder.start()
    try:
        assert held.wait(30)
        assert leases.acquire("k" * 32, 30.0) is None  # another process holds it
        assert leases.acquire("j" * 32, 30.0) is not None
    finally:
        holder.kill()
        holder.join()
    assert leases.acquire("k" * 32, 30.0) is not None  # at once: no expiry to wait for


def _open_lock_files(under: Path) -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)) and target.endswith("-leases"):
            found.add(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files")
def test_a_process_keeps_few_lock_files_open_and_never_drops_a_held_lease(tmp_path, monkeypatch):
    monkeypatch.setattr("fleche.storage.lock_leases.IDLE_LOCK_FILES", 4)
    held = LockLeases(tmp_path / "held.db-leases")
    token = held.acquire("k" * 32, 30.0)
    for n in range(12):  # many stores, each used once
        other = LockLeases(tmp_path / f"{n}.db-leases")
        other.release("j" * 32, other.acquire("j" * 32, 30.0))
    opened = _open_lock_files(tmp_path)
    assert str(held.path) in opened and len(opened) <= 1 + 4
    results = SPAWN.Queue()
    child = SPAWN.Process(target=_try_lock_lease, args=(str(held.path), "k" * 32, results))
    child.start()
    assert results.get(timeout=30) is False  # its lock was never dropped
    child.join()
    held.release("k" * 32, token)


def _try_lock_lease(path: str, key: str, results) -> None:
    results.put(LockLeases(Path(path)).acquire(key, 30.0) is not None)


def test_a_forked_child_does_not_inherit_lock_leases(tmp_path):
    leases = sqlite_store(tmp_path).leases()
    token = leases.acquire("k" * 32, 30.0)
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=_try_lock_lease, args=(str(leases.path), "k" * 32, results))
    child.start()
    assert results.get(timeout=30) is False  # the parent holds it, not the child
    child.join()
    child = fork.Process(target=_try_lock_lease, args=(str(leases.path), "j" * 32, results))
    child.start()
    assert results.get(timeout=30) is True
    child.join()
    assert leases.acquire("k" * 32, 30.0) is None  # still the parent's
    leases.release("k" * 32, token)


# -- holders on other hosts ---------------------------------------------------------------


def _dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = SPAWN.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    return child.pid


ON_LINUX = os.path.exists("/proc/sys/kernel/random/boot_id")
#: How a lease taken elsewhere differs from one taken by a process of this host.
ELSEWHERE = {
    "another host name": {"host": "elsewhere.example"},
    "another boot": {"boot": "00000000-0000-4000-8000-000000000000"},
    "another pid namespace": {"pidns": "1"},
    "an older fleche (no boot id)": {"boot": None},
}


def _owner(pid: int, change: dict) -> dict:
    owner = {**lease_owner(), "pid": pid, **change}
    return {name: value for name, value in owner.items() if value is not None}


@pytest.mark.skipif(not ON_LINUX, reason="a pid is judged only where the system gives a boot id")
def test_only_a_dead_holder_of_this_host_boot_and_pid_namespace_is_known_gone():
    dead = _dead_pid()
    assert holder_gone(_owner(dead, {}))
    assert not holder_gone(_owner(os.getpid(), {}))
    for change in ELSEWHERE.values():
        assert not holder_gone(_owner(dead, change)), change
    assert not holder_gone("not an owner") and not holder_gone({"pid": dead})


def test_an_owner_names_its_host_boot_pid_namespace_and_process():
    owner = lease_owner()
    assert set(owner) == {"host", "boot", "pidns", "pid", "nonce"}
    assert owner["pid"] == os.getpid() and owner["nonce"] != lease_owner()["nonce"]


def _plant(leases, key: str, owner: dict, duration: float) -> None:
    """A lease of ``owner`` as another process's fleche records it, expiring in ``duration`` s."""
    if isinstance(leases, FileLeases):
        leases.root.mkdir(parents=True, exist_ok=True)
        (leases.root / key).write_text(json.dumps({**owner, "duration": duration}))
        return
    from sqlalchemy import text

    with leases.store.engine.begin() as connection:
        connection.execute(
            text('INSERT INTO fleche_leases ("key", owner, expires) VALUES (:k, :o, :e)'),
            {"k": key, "o": json.dumps(owner), "e": time.time() + duration},
        )


@pytest.mark.parametrize("backend", ["pickle", "sqlite-table", "postgres"])
def test_a_holder_elsewhere_keeps_its_lease_until_it_expires(backend, tmp_path):
    leases = LEASES[backend](tmp_path)
    dead = _dead_pid()  # no such process here, which says nothing of a process elsewhere
    keys = {elsewhere: f"{n}" * 32 for n, elsewhere in enumerate(ELSEWHERE)}
    for elsewhere, key in keys.items():
        _plant(leases, key, _owner(dead, ELSEWHERE[elsewhere]), 1.0)
    for elsewhere, key in keys.items():
        assert leases.acquire(key, 30.0) is None, elsewhere
    time.sleep(1.1)
    for key in keys.values():  # expired: taken over
        token = leases.acquire(key, 30.0)
        assert token is not None
        leases.release(key, token)


@pytest.mark.parametrize("backend", ["sqlite-table", "postgres"])
def test_a_host_whose_clock_runs_ahead_does_not_take_a_live_lease(backend, tmp_path, monkeypatch):
    leases = LEASES[backend](tmp_path)
    token = leases.acquire("k" * 32, 30.0)
    ahead = time.time
    monkeypatch.setattr(time, "time", lambda: ahead() + 3600.0)  # the database's clock decides
    assert leases.acquire("k" * 32, 30.0) is None
    leases.renew("k" * 32, token, 30.0)
    assert leases.acquire("k" * 32, 30.0) is None
    leases.release("k" * 32, token)


@pytest.mark.skipif(not ON_LINUX, reason="a pid is judged only where the system gives a boot id")
@pytest.mark.parametrize("backend", ["pickle", "sqlite-table", "postgres"])
def test_a_dead_holder_of_this_host_loses_its_lease_at_once(backend, tmp_path):
    leases = LEASES[backend](tmp_path)
    _plant(leases, "k" * 32, _owner(_dead_pid(), {}), 30.0)
    token = leases.acquire("k" * 32, 30.0)
    assert token is not None
    leases.release("k" * 32, token)


# -- a call stored between the decorator's read and the lease -------------------------------


def _compute(store: str, root: str, marks: str, results, x: int) -> None:
    with cache(STORES[store](Path(root))):
        results.put(square(x, marks=marks))


class _Late:
    """Leases that let another process compute and store the call before each is taken."""

    def __init__(self, leases, before) -> None:
        self.leases, self.before = leases, before
        self.expires, self.across_hosts = leases.expires, leases.across_hosts

    def acquire(self, key, duration):
        self.before()
        return self.leases.acquire(key, duration)

    def renew(self, key, token, duration):
        self.leases.renew(key, token, duration)

    def release(self, key, token):
        self.leases.release(key, token)


@pytest.mark.parametrize("store", ["postgres"])
def test_a_call_stored_while_its_lease_was_free_is_not_computed_again(store, tmp_path):
    # Leases that serve many hosts: after taking one, the store is read again.
    marks = tmp_path / "marks"
    results = SPAWN.Queue()

    def another_process_computes_it():
        other = SPAWN.Process(target=_compute, args=(store, str(tmp_path), str(marks), results, 5))
        other.start()
        assert results.get(timeout=30) == 25
        other.join()

    class LateCache(Cache):
        def leases(self):
            return _Late(super().leases(), another_process_computes_it)

    base = STORES[store](tmp_path)
    with cache(LateCache(base.values, base.calls)):
        assert square(5, marks=str(marks)) == 25
    assert computations(marks) == 1
