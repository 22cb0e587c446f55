"""A persistent hit on a large array result: fleche against joblib and diskcache, same run.

Run:  PYTHONPATH=. python benchmarks/bench_big_values.py [--megabytes 10] [--calls 20]
Target (issue 13): a decorated hit returning a 10 MB float64 array on the
default store within 1.5x of ``joblib.Memory.cache`` on the same disk.

Every candidate decorates the same function, is called once to store its
result, then timed on hits (the candidates take turns, batch after batch).
The stores live in one temporary directory, removed at the end.  A raw
``os.readv`` of a file of the same size into a fresh buffer shows what the
disk (its page cache, here) charges for the bytes alone.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import diskcache  # noqa: E402
import joblib  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of_alternated, ms, print_table  # noqa: E402
from bench_files import DEFAULT, default_store, fleche_cache  # noqa: E402

from fleche import fleche  # noqa: E402

SIZE = 10 * 2**20


def array(seed: int) -> np.ndarray:
    """``SIZE`` bytes of float64 (a module-level function, so joblib can hash its code)."""
    return np.random.default_rng(seed).random(SIZE // 8)


def raw_read(path: Path) -> Callable[[], object]:
    """Read the whole file into a new buffer: the floor for any persistent hit."""

    def read() -> bytearray:
        buffer = bytearray(os.path.getsize(path))
        with open(path, "rb", buffering=0) as handle:
            handle.readinto(buffer)
        return buffer

    return read


def bench(tmp: Path, calls: int) -> list[list[str]]:
    candidates: dict[str, Callable[[int], np.ndarray]] = {
        DEFAULT: fleche(cache=default_store(tmp / "d"))(array),
        "fleche pickle files, signed": fleche(cache=fleche_cache(tmp / "s", secret_key="k"))(array),
        "joblib.Memory.cache": joblib.Memory(str(tmp / "jl"), verbose=0).cache(array),
        "diskcache.Cache.memoize": diskcache.Cache(str(tmp / "dc")).memoize()(array),
    }
    expected = array(3)
    for name, func in candidates.items():
        func(3)
        assert np.array_equal(func(3), expected), name
    raw = tmp / "raw"
    raw.write_bytes(expected.tobytes())
    timed = best_of_alternated(
        {
            **{name: functools.partial(func, 3) for name, func in candidates.items()},
            "raw read of the bytes": raw_read(raw),
        },
        dict.fromkeys([*candidates, "raw read of the bytes"], calls),
        repeat=7,
    )
    joblib_time = timed["joblib.Memory.cache"]
    return [
        [name, ms(seconds), f"{seconds / joblib_time:.2f}x joblib"]
        for name, seconds in timed.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=10, help="size of the array result")
    parser.add_argument("--calls", type=int, default=20, help="hits per timed batch")
    parser.add_argument("--dir", default=None, help="where to make the temporary directory")
    args = parser.parse_args()
    global SIZE
    SIZE = int(args.megabytes * 2**20) // 8 * 8
    warnings.simplefilter("ignore")  # joblib and diskcache chatter
    tmp = Path(tempfile.mkdtemp(prefix="fleche-bench-big-", dir=args.dir))
    try:
        rows = bench(tmp, args.calls)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(
        f"hit returning a {SIZE / 2**20:g} MB float64 array (best batch of {args.calls})",
        ["subject", "time per hit", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
