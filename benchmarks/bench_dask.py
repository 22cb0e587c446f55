"""fleche on a local Dask cluster: sweep throughput with 2 workers against 1, and per-task overhead.

Run:  PYTHONPATH=. python benchmarks/bench_dask.py [--calls 60] [--work 0.05] [--tasks 200] [--store s3]

Rows, all in the same run, through ``wrap_executor(client.get_executor(pure=False))``,
on a store of pickle files + SQLite in a temporary directory, or with
``--store s3`` on the configuration of a cluster: values in the object
store ``FLECHE_TEST_S3_URL``/``FLECHE_TEST_S3_ENDPOINT`` names, calls in
the PostgreSQL database of ``FLECHE_TEST_POSTGRES_URL`` (a fresh prefix
and schema for each store):

- a sweep of ``--calls`` distinct calls whose body takes ``--work`` seconds
  (a sleep: the machine's cores are shared), on 1 and on 2 worker processes,
  next to the same sweep of the bare function on plain Dask (each worker
  has imported fleche and opened the store before the clock starts);
- ``--tasks`` tasks of a body that does nothing, submitted at once and
  gathered: a bare Dask task, a decorated call computed and stored (a
  miss), and a stored call (a hit, resolved at submission); and one task
  at a time (submit, then wait), bare and a decorated miss.

The functions live in this script's ``__main__``, so the decorated one is
sent to the workers by value (fleche/shipping.py), as a notebook's would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import ms, print_table, us  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from fleche import cache, fleche, wrap_executor  # noqa: E402
from fleche.config import from_config  # noqa: E402


def body(x: int, seconds: float) -> int:
    if seconds:
        time.sleep(seconds)
    return x * x


cached = fleche(version="1", ignore=("seconds",))(body)
#: Each figure is the best of this many rounds, the candidates taking turns.
ROUNDS = 3


def batch(pool, fn: Callable[..., int], xs: range, seconds: float) -> float:
    """Seconds per task of submitting all of ``xs`` at once and gathering the results."""
    start = time.perf_counter()
    futures = [pool.submit(fn, x, seconds) for x in xs]
    assert [f.result() for f in futures] == [x * x for x in xs]
    return (time.perf_counter() - start) / len(xs)


def one_by_one(pool, fn: Callable[..., int], xs: range) -> float:
    """Seconds per task of submitting a task and waiting for it, one after the other."""
    start = time.perf_counter()
    for x in xs:
        assert pool.submit(fn, x, 0).result() == x * x
    return (time.perf_counter() - start) / len(xs)


Stores = Callable[[str], object]


def file_stores(scratch: str) -> Stores:
    """A store of pickle files + SQLite in ``scratch/<name>`` for each name."""
    return lambda name: str(Path(scratch, name))


def cluster_stores() -> Stores:
    """Values in the test object store, calls in the test PostgreSQL, fresh for each name."""
    import sqlalchemy

    values = f"{os.environ['FLECHE_TEST_S3_URL'].rstrip('/')}/bench-dask-{uuid.uuid4().hex[:8]}"
    postgres = os.environ["FLECHE_TEST_POSTGRES_URL"]

    def store(name: str) -> object:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        engine = sqlalchemy.create_engine(postgres, poolclass=sqlalchemy.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
        calls = sqlalchemy.make_url(postgres).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        return from_config(
            {
                "template": "s3",
                "url": f"{values}/{name}",
                "endpoint": os.environ["FLECHE_TEST_S3_ENDPOINT"],
                "calls": calls.render_as_string(hide_password=False),
            }
        )

    return store


def sweep(client: Client, stores: Stores, calls: int, work: float) -> tuple[float, float]:
    """Calls per second of the sweep, fleche (a fresh store each round) and bare Dask in turn."""
    bare = client.get_executor(pure=False)
    warm = range(-4 * len(client.scheduler_info()["workers"]), 0)
    fleche_best = bare_best = float("inf")
    for round in range(ROUNDS):
        store = stores(f"sweep{len(client.scheduler_info()['workers'])}-{round}")
        with cache(store), wrap_executor(client.get_executor(pure=False)) as pool:
            # Every worker imports fleche and opens the store before the clock starts.
            batch(pool, cached, warm, work)
            fleche_best = min(fleche_best, batch(pool, cached, range(calls), work))
        bare_best = min(bare_best, batch(bare, body, range(calls), work))
    return 1 / fleche_best, 1 / bare_best


def overhead(client: Client, store: object, tasks: int) -> dict[str, float]:
    """Seconds per task of a body that does nothing, bare and through fleche (best of rounds)."""
    bare = client.get_executor(pure=False)
    found: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        found[name] = min(found.get(name, float("inf")), seconds)

    with cache(store), wrap_executor(client.get_executor(pure=False)) as pool:
        batch(pool, cached, range(-tasks, 0), 0)  # warm: the workers have the functions
        for round in range(1, ROUNDS + 1):
            new = range(round * tasks, (round + 1) * tasks)
            keep("bare Dask task (batch)", batch(bare, body, new, 0))
            keep("fleche miss + store (batch)", batch(pool, cached, new, 0))
            keep("fleche hit, at submission (batch)", batch(pool, cached, new, 0))
            keep("bare Dask task (one by one)", one_by_one(bare, body, new[: tasks // 4]))
            unseen = range(-(round + 1) * tasks, -(round + 1) * tasks + tasks // 4)
            keep("fleche miss + store (one by one)", one_by_one(pool, cached, unseen))
    return found


def cluster(workers: int) -> LocalCluster:
    return LocalCluster(
        n_workers=workers,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--work", type=float, default=0.05)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--store", choices=("files", "s3"), default="files")
    options = parser.parse_args()
    rates: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        stores = file_stores(scratch) if options.store == "files" else cluster_stores()
        for workers in (1, 2):
            with cluster(workers) as running, Client(running) as client:
                rates[workers] = sweep(client, stores, options.calls, options.work)
                if workers == 2:
                    costs = overhead(client, stores("overhead"), options.tasks)
    where = "pickle files + SQLite" if options.store == "files" else "object store + PostgreSQL"
    print_table(
        f"Sweep of {options.calls} distinct calls of {ms(options.work)} each, {where}",
        ["workers", "fleche calls/s", "bare Dask calls/s", "fleche speed-up over 1 worker"],
        [
            [n, f"{rates[n][0]:.1f}", f"{rates[n][1]:.1f}", f"{rates[n][0] / rates[1][0]:.2f}×"]
            for n in (1, 2)
        ],
    )
    reference = {"batch": costs["bare Dask task (batch)"]}
    reference["one by one"] = costs["bare Dask task (one by one)"]
    print_table(
        f"Per task, a body that does nothing, 2 workers ({options.tasks} tasks a batch)",
        ["task", "time per task", "minus bare Dask"],
        [
            [name, us(seconds), us(seconds - reference[name.split("(")[1].rstrip(")")])]
            for name, seconds in costs.items()
        ],
    )


if __name__ == "__main__":
    main()
