"""A memory layer in front of a persistent store: the decorated hit after the first load.

Run: python benchmarks/bench_stack.py
Target (issue 4): memory in front of (pickle files + SQLite), decorated hit
<= 15 µs once the call has been loaded, printed beside the plain memory hit,
the persistent store alone, and a size-limited memory layer, in the same run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of, print_table, us  # noqa: E402

from fleche import Cache, CacheStack, SizeLimitedCache, fleche  # noqa: E402
from fleche.storage import CallMemory, Sql, ValueMemory, ValuePickleFile  # noqa: E402


def body(a, b, c):
    return a + b + c


def hit_time(cache, number: int = 20000) -> float:
    cached = fleche(cache=cache)(body)
    cached(1, 2, 3)  # stored (or, for a stack, loaded into the memory layer)
    cached(1, 2, 3)
    return best_of(lambda: cached(1, 2, 3), number=number)


def first_lower_hit(stack_factory, store: Cache, n: int = 200) -> float:
    """Mean time of a hit found only in the persistent layer (read, then copied up)."""
    writer = fleche(cache=store)(body)
    for i in range(n):
        writer(i, 0, 0)
    stack = stack_factory()
    reader = fleche(cache=stack)(body)
    start = time.perf_counter()
    for i in range(n):
        reader(i, 0, 0)
    return (time.perf_counter() - start) / n


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        persistent = Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")))

        def stack() -> CacheStack:
            return CacheStack([Cache(ValueMemory(), CallMemory()), persistent])

        memory = hit_time(Cache(ValueMemory(), CallMemory()))
        stacked = hit_time(stack())
        limited = hit_time(
            CacheStack(
                [SizeLimitedCache(Cache(ValueMemory(), CallMemory()), max_bytes=10**8), persistent]
            )
        )
        alone = hit_time(persistent, number=2000)
        lower = first_lower_hit(stack, persistent)

    print_table(
        "decorated hit f(1, 2, 3) through a cache stack",
        ["case", "time", "target", "reference"],
        [
            [
                "memory in front of pickle files + SQLite",
                us(stacked),
                "<= 15 µs",
                f"plain memory hit {us(memory)}",
            ],
            [
                "size-limited memory in front of the same",
                us(limited),
                "-",
                f"plain memory hit {us(memory)}",
            ],
            ["pickle files + SQLite alone", us(alone), "-", "-"],
            [
                "first read from the lower layer (+ copy up)",
                us(lower),
                "-",
                f"store alone {us(alone)}",
            ],
        ],
    )


if __name__ == "__main__":
    main()
