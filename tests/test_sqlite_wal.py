"""Processes that open one new SQLite database at the same moment all get in.

Turning on write-ahead logging needs the file to itself for a moment; two
processes asking at once used to make one fail with "database is locked".
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from fleche.storage.sqlite_wal import enter_wal
from fleche.storage.usage import UsageIndex

from .backends import sqlite_calls

PROCESSES = 4
ROUNDS = 15


def _open_usage(path: Path, barrier) -> None:
    barrier.wait()
    UsageIndex(str(path))


def _open_calls(root: Path, barrier) -> None:
    barrier.wait()
    assert list(sqlite_calls(root).list()) == []


def _race(target, paths: list[Path]) -> list[int]:
    """Exit codes of ``PROCESSES`` processes per path, each group let go at once."""
    context = multiprocessing.get_context("fork")
    codes = []
    for path in paths:
        barrier = context.Barrier(PROCESSES)
        workers = [context.Process(target=target, args=(path, barrier)) for _ in range(PROCESSES)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        codes += [w.exitcode for w in workers]
    return codes


@pytest.mark.parametrize("target", [_open_usage, _open_calls], ids=["usage-index", "sql-calls"])
def test_processes_opening_a_new_database_at_once_all_succeed(target, tmp_path):
    paths = [tmp_path / f"round{r}" / "store.db" for r in range(ROUNDS)]
    for path in paths:
        path.parent.mkdir()
    if target is _open_calls:
        paths = [path.parent for path in paths]
    assert _race(target, paths) == [0] * (PROCESSES * ROUNDS)


def test_the_database_is_left_in_wal_mode(tmp_path):
    db = sqlite3.connect(tmp_path / "x.db")
    enter_wal(db)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_other_errors_are_not_retried(tmp_path):
    class Broken:
        calls = 0

        def execute(self, sql):
            self.calls += 1
            raise sqlite3.OperationalError("disk I/O error")

    broken = Broken()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        enter_wal(broken)
    assert broken.calls == 1


def test_a_lock_that_stays_is_reported_after_the_patience(tmp_path):
    class Locked:
        def execute(self, sql):
            raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enter_wal(Locked(), patience=0.05)
