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
from fleche.storage import CallPickleFile, ValuePickleFile

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
