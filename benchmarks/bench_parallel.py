"""What "no duplicate work" and wrap_executor cost, against references measured in the same run.

Run:  PYTHONPATH=. python benchmarks/bench_parallel.py [--calls 300]

Rows:
- a miss that stores a small result, on memory, pickle files and SQLite,
  with the single-flight miss path (in-flight table + lease) and, as the
  reference, the same decorated call with it bypassed;
- one lease taken and given back (file, SQLite byte lock, SQL table) next
  to the primitive it rests on (an ``O_EXCL`` create + unlink; ``fcntl.lockf``
  + unlock; a raw ``sqlite3`` insert + delete);
- ``submit(...).result()`` on a thread pool: wrapped vs plain, and a stored
  call, which the wrapped pool resolves without scheduling;
- eight threads making the same 50 ms call at once: computations and wall time.
"""

from __future__ import annotations

import argparse
import contextvars
import fcntl
import itertools
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of, print_table, us  # noqa: E402

import fleche.wrapper  # noqa: E402
from fleche import Cache, cache, wrap_executor  # noqa: E402
from fleche import fleche as cached
from fleche.storage import CallMemory, CallPickleFile, Sql, ValueMemory, ValuePickleFile  # noqa: E402
from fleche.storage.file_leases import FileLeases  # noqa: E402
from fleche.storage.lock_leases import LockLeases  # noqa: E402
from fleche.storage.sql_leases import SqlLeases  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []
COUNTER = itertools.count()


@cached
def tiny(x):
    return x + 1


def stores(root: Path) -> dict[str, Cache]:
    return {
        "memory": Cache(ValueMemory(), CallMemory()),
        "pickle files": Cache(
            ValuePickleFile(root=root / "p" / "values"), CallPickleFile(root=root / "p" / "calls")
        ),
        "sqlite": Cache(
            ValuePickleFile(root=root / "s" / "values"), Sql(url=str(root / "s" / "calls.db"))
        ),
    }


def misses(calls: int, root: Path) -> None:
    single_flight = fleche.wrapper.compute_once

    def bypassed(cache, key, load, compute):
        return compute()

    for name, store in stores(root).items():
        measured = reference = float("inf")
        with cache(store):
            for _ in range(5):  # alternated, so that both see the same load of the machine
                measured = min(
                    measured, best_of(lambda: tiny(next(COUNTER)), number=calls, repeat=1)
                )
                fleche.wrapper.compute_once = bypassed
                try:
                    reference = min(
                        reference, best_of(lambda: tiny(next(COUNTER)), number=calls, repeat=1)
                    )
                finally:
                    fleche.wrapper.compute_once = single_flight
        ROWS.append(
            (
                f"miss + store ({name})",
                us(measured),
                us(reference),
                "reference: single flight bypassed",
            )
        )


def leases(calls: int, root: Path) -> None:
    files = FileLeases(root=root / "leases")
    locks = LockLeases(root / "leases.db-leases")
    sql = SqlLeases(store=Sql(url=str(root / "leases.db")))
    keys = (f"{n:032x}" for n in itertools.count())

    def lease(backend):
        key = next(keys)
        backend.release(key, backend.acquire(key, 60.0))

    os.makedirs(root / "raw", exist_ok=True)

    def raw_file():
        path = str(root / "raw" / next(keys))
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.unlink(path)

    connection = sqlite3.connect(root / "raw.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE l (key TEXT PRIMARY KEY, owner TEXT, expires REAL)")

    def raw_sql():
        key = next(keys)
        connection.execute("INSERT INTO l VALUES (?, 'x', 0)", (key,))
        connection.execute("DELETE FROM l WHERE key = ?", (key,))

    ROWS.append(
        (
            "lease + release (file)",
            us(best_of(lambda: lease(files), calls, 3)),
            us(best_of(raw_file, calls, 3)),
            "reference: O_EXCL create + unlink",
        )
    )
    fd = os.open(root / "raw.lock", os.O_RDWR | os.O_CREAT)

    def raw_lock():
        offset = next(COUNTER)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    ROWS.append(
        (
            "lease + release (sqlite: byte lock, the default)",
            us(best_of(lambda: lease(locks), calls, 3)),
            us(best_of(raw_lock, calls, 3)),
            "reference: fcntl.lockf + unlock",
        )
    )
    ROWS.append(
        (
            "lease + release (sql table)",
            us(best_of(lambda: lease(sql), calls, 3)),
            us(best_of(raw_sql, calls, 3)),
            "reference: raw sqlite3 insert + delete",
        )
    )


def executors(calls: int) -> None:
    with cache(Cache(ValueMemory(), CallMemory())):
        plain = ThreadPoolExecutor(max_workers=2)
        wrapped = wrap_executor(ThreadPoolExecutor(max_workers=2))
        tiny(-1)
        ROWS.append(
            (
                "submit().result(), a function",
                us(best_of(lambda: wrapped.submit(abs, -1).result(), calls, 3)),
                us(best_of(lambda: plain.submit(abs, -1).result(), calls, 3)),
                "reference: plain pool",
            )
        )
        ROWS.append(
            (
                "submit().result(), stored call",
                us(best_of(lambda: wrapped.submit(tiny, -1).result(), calls, 3)),
                us(
                    best_of(
                        lambda: plain.submit(contextvars.copy_context().run, tiny, -1).result(),
                        calls,
                        3,
                    )
                ),
                "reference: plain pool, hit in worker",
            )
        )
        plain.shutdown()
        wrapped.shutdown()


def same_call(threads: int = 8) -> None:
    computed = []

    @cached
    def slow(x):
        computed.append(x)
        time.sleep(0.05)
        return x

    def run(bypass: bool) -> tuple[int, float]:
        computed.clear()
        single_flight = fleche.wrapper.compute_once
        if bypass:
            fleche.wrapper.compute_once = lambda cache, key, load, compute: compute()
        barrier = threading.Barrier(threads)
        store = Cache(ValueMemory(), CallMemory())

        def one():
            with cache(store):
                barrier.wait()
                slow(1)

        try:
            start = time.perf_counter()
            workers = [threading.Thread(target=one) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            return len(computed), time.perf_counter() - start
        finally:
            fleche.wrapper.compute_once = single_flight

    done, seconds = run(False)
    ref_done, ref_seconds = run(True)
    ROWS.append(
        (
            f"{threads} threads, same 50 ms call",
            f"{done} computed, {seconds * 1e3:.0f} ms",
            f"{ref_done} computed, {ref_seconds * 1e3:.0f} ms",
            "reference: single flight bypassed",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="operations per timing run")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fleche-bench-parallel-"))
    try:
        misses(options.calls, root)
        leases(options.calls, root)
        executors(options.calls)
        same_call()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(
        "single flight, leases and wrap_executor",
        ["operation", "fleche", "reference", "note"],
        ROWS,
    )


if __name__ == "__main__":
    main()
