"""File backends against diskcache and joblib, measured in the same run.

Run:  PYTHONPATH=. python benchmarks/bench_files.py [--keys 1000000] [--calls 2000] [--cpu]
Targets: hit within 2x of diskcache and at least 2x faster than joblib;
miss + store <= 0.5 ms; expand of a 6-character prefix among 1M keys <= 1 ms.

Prints one table: a decorated hit (values and calls both on pickle files),
a miss that stores a small result (the candidates take turns, batch after
batch, so that all meet the same spells of a throttled disk; a raw file
create + rename shows what the disk charges for a new entry in this run),
and ``expand``/``shrink`` of a 6-character prefix in a store of ``--keys`` keys.  For the last one the key files are
created directly, empty, in the fan-out layout (``expand`` reads directory
listings, not files).  Creating a million files takes minutes on a busy
disk, so by default only the directories the probes read are created, each
with every key it holds in the full store (``--full`` creates them all).
The reference is an indexed ``sqlite3`` table of all the keys.  Everything lives in one temporary
directory, removed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import pickle
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import diskcache  # noqa: E402
import joblib  # noqa: E402
from _timing import best_of, best_of_alternated, print_table, us  # noqa: E402

from fleche import AmbiguousDigestError, Cache, fleche  # noqa: E402
from fleche.config import from_config  # noqa: E402
from fleche.digest import digest  # noqa: E402
from fleche.storage import CallPickleFile, PickleFileBackend, Sql, ValuePickleFile  # noqa: E402
from fleche.storage.base import CallMixin, ValueMixin  # noqa: E402
from fleche.storage.destructuring import DestructuringMixin  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []


def row(what: str, subject: str, seconds: float, note: str = "") -> None:
    ROWS.append((what, subject, us(seconds), note))


def tiny(x: int) -> int:
    return x + 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ValuesNoLock(ValueMixin, DestructuringMixin, PickleFileBackend):
    content_addressed = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class _CallsNoLock(CallMixin, PickleFileBackend):
    pass


def fleche_cache(
    root: Path, values: type = ValuePickleFile, calls: type = CallPickleFile, **options: object
) -> Cache:
    return Cache(values(root=root / "values", **options), calls(root=root / "calls", **options))


def default_store(root: Path, **options: object) -> Cache:
    """The embedded default (the sql template): call records and small values in SQLite, the rest files."""
    return from_config({"template": "sql", "root": str(root), **options})


DEFAULT = "fleche SQLite calls + small values, files (default)"
FILES_ONLY = "fleche pickle files + SQLite calls (inline_limit = 0)"


def bench_hits(tmp: Path, n: int, clock: Callable[[], float] = time.perf_counter) -> None:
    candidates: dict[str, Callable[[int], int]] = {
        DEFAULT: fleche(cache=default_store(tmp / "d"))(tiny),
        FILES_ONLY: fleche(cache=default_store(tmp / "d0", inline_limit=0))(tiny),
        "fleche pickle files": fleche(cache=fleche_cache(tmp / "f"))(tiny),
        "fleche pickle files, signed": fleche(cache=fleche_cache(tmp / "s", secret_key="k"))(tiny),
        "fleche pickle files, no PerKeyLockMixin": fleche(
            cache=fleche_cache(tmp / "n", _ValuesNoLock, _CallsNoLock)
        )(tiny),
        "diskcache.Cache.memoize": diskcache.Cache(str(tmp / "dc")).memoize()(tiny),
        "joblib.Memory.cache": joblib.Memory(str(tmp / "jl"), verbose=0).cache(tiny),
        "functools.lru_cache (in memory)": functools.lru_cache(maxsize=None)(tiny),
    }
    for func in candidates.values():
        func(3)
    timed = best_of_alternated(
        {name: functools.partial(func, 3) for name, func in candidates.items()},
        dict.fromkeys(candidates, n),
        repeat=5,
        clock=clock,
    )
    for name in candidates:
        row("hit", name, timed[name])


def grown(root: Path) -> Cache:
    """A cache whose fan-out directories all exist, as in a store past ~30,000 entries."""
    cache = fleche_cache(root)
    for storage in (cache.values, cache.calls):
        for n in range(16 ** sum(storage.fanout)):
            os.makedirs(os.path.dirname(storage._file(f"{n:03x}".ljust(32, "0"))), exist_ok=True)
    return cache


def raw_floor(root: Path, inline: bool = False) -> Callable[[int], int]:
    """A miss's storage work done with no fleche code: what the design's miss costs at least.

    The lookup (one indexed SELECT), the argument's and the result's value
    files (create, write, rename) and the record's one INSERT into the
    same schema (its argument index filled by the same trigger), on the
    same SQLite settings as ``Sql``; ``inline``, rows of ``small_values``
    instead of files, in one transaction with the record, as a decorated
    miss of the default store writes them.
    """
    Sql(url=str(root / "calls.db"))  # the schema, made by fleche
    db = sqlite3.connect(root / "calls.db", isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        db.execute(f"PRAGMA {pragma}")
    values = root / "values"
    values.mkdir()
    meta = '{"runtime":{"started":1.5,"walltime":2.1e-05,"cputime":1.9e-05},"environment":{"host":"h"}}'

    def write(name: str, data: bytes) -> None:
        if inline:
            db.execute(
                "INSERT INTO small_values (key, data, stored) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET stored = excluded.stored",
                (name, data, time.time()),
            )
            return
        fd = os.open(f"{values}/.{name}.tmp", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, data)
        os.close(fd)
        os.rename(f"{values}/.{name}.tmp", f"{values}/{name}")

    def miss(x: int) -> int:
        key, argument, result = (digest((kind, x)) for kind in ("key", "arg", "result"))
        db.execute("SELECT result, seal FROM calls WHERE key = ?", (key,)).fetchall()
        if inline:  # the values and the record in one transaction
            db.execute("BEGIN IMMEDIATE")
        write(argument, pickle.dumps(x))
        write(result, pickle.dumps(x + 1))
        db.execute(
            "INSERT INTO calls (key, name, module, unkeyed, created, result, arguments, meta, seal)"
            " VALUES (?, 'tiny', '__main__', '', ?, ?, ?, ?, ?)",
            (key, time.time(), result, f'{{"x":"{argument}"}}', meta, key[:16]),
        )
        if inline:
            db.execute("COMMIT")
        return x + 1

    return miss


def bench_misses(tmp: Path, n: int, clock: Callable[[], float] = time.perf_counter) -> None:
    def fresh(func: Callable[[int], int]) -> Callable[[], None]:
        counter = iter(range(10**9))
        return lambda: func(next(counter))

    new = "new argument each call"
    candidates: dict[str, tuple[Callable[[int], int], str]] = {
        DEFAULT: (fleche(cache=default_store(tmp / "md"))(tiny), f"fresh store; {new}"),
        FILES_ONLY: (
            fleche(cache=default_store(tmp / "md0", inline_limit=0))(tiny),
            f"fresh store; {new}",
        ),
        "fleche pickle files": (
            fleche(cache=fleche_cache(tmp / "mf"))(tiny),
            f"fresh store; {new}",
        ),
        "fleche pickle files, signed": (
            fleche(cache=fleche_cache(tmp / "ms", secret_key="k"))(tiny),
            f"fresh store; {new}",
        ),
        "fleche pickle files, grown store": (
            fleche(cache=grown(tmp / "mg"))(tiny),
            f"fan-out directories exist; {new}",
        ),
        "diskcache.Cache.memoize": (
            diskcache.Cache(str(tmp / "mdc")).memoize()(tiny),
            f"fresh store; {new}",
        ),
        "joblib.Memory.cache": (
            joblib.Memory(str(tmp / "mjl"), verbose=0).cache(tiny),
            f"fresh store; {new}",
        ),
        "raw floor: the same files and SQL, no fleche code": (
            raw_floor(tmp / "mraw"),
            "reference; lookup + 2 value files + 1 INSERT",
        ),
        "raw floor, small values in SQLite: no fleche code": (
            raw_floor(tmp / "mrawi", inline=True),
            "reference; lookup + 1 transaction: 2 value rows + 1 INSERT",
        ),
    }
    # Short batches, many rounds, the same for every candidate: a batch is
    # over before the disk's write budget runs out.
    timed = best_of_alternated(
        {name: fresh(func) for name, (func, _) in candidates.items()},
        dict.fromkeys(candidates, max(50, n // 10)),
        repeat=20,
        clock=clock,
    )
    for name, (_, note) in candidates.items():
        row("miss + store", name, timed[name], note)


def bench_primitives(tmp: Path, n: int) -> None:
    """One small entry written and read: the file backend's share of a miss and of a hit."""
    storage = PickleFileBackend(root=tmp / "p")
    reference = diskcache.Cache(str(tmp / "pdc"))
    keys = iter([digest(("put", i)) for i in range(8 * n)])
    row(
        "put small value",
        "PickleFileBackend.put (new key)",
        best_of(lambda: storage.put(7, next(keys)), n, 3),
    )
    row(
        "put small value",
        "diskcache.Cache.set (new key)",
        best_of(lambda: reference.set(next(keys), 7), n, 3),
    )
    raw = tmp / "raw"
    raw.mkdir()
    names = iter(range(10**9))

    def create() -> None:  # what a new entry costs this disk, before any fleche code
        path = f"{raw}/{next(names)}"
        fd = os.open(f"{path}.tmp", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, b"x" * 27)
        os.close(fd)
        os.rename(f"{path}.tmp", path)

    row("put small value", "raw create + write + rename", best_of(create, n, 3), "reference")
    key = storage.put(7, digest("get"))
    reference.set(key, 7)
    row("get small value", "PickleFileBackend.get", best_of(lambda: storage.get(key), n))
    row("get small value", "diskcache.Cache.get", best_of(lambda: reference.get(key), n))
    reference.close()


