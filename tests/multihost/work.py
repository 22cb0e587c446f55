"""The decorated function of the multi-host sweeps, importable on every worker.

Each computation leaves a row in the ``markers`` table of the store host's
PostgreSQL (``MULTIHOST_MARKERS`` names it) when its body starts, and
marks it finished when the body ends: the test counts computations per
call and per host from these rows, whichever host ran them.
"""

from __future__ import annotations

import os
import socket
import time

import psycopg

from fleche import fleche

MARKERS = """CREATE TABLE IF NOT EXISTS markers (
    id serial PRIMARY KEY, run text NOT NULL, x integer NOT NULL, host text NOT NULL,
    pid integer NOT NULL, started double precision NOT NULL, finished double precision)"""


@fleche(version="1", ignore=("pause",))
def work(run: str, x: int, pause: float = 0.0) -> int:
    """``x * x``, after ``pause`` seconds of pretended work, leaving a marker row."""
    with psycopg.connect(os.environ["MULTIHOST_MARKERS"], autocommit=True) as db:
        (marker,) = db.execute(
            "INSERT INTO markers (run, x, host, pid, started) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id",
            (run, x, socket.gethostname(), os.getpid(), time.time()),
        ).fetchone()
        time.sleep(pause)
        db.execute("UPDATE markers SET finished = %s WHERE id = %s", (time.time(), marker))
    return x * x
