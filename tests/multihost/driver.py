"""The driver of a multi-host sweep, run on a worker host: ``python3 -m tests.multihost.driver JSON``.

JSON names the store (``db`` for the calls, ``url``, ``endpoint``), the markers
database (``markers``), the Dask scheduler and the sweep (``run``,
``calls`` as a list of arguments, ``pause``).  With ``kill_on`` (a host
name, and ``survivor`` and ``held``) it prints ``{"event": "kill"}`` once that host computes (see
:func:`_kill_sweep`), for the test to kill it, and carries on.  Its last
line holds the calls in the order submitted, their results,
the distinct calls not stored, the marker rows and the wall time.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import Executor

import distributed
import psycopg

from fleche import cache, wrap_executor
from fleche.config import from_config

from .work import MARKERS, work


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def _markers(db: psycopg.Connection, run: str) -> list[tuple]:
    return db.execute(
        "SELECT x, host, pid, started, finished FROM markers WHERE run = %s ORDER BY id", (run,)
    ).fetchall()


def _wait_for_host(db: psycopg.Connection, run: str, host: str, count: int) -> None:
    """Until ``count`` computations of ``run`` are under way on ``host`` (holding their leases)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _markers(db, run)
        if sum(row[1] == host and row[4] is None for row in rows) >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"no {count} computations under way on {host}")


def _on(client: distributed.Client, host: str) -> Executor:
    """An executor whose tasks run on ``host`` while it lives, elsewhere once it is gone."""
    return client.get_executor(pure=False, workers=[host], allow_other_workers=True)


def _kill_sweep(sweep: dict, db: psycopg.Connection, client: distributed.Client) -> list:
    """The first ``held`` calls on the doomed host, then again on the survivor, then the rest.

    ``{"event": "kill"}`` is said once the doomed host computes the first
    ones and the survivor's copies have had half a second to start waiting for
    their leases.
    """
    run, xs, pause, held = sweep["run"], sweep["calls"], sweep["pause"], sweep["held"]
    doomed, survivor = (
        wrap_executor(_on(client, sweep["kill_on"])),
        wrap_executor(_on(client, sweep["survivor"])),
    )
    futures = [doomed.submit(work, run, x, pause) for x in xs[:held]]
    _wait_for_host(db, run, sweep["kill_on"], held)
    futures += [survivor.submit(work, run, x, pause) for x in xs[:held]]
    futures += [survivor.submit(work, run, x, pause) for x in xs[held:]]
    time.sleep(0.5)
    _say({"event": "kill"})
    return futures


def main(sweep: dict) -> None:
    store = from_config(
        {"template": "s3", "url": sweep["url"], "endpoint": sweep["endpoint"], "calls": sweep["db"]}
    )
    run, xs, pause = sweep["run"], sweep["calls"], sweep["pause"]
    with (
        psycopg.connect(sweep["markers"], autocommit=True) as db,
        distributed.Client(sweep["scheduler"], timeout=60) as client,
    ):
        db.execute(MARKERS)
        client.wait_for_workers(sweep["workers"], timeout=60)
        started = time.monotonic()
        with cache(store):
            if sweep.get("kill_on"):
                futures = _kill_sweep(sweep, db, client)
                xs = xs[: sweep["held"]] + xs
            else:
                pool = wrap_executor(client.get_executor(pure=False))
                futures = [pool.submit(work, run, x, pause) for x in xs]
            results = [future.result(timeout=120) for future in futures]
            seconds = time.monotonic() - started
            missing = [x for x in sorted(set(xs)) if not work.contains(run, x)]
        markers = _markers(db, run)
    _say(
        {
            "calls": xs,
            "results": results,
            "missing": missing,
            "markers": markers,
            "seconds": seconds,
        }
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