def populate(storage: PickleFileBackend, keys: list[str]) -> None:
    """Empty key files in the storage's fan-out layout (``expand`` only reads names)."""
    made: set[str] = set()
    for key in keys:
        file = storage._file(key)
        directory = os.path.dirname(file)
        if directory not in made:
            os.makedirs(directory, exist_ok=True)
            made.add(directory)
        os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o644))


def bench_expand(tmp: Path, count: int, probes: int, full: bool) -> None:
    rng = random.Random(0)
    keys = [rng.randbytes(16).hex() for _ in range(count)]
    storage = PickleFileBackend(root=tmp / "many")
    sample = rng.sample(keys, probes)
    if full:
        created = keys
    else:  # every directory a probe reads, with all the keys it holds in a store of ``count``
        probed = {os.path.dirname(storage._file(k)) for k in sample}
        created = [k for k in keys if os.path.dirname(storage._file(k)) in probed]
    started = time.perf_counter()
    populate(storage, created)
    built = time.perf_counter() - started

    def per_probe(func: Callable[[str], object]) -> tuple[float, float]:
        times = []
        for key in sample:
            t0 = time.perf_counter()
            func(key)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), sorted(times)[int(0.99 * len(times))]

    def expand(key: str) -> None:
        try:
            storage.expand(key[:6])
        except AmbiguousDigestError:
            pass  # ~6% of 6-character prefixes are shared at a million keys; same work

    label = f"{count:,} keys"
    median, p99 = per_probe(expand)
    row("expand 6-char prefix", f"fleche pickle files, {label}", median, f"median; p99 {us(p99)}")
    median, p99 = per_probe(lambda k: storage.shrink(k))
    row("shrink", f"fleche pickle files, {label}", median, f"median; p99 {us(p99)}")
    median, _ = per_probe(lambda k: os.listdir(os.path.dirname(storage._file(k))))
    names = len(os.listdir(os.path.dirname(storage._file(sample[0]))))
    row(
        "expand 6-char prefix",
        "os.listdir of that directory",
        median,
        f"median; reference; {names} names",
    )
    with sqlite3.connect(tmp / "keys.sqlite") as db:
        db.execute("CREATE TABLE k (key TEXT PRIMARY KEY) WITHOUT ROWID")
        db.executemany("INSERT INTO k VALUES (?)", ((k,) for k in keys))
        query = "SELECT key FROM k WHERE key >= ? AND key < ? LIMIT 20"
        median, _ = per_probe(lambda k: db.execute(query, (k[:6], k[:6] + "g")).fetchall())
        row("expand 6-char prefix", f"raw sqlite3 range scan, {label}", median, "median; reference")
    what = "every key" if full else f"the {len(created):,} keys of the {probes} probed directories"
    row("(setup)", f"create {what}", built / len(created), f"per file; {built:.0f} s in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the expand store")
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed batch")
    parser.add_argument("--probes", type=int, default=200, help="prefixes expanded")
    parser.add_argument(
        "--dir", default=None, help="where to make the temporary directory (a disk to test)"
    )
    parser.add_argument(
        "--full", action="store_true", help="create every key file, not only the probed directories"
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time hits and misses by this thread's CPU time (time.thread_time), not the wall "
        "clock: on a shared, loaded machine the waits for a core are left out (and so is the "
        "work of background threads, such as fleche's SQLite checkpoints)",
    )
    args = parser.parse_args()
    clock = time.thread_time if args.cpu else time.perf_counter
    warnings.simplefilter("ignore")  # joblib and diskcache chatter
    tmp = Path(tempfile.mkdtemp(prefix="fleche-bench-files-", dir=args.dir))
    try:
        bench_hits(tmp, args.calls, clock)
        bench_misses(tmp, args.calls // 4, clock)
        bench_primitives(tmp, args.calls // 4)
        bench_expand(tmp, args.keys, args.probes, args.full)
    finally:
        started = time.perf_counter()
        shutil.rmtree(tmp, ignore_errors=True)
        cleanup = time.perf_counter() - started
    print_table(
        "file backends vs diskcache / joblib (tiny function, one int argument"
        + (", CPU time of the timing thread)" if args.cpu else ")"),
        ["operation", "subject", "time", "note"],
        ROWS,
    )
    print(f"(temporary directory removed in {cleanup:.0f} s)")


if __name__ == "__main__":
    main()
