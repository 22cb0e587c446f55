"""A store of many calls: count, list, table, query, verify and gc against raw limits.

Run:  PYTHONPATH=. python benchmarks/bench_scale.py [--sizes 10000,100000,1000000] [--dir DIR]
      [--maintenance]  (only the verify and gc rows)  [--listing]  (none of them)
      [--repeat N]  (each listing timed as the best of N runs; default 3, and 1 above 100,000
               calls: give 3 for a figure at a million calls on a machine doing other work)
      [--cpu]  (timed by the CPU time of this process and its children: fair on a machine
               shared with other work)
      [--layout default|files]  (the default store: call records and small values in
               SQLite, larger values as files; or ``files``: every value a pickle file,
               the layout of stores made before small values were kept in SQLite)
      [--metadata tags|runtime]  (each call's metadata: the same tags on every call, or
               also runtime entries of its own, as a decorated call records them)

For each size N, a store holds N calls of ``simulate(x, group)``
(``group = x % (N // 100)``, so a query by group returns 100 calls), each
with its own argument and result values.  The store is filled through
:meth:`Cache.save` and kept in ``--dir`` between runs (``scale-N``, or
``scale-N-files``), since filling a million calls takes many minutes.

References, measured in the same run: raw ``sqlite3`` statements on the
store's own database (``count(*)``, a ``SELECT`` of every call row, the
indexed join that answers the group query) and a ``diskcache.Cache`` of N
small items (``len()`` and ``check()``).  A table with values reads every
call row and every value's row: its reference is a raw ``SELECT * FROM
calls`` plus a raw ``SELECT * FROM small_values`` (the values' table in the
same database), and its row against the call rows alone is shown too; in
the files layout the values are files and only the call rows are its
reference.  Issue 13's targets: count within 3x of raw ``count(*)``;
listing and ``.table()`` within 3x of their raw ``SELECT``s per row; a
100-row query within 3x of the raw join; verify and gc at >= 100,000
entries per second.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import diskcache  # noqa: E402
from _timing import ms, print_table  # noqa: E402

from fleche import Cache  # noqa: E402
from fleche.caches import verify_worker  # noqa: E402
from fleche.call import Call, QueryCall  # noqa: E402
from fleche.config import from_config  # noqa: E402
from fleche.digest import digest  # noqa: E402

ROWS: list[list[str]] = []
#: What a run is timed by: the wall clock, or with ``--cpu`` the CPU time of this process and its children
#: (on a machine shared with other work, the time spent waiting for a core is left out).
CLOCK: list[Callable[[], float]] = [time.perf_counter]
#: Values bigger than this many encoded bytes are files; ``--layout files`` sets it to 0.
INLINE_LIMIT: list[int | None] = [None]
#: Whether each call also records runtime entries of its own (``--metadata runtime``).
RUNTIME: list[bool] = [False]
#: How many runs each listing is timed as the best of (``--repeat``); ``None``: 3, or 1 above 100,000 calls.
REPEAT: list[int | None] = [None]


def cpu_time() -> float:
    """CPU seconds of this process (to the nanosecond) and of its children waited for (verify's helper)."""
    times = os.times()  # in clock ticks: too coarse for this process's short runs
    return time.process_time() + times.children_user + times.children_system


def timed(func: Callable[[], object], repeat: int = 3) -> float:
    """Seconds of the best of ``repeat`` runs of ``func()``."""
    best = float("inf")
    clock = CLOCK[0]
    for _ in range(repeat):
        start = clock()
        func()
        best = min(best, clock() - start)
    return best


def open_store(root: Path) -> Cache:
    """The store under ``root``, opened as the ``sql`` template (the embedded default) opens it."""
    limit = {} if INLINE_LIMIT[0] is None else {"inline_limit": INLINE_LIMIT[0]}
    return from_config({"template": "sql", "root": str(root), **limit})


def metadata_of(x: int) -> dict[str, dict[str, object]]:
    """The metadata of call ``x``: tags, and with ``--metadata runtime`` timings that differ per call."""
    tags = {"tags": {"project": "scale"}}
    if not RUNTIME[0]:
        return tags
    timings = {"started": 1.7e9 + x, "walltime": 1e-5 * (x % 97), "cputime": 1e-5 * (x % 89)}
    return {"runtime": timings, **tags}


def fill(root: Path, size: int) -> Cache:
    """The store of ``size`` calls under ``root``, filled now unless an earlier run did."""
    done = root / "filled"
    store = open_store(root)
    if done.exists() and done.read_text() == str(size):
        return store
    groups = max(size // 100, 1)
    start = time.perf_counter()
    for x in range(size):
        call = Call(
            "simulate",
            {"x": x, "group": x % groups},
            module="bench.scale",
            result=[x, x * 0.5],
            metadata=metadata_of(x),
        )
        store.save(call)
    done.write_text(str(size))
    print(f"filled {size:,} calls in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return store


def row(size: int, what: str, seconds: float, reference: float | None, per: int = 1) -> None:
    ratio = "" if not reference else f"{seconds / reference:.1f}x"
    rate = f"{per / seconds:,.0f}/s" if per > 1 else ""
    ROWS.append(
        [f"{size:,}", what, ms(seconds), "" if reference is None else ms(reference), ratio, rate]
    )


def bench_size(root: Path, size: int, listing: bool) -> None:
    store = fill(root, size)
    raw = sqlite3.connect(root / "calls.db")
    group = 7 % max(size // 100, 1)
    value = str(digest(group))
    join = (
        "SELECT c.* FROM calls c JOIN arguments a ON a.call_key = c.key "
        "WHERE a.name = 'group' AND a.value = ?"
    )
    assert len(raw.execute(join, (value,)).fetchall()) == min(100, size)

    raw_count = timed(lambda: raw.execute("SELECT count(*) FROM calls").fetchone())
    row(size, "count all calls: query().count()", timed(lambda: store.query().count()), raw_count)
    row(size, "count all calls: len(cache)", timed(lambda: len(store)), raw_count)
    everything = timed(lambda: store.query(expired=True).count())
    row(size, "count with expired: query(expired=True)", everything, raw_count)
    template = QueryCall(name="simulate")
    row(
        size,
        "count one function's calls",
        timed(lambda: store.query(template).count()),
        timed(lambda: raw.execute("SELECT count(*) FROM calls WHERE name='simulate'").fetchone()),
    )
    repeat = REPEAT[0] or (3 if size <= 100_000 else 1)
    raw_select = timed(lambda: raw.execute("SELECT * FROM calls").fetchall(), repeat)
    row(
        size,
        "list every call: list(query())",
        timed(lambda: list(store.query()), repeat),
        raw_select,
        size,
    )
    streamed = timed(lambda: sum(1 for _ in store.query()), repeat)
    row(size, "iterate every call (streamed)", streamed, raw_select, size)
    import pandas  # noqa: F401  # imported before the tables are timed

    table = timed(lambda: store.query().table(), repeat)
    if INLINE_LIMIT[0] is None:  # the default layout: the values' rows are in the database too
        both = timed(lambda: select_calls_and_values(raw), repeat)
        row(size, "query().table(): raw calls + small values", table, both, size)
    row(size, "query().table(): raw calls", table, raw_select, size)
    digests = timed(lambda: store.query().table(values=False), repeat)
    row(size, "query().table(values=False)", digests, raw_select, size)
    query = QueryCall(name="simulate", arguments={"group": group})
    gc.collect()  # the listings' garbage, not collected while this is timed
    row(
        size,
        "query returning 100 calls",
        timed(lambda: list(store.query(query)), 5),
        timed(lambda: raw.execute(join, (value,)).fetchall(), 5),
    )
    raw.close()
    if not listing:
        bench_maintenance(root, store, size)
        bench_diskcache(root / "diskcache", size)


def select_calls_and_values(raw: sqlite3.Connection) -> int:
    """What a table with values reads, raw: every call row and every small value's row."""
    return len(raw.execute("SELECT * FROM calls").fetchall()) + len(small_value_rows(raw, "*"))


def read_files(paths: list[str]) -> None:
    """Each file read whole, with the fewest system calls Python has: open, read, close."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        if len(os.read(fd, 1 << 16)) == 1 << 16:  # a small file is read by one call
            while os.read(fd, 1 << 16):
                pass
        os.close(fd)


def value_files(root: Path) -> list[str]:
    """Every value file's path, listed one fan-out directory at a time (none if there are none)."""
    values = str(root / "values")
    names = os.listdir(values) if os.path.isdir(values) else []
    return [
        f"{values}/{name}/{file}"
        for name in names
        if len(name) == 3
        for file in os.listdir(f"{values}/{name}")
    ]


def small_value_rows(raw: sqlite3.Connection, what: str) -> list[tuple]:
    """``what`` of the small values kept in the call database (none in the files layout)."""
    if not raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'small_values'").fetchone():
        return []
    return raw.execute(f"SELECT {what} FROM small_values").fetchall()


def read_every_entry(root: Path, threads: int = 0) -> int:
    """The raw limit of a verify: every value read once, every call row selected.

    Value files are read by ``os.open``/``os.read``/``os.close`` (a Python
    file object costs three times more), here or on ``threads`` threads in
    chunks; small values are one ``SELECT`` of their table.
    """
    paths = value_files(root)
    if threads:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(read_files, [paths[i : i + 256] for i in range(0, len(paths), 256)]))
    else:
        read_files(paths)
    with sqlite3.connect(root / "calls.db") as raw:
        small = len(small_value_rows(raw, "key, data"))
        return len(paths) + small + sum(1 for _ in raw.execute("SELECT * FROM calls"))


def scan_calls(root: Path) -> int:
    """What verifying only what changed should cost about: one ``SELECT`` of every call row."""
    with sqlite3.connect(root / "calls.db") as raw:
        return len(raw.execute("SELECT * FROM calls").fetchall())


def raw_unreferenced(root: Path) -> set[str]:
    """The raw limit of a gc: the value names from one walk and key listing minus the digests the calls name."""
    stored = {"".join(path.rsplit("/", 2)[1:]) for path in value_files(root)}
    with sqlite3.connect(root / "calls.db") as raw:
        stored.update(key for (key,) in small_value_rows(raw, "key"))
        rows = raw.execute("SELECT result FROM calls UNION ALL SELECT value FROM arguments")
        return stored.difference(v for (v,) in rows)


def bench_maintenance(root: Path, store: Cache, size: int) -> None:
    """verify and gc (issue 13: >= 100,000 entries/s at 1M calls), beside their raw limits."""
    entries = read_every_entry(root)  # also warms the page cache
    print(f"{size:,} calls: load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    raw_read = timed(lambda: read_every_entry(root), 1)
    row(size, "raw read of every entry (os.open/os.read, SELECT)", raw_read, None, entries)
    threaded = timed(lambda: read_every_entry(root, threads=2), 1)
    row(size, "raw read of every entry, files on 2 threads", threaded, None, entries)
    raw_read = min(raw_read, threaded)
    verified = timed(store.verify, 1)
    row(size, f"verify() of {entries:,} entries: raw read of each", verified, raw_read, entries)
    for label, minimum, spare in (
        ("verify() in this process alone", entries + 1, verify_worker.SPARE),
        ("verify() with its child process, however small", 0, float("-inf")),
    ):
        row(
            size,
            label,
            timed(lambda m=minimum, s=spare: _verify_with(store, m, s), 1),
            raw_read,
            entries,
        )
    if "since_last" in inspect.signature(store.verify).parameters:
        changed = timed(lambda: store.verify(since_last=True), 1)
        scan = timed(lambda: scan_calls(root), 1)
        row(size, "verify(since_last=True), nothing new: raw call scan", changed, scan, entries)
    raw_gc = timed(lambda: raw_unreferenced(root), 1)
    if not (root / "values" / "children" / "complete").exists():
        first = timed(store.gc, 1)
        row(size, "gc(), first: builds the children index", first, raw_gc, entries)
    collected = timed(store.gc, 1)
    row(size, "gc() with nothing to collect: raw walk - refs", collected, raw_gc, entries)


def _verify_with(store: Cache, minimum: int, spare: float) -> None:
    """``store.verify()`` with the child process's thresholds set (see fleche.caches.verify_worker)."""
    saved = verify_worker.MINIMUM, verify_worker.SPARE
    verify_worker.MINIMUM, verify_worker.SPARE = minimum, spare
    try:
        store.verify()
    finally:
        verify_worker.MINIMUM, verify_worker.SPARE = saved


def bench_diskcache(directory: Path, size: int) -> None:
    """diskcache's len() and check() over ``size`` small items, for reference."""
    with diskcache.Cache(str(directory)) as cache:
        if len(cache) != size:
            cache.clear()
            for x in range(size):
                cache[x] = [x, x * 0.5]
        row(size, "diskcache len()", timed(lambda: len(cache)), None)
        row(size, "diskcache check()", timed(cache.check, 1), None, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated store sizes")
    parser.add_argument("--dir", help="where the stores are kept between runs (default: removed)")
    parser.add_argument("--maintenance", action="store_true", help="only the verify and gc rows")
    parser.add_argument("--listing", action="store_true", help="no verify, gc or diskcache rows")
    parser.add_argument("--repeat", type=int, help="runs of each listing, the best one shown")
    parser.add_argument("--cpu", action="store_true", help="time by CPU time, not the wall clock")
    parser.add_argument(
        "--metadata",
        choices=("tags", "runtime"),
        default="tags",
        help="the same tags on every call, or also runtime timings of each call's own",
    )
    parser.add_argument(
        "--layout",
        choices=("default", "files"),
        default="default",
        help="small values in the call database (default) or every value a file",
    )
    options = parser.parse_args()
    if options.cpu:
        CLOCK[0] = cpu_time
    REPEAT[0] = options.repeat
    suffix = ("" if options.layout == "default" else "-files") + (
        "-runtime" if options.metadata == "runtime" else ""
    )
    RUNTIME[0] = options.metadata == "runtime"
    if options.layout == "files":
        INLINE_LIMIT[0] = 0
    base = Path(options.dir) if options.dir else Path(tempfile.mkdtemp(prefix="fleche-scale-"))
    try:
        for size in (int(s) for s in options.sizes.split(",")):
            root = base / f"scale-{size}{suffix}"
            if options.maintenance:
                bench_maintenance(root, fill(root, size), size)
                bench_diskcache(root / "diskcache", size)
            else:
                bench_size(root, size, options.listing)
    finally:
        if not options.dir:
            shutil.rmtree(base, ignore_errors=True)
    print_table(
        f"A store of many calls ({options.layout} layout, {options.metadata} metadata), with same-run references"
        + (" (CPU time)" if options.cpu else ""),
        ["calls", "operation", "fleche", "reference", "ratio", "entries/s"],
        ROWS,
    )


if __name__ == "__main__":
    main()
