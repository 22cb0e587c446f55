"""Lineage: following a 50-call chain up and down among 5,000 stored calls.

Run: python benchmarks/bench_lineage.py
Upstream on SQLite is one indexed query per step; it is printed beside raw
``sqlite3`` running the same ``WHERE result = ?`` lookups on the store's own
file.  Downstream (and everything on the memory store) reads every record
once; it is printed beside a raw scan of the same rows (SQLite) or of the
same dict (memory).  ``summaries=False``: no value is loaded.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best, ms, print_table  # noqa: E402

from fleche import Cache, cache, fleche, open_cache  # noqa: E402
from fleche.digest import digest  # noqa: E402
from fleche.storage import CallMemory, ValueMemory  # noqa: E402

BACKGROUND = 5_000
CHAIN = 50


@fleche
def noise(i):
    return i * 3 + 1_000_000


@fleche
def step(x, label):
    return x + 1


def fill(store: Cache) -> int:
    with cache(store):
        for i in range(BACKGROUND):
            noise(i)
        x = 0
        for i in range(CHAIN):
            x = step(x, f"step {i}")
    return x


def raw_upstream(path: Path, value: str) -> int:
    """The chain by hand: one ``SELECT ... WHERE result = ?`` per step on the same file."""
    connection = sqlite3.connect(path)
    todo, seen, calls = [value], {value}, 0
    while todo:
        rows = connection.execute(
            "SELECT key, arguments FROM calls WHERE result = ?", (todo.pop(),)
        ).fetchall()
        for _, arguments in rows:
            calls += 1
            for argument in json.loads(arguments).values():
                if argument not in seen:
                    seen.add(argument)
                    todo.append(argument)
    connection.close()
    return calls


def raw_scan(path: Path) -> int:
    """Every record's key, result and arguments, read and parsed once."""
    connection = sqlite3.connect(path)
    rows = [
        (key, result, json.loads(arguments))
        for key, result, arguments in connection.execute("SELECT key, result, arguments FROM calls")
    ]
    connection.close()
    return len(rows)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        store = open_cache({"template": "sql", "root": directory})
        end = digest(fill(store))
        start = digest(0)
        database = Path(directory) / "calls.db"
        up = best(lambda: store.lineage(end, summaries=False))
        rows.append(
            [
                "sqlite: upstream, 50 calls",
                ms(up),
                ms(best(lambda: raw_upstream(database, end))),
                "raw sqlite3, one indexed lookup per step",
            ]
        )
        down = best(lambda: store.lineage(start, used_by=True, summaries=False))
        rows.append(
            [
                "sqlite: downstream, 50 calls",
                ms(down),
                ms(best(lambda: raw_scan(database))),
                f"raw sqlite3 scan of all {BACKGROUND + CHAIN:,} records",
            ]
        )
    memory = Cache(ValueMemory(), CallMemory())
    end = digest(fill(memory))
    up = best(lambda: memory.lineage(end, summaries=False))
    records = memory.calls.storage
    scan = best(lambda: {r.result: k for k, r in records.items()})
    rows.append(
        ["memory: upstream, 50 calls", ms(up), ms(scan), "dict comprehension over every record"]
    )
    print_table(
        f"lineage among {BACKGROUND + CHAIN:,} stored calls",
        ["operation", "fleche", "reference", "reference is"],
        rows,
    )


if __name__ == "__main__":
    main()
