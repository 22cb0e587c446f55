"""A size limit on the default store: what a decorated hit and a miss + store cost.

Run: python benchmarks/bench_size_limit.py
Prints a hit and a miss through ``SizeLimitedCache`` around the default store
(pickle files + SQLite, the size index in a file beside it) and around a
memory cache, beside the same caches without a limit, in the same run.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of_alternated, print_table, us  # noqa: E402

from fleche import Cache, SizeLimitedCache, fleche  # noqa: E402
from fleche.storage import CallMemory, Sql, ValueMemory, ValuePickleFile  # noqa: E402


def body(a, b):
    return a + b


def default_store(root: Path) -> Cache:
    return Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")))


def cases(root: Path) -> dict[str, Cache]:
    return {
        "default store": default_store(root / "plain"),
        "default store, size-limited": SizeLimitedCache(
            default_store(root / "limited"), max_bytes=10**9, index=root / "limited" / "size.db"
        ),
        "memory": Cache(ValueMemory(), CallMemory()),
        "memory, size-limited": SizeLimitedCache(
            Cache(ValueMemory(), CallMemory()), max_bytes=10**9
        ),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        caches = cases(Path(scratch))
        hits, misses = {}, {}
        for name, cache in caches.items():
            cached = fleche(cache=cache)(body)
            cached(1, 2)
            counter = itertools.count(10)
            hits[name] = lambda f=cached: f(1, 2)
            misses[name] = lambda f=cached, n=counter: f(next(n), 0)
        hit = best_of_alternated(hits, dict.fromkeys(hits, 2000))
        miss = best_of_alternated(misses, dict.fromkeys(misses, 300))
    print_table(
        "decorated f(a, b) through a size limit (max_bytes=10**9, never reached)",
        ["cache", "hit", "miss + store"],
        [[name, us(hit[name]), us(miss[name])] for name in caches],
    )


if __name__ == "__main__":
    main()
