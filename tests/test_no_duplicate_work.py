"""Concurrent identical calls compute once: threads, processes, crashed lease holders."""

from __future__ import annotations

import contextvars
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from fleche import Cache, CacheWarning, cache, fleche
from fleche.storage import CallMemory, CallPickleFile, ValueMemory, ValuePickleFile
from fleche.storage.file_leases import FileLeases
from fleche.storage.lock_leases import LockLeases
from fleche.storage.sql_leases import SqlLeases

pytestmark = pytest.mark.timeout(60)

SPAWN = multiprocessing.get_context("spawn")


@fleche(ignore=("marks", "pause", "hang"))
def square(x, marks="", pause=0.0, hang=False):
    """Marks each computation with a line in ``marks``; ``hang`` never returns."""
    with open(marks, "a") as file:
        file.write(f"{os.getpid()}\n")
    time.sleep(pause)
    while hang:
        time.sleep(1)
    return x * x


@fleche(ignore=("marks",))
def failing(x, marks=""):
    with open(marks, "a") as file:
        file.write("x\n")
    time.sleep(0.3)
    raise ValueError(f"no square of {x}")


def pickle_store(root: Path) -> Cache:
    return Cache(ValuePickleFile(root=root / "values"), CallPickleFile(root=root / "calls"))


def sqlite_store(root: Path) -> Cache:
    from fleche.storage import Sql

    return Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")))


def postgres_store(root: Path) -> Cache:
    from .backends import postgres_calls  # skips unless FLECHE_TEST_POSTGRES_URL names a server

    return Cache(ValuePickleFile(root=root / "values"), postgres_calls(root / "postgres"))


STORES = {"pickle": pickle_store, "sqlite": sqlite_store, "postgres": postgres_store}


def computations(marks: Path) -> int:
    return len(marks.read_text().splitlines()) if marks.exists() else 0


def _wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _call_in_process(
    store: str, root: str, marks: str, start, results, x: int, hang: bool = False
) -> None:
    with cache(STORES[store](Path(root))):
        if start is not None:
            start.wait()
        results.put(square(x, marks=marks, pause=0.5, hang=hang))


# -- within a process -------------------------------------------------------------


def _threads(n, target):
    out, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            out[i] = target()
        except Exception as err:
            errors.append(err)

    # Each thread in a copy of this context: the active cache is a context variable.
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, i)) for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, errors


def test_threads_compute_once(memory, tmp_path):
    marks = tmp_path / "marks"
    out, errors = _threads(8, lambda: square(3, marks=str(marks), pause=0.3))
    assert errors == [] and out == [9] * 8
    assert computations(marks) == 1
    assert square.contains(3)


def test_waiters_receive_the_result_when_storing_it_fails(tmp_path):
    marks = tmp_path / "marks"
    with cache("void"):  # stores nothing: the waiters take the leader's result
        out, errors = _threads(8, lambda: square(4, marks=str(marks), pause=0.3))
    assert errors == [] and out == [16] * 8
    assert computations(marks) == 1


def test_waiters_share_the_leaders_exception(memory, tmp_path):
    marks = tmp_path / "marks"
    out, errors = _threads(6, lambda: failing(5, marks=str(marks)))
    assert len(errors) == 6 and all(isinstance(e, ValueError) for e in errors)
    assert computations(marks) == 1
    assert not failing.contains(5)


def test_a_body_calling_itself_does_not_wait_for_itself(memory):
    @fleche
    def countdown(n, again=True):
        return countdown(n, again=False) if again else n  # another key: no wait

    assert countdown(3) == 3

    calls = []

    @fleche(ignore=("depth",))
    def reentrant(x, depth=0):
        calls.append(depth)
        return reentrant(x, depth=1) + 1 if depth == 0 else x  # the same key, in the same thread

    assert reentrant(1) == 2
    assert calls == [0, 1]


# -- across processes -------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_threads_and_processes_compute_once(store, tmp_path):
    local = STORES[store](tmp_path)  # here first: a store that cannot be had skips the test
    marks = tmp_path / "marks"
    start = SPAWN.Barrier(5)  # the four processes and this one
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=_call_in_process, args=(store, str(tmp_path), str(marks), start, results, 6)
        )
        for _ in range(4)
    ]
    for p in processes:
        p.start()
    gate = threading.Event()
    out = []

    def call():
        gate.wait()
        with cache(local):
            out.append(square(6, marks=str(marks), pause=0.5))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    start.wait(timeout=30)  # every process is about to call
    gate.set()
    for t in threads:
        t.join()
    got = [results.get(timeout=30) for _ in processes]
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert out == [36] * 8 and got == [36] * 4
    assert computations(marks) == 1


