"""The driver of a multi-host sweep, run on a worker host: ``python3 -m tests.multihost.driver JSON``.

JSON names the store (``calls``, ``url``, ``endpoint``), the markers
database (``markers``), the Dask scheduler and the sweep (``run``,
``calls`` as a list of arguments, ``pause``).  With ``kill_on`` (a host
name) it prints ``{"event": "kill"}`` once a computation runs on that host,
for the test to kill it, and carries on.  Its last line holds the results,
the distinct calls not stored, the marker rows and the wall time.
"""

from __future__ import annotations

import json
import sys
import time

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


def _wait_for_host(db: psycopg.Connection, run: str, host: str, deadline: float) -> None:
    """Until a computation of ``run`` is under way on ``host`` (it then holds a lease)."""
    while time.monotonic() < deadline:
        rows = _markers(db, run)
        if any(row[1] == host and row[4] is None for row in rows):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no computation started on {host}")


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
        with cache(store), wrap_executor(client.get_executor(pure=False)) as pool:
            futures = [pool.submit(work, run, x, pause) for x in xs]
            if sweep.get("kill_on"):
                _wait_for_host(db, run, sweep["kill_on"], started + 60)
                _say({"event": "kill"})
            results = [future.result(timeout=120) for future in futures]
            seconds = time.monotonic() - started
            missing = [x for x in sorted(set(xs)) if not work.contains(run, x)]
        markers = _markers(db, run)
    _say({"results": results, "missing": missing, "markers": markers, "seconds": seconds})


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
