"""Switching a SQLite database to write-ahead logging, safely against other processes.

Turning WAL on needs the database to itself for a moment.  When two
processes open a new database at once, both hold a shared lock and ask for
an exclusive one; SQLite answers one of them "database is locked" at once,
without waiting out the busy timeout, since waiting could never succeed.
The loser only has to try again: by then the winner has switched the file,
and the mode is stored in it for every later connection.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

__all__ = ["enter_wal"]

#: Seconds to keep trying before the lock is reported.
PATIENCE = 30.0


def enter_wal(cursor: Any, patience: float = PATIENCE) -> None:
    """Put the database of ``cursor`` (a DB-API cursor or connection) in WAL mode."""
    deadline = time.monotonic() + patience
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