@pytest.mark.parametrize("store", STORES)
def test_a_killed_holder_blocks_others_until_its_lease_expires(store, tmp_path, monkeypatch):
    monkeypatch.setenv("FLECHE_LEASE_SECONDS", "1")
    STORES[store](tmp_path)  # here first: a store that cannot be had skips the test
    marks = tmp_path / "marks"
    results = SPAWN.Queue()  # kept referenced until the child has started
    holder = SPAWN.Process(
        target=_call_in_process, args=(store, str(tmp_path), str(marks), None, results, 7, True)
    )
    holder.start()
    try:
        _wait_for(lambda: computations(marks) == 1)  # it holds the lease and runs the body
        os.kill(
            holder.pid, signal.SIGKILL
        )  # not reaped: its pid still exists, only the expiry frees it
        with cache(STORES[store](tmp_path)):
            assert square(7, marks=str(marks)) == 49
            assert square.contains(7)
    finally:
        holder.join()
    assert computations(marks) == 2


@pytest.mark.parametrize("store", STORES)
def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(store, tmp_path):
    # The default expiry (a minute) would time the test out: the dead pid frees the lease.
    STORES[store](tmp_path)  # here first: a store that cannot be had skips the test
    marks = tmp_path / "marks"
    results = SPAWN.Queue()  # kept referenced until the child has started
    holder = SPAWN.Process(
        target=_call_in_process, args=(store, str(tmp_path), str(marks), None, results, 8, True)
    )
    holder.start()
    _wait_for(lambda: computations(marks) == 1)
    holder.kill()
    holder.join()
    with cache(STORES[store](tmp_path)):
        assert square(8, marks=str(marks)) == 64
    assert computations(marks) == 2


@pytest.mark.parametrize("store", STORES)
def test_a_long_computation_keeps_its_lease(store, tmp_path, monkeypatch):
    monkeypatch.setenv("FLECHE_LEASE_SECONDS", "0.3")  # renewed every 0.1 s while the body runs
    marks = tmp_path / "marks"
    first, second = (
        STORES[store](tmp_path),
        STORES[store](tmp_path),
    )  # two caches: only the lease is shared
    out = []

    def lead():
        with cache(first):
            out.append(square(9, marks=str(marks), pause=1.2))

    leader = threading.Thread(target=lead)
    leader.start()
    _wait_for(lambda: computations(marks) == 1)
    with cache(second):
        assert square(9, marks=str(marks)) == 81
    leader.join()
    assert out == [81]
    assert computations(marks) == 1


def test_a_failing_lease_costs_a_warning_not_the_result(tmp_path):
    store = pickle_store(tmp_path)
    (tmp_path / "calls").mkdir()
    (tmp_path / "calls" / "leases").write_text("not a directory")
    marks = tmp_path / "marks"
    with cache(store), pytest.warns(CacheWarning, match="lease"):
        assert square(2, marks=str(marks)) == 4
    with cache(store):
        assert square.contains(2)


# -- the lease backends -------------------------------------------------------------


def test_which_caches_have_leases(tmp_path):
    from fleche import CachePool, CacheStack, ReadOnlyCache, RefreshingCache

    files = pickle_store(tmp_path)
    memory = Cache(ValueMemory(), CallMemory())
    assert memory.leases() is None
    assert isinstance(files.leases(), FileLeases)
    assert files.leases().root == tmp_path / "calls" / "leases"
    sqlite = sqlite_store(tmp_path).leases()
    assert isinstance(sqlite, LockLeases) and sqlite.path == tmp_path / "calls.db-leases"
    assert isinstance(CacheStack([memory, files]).leases(), FileLeases)
    assert ReadOnlyCache(files).leases() is None
    assert RefreshingCache(files).leases() is None
    assert CachePool([files]).leases() is None


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


def test_an_empty_lease_file_is_taken_over_within_seconds(tmp_path):
    # A holder killed between creating its lease file and writing its owner
    # must not make the next caller wait a whole expiry (a minute).
    store = pickle_store(tmp_path)
    leases = store.leases()
    key = square.digest(11)
    leases.root.mkdir(parents=True, exist_ok=True)
    (leases.root / key).write_bytes(b"")
    marks = tmp_path / "marks"
    start = time.monotonic()
    with cache(store):
        assert square(11, marks=str(marks)) == 121
    assert time.monotonic() - start < 10.0
    assert computations(marks) == 1
