"""Core hot paths: computing a lookup key, an in-memory hit and an in-memory miss.

Run: python benchmarks/bench_core.py
Targets (issue 2): f.digest(3 small ints) <= 5 µs; memory-cache hit <= 10 µs,
printed beside functools.lru_cache and a plain dict lookup of the same key.
Issue 13: a memory miss + store (a new argument each call) < 50 µs.
"""

from __future__ import annotations

import functools
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of, print_table, us  # noqa: E402

from fleche import Cache, cache, fleche  # noqa: E402
from fleche.storage import CallMemory, ValueMemory  # noqa: E402


def main() -> None:
    def body(a, b, c):
        return a + b + c

    cached = fleche(body)
    lru = functools.lru_cache(maxsize=None)(body)
    plain = {(1, 2, 3): 6}

    with cache(Cache(ValueMemory(), CallMemory())):
        cached(1, 2, 3)
        lru(1, 2, 3)
        key_time = best_of(lambda: cached.digest(1, 2, 3), number=20000)
        hit_time = best_of(lambda: cached(1, 2, 3), number=20000)
        fresh = itertools.count(10)
        miss_time = best_of(lambda: cached(next(fresh), 2, 3), number=5000)
    lru_time = best_of(lambda: lru(1, 2, 3), number=20000)
    dict_time = best_of(lambda: plain[(1, 2, 3)], number=20000)
    print_table(
        "core hot paths (3 small int arguments)",
        ["case", "fleche", "target", "reference"],
        [
            ["f.digest(1, 2, 3)", us(key_time), "<= 5 µs", "-"],
            [
                "memory hit f(1, 2, 3)",
                us(hit_time),
                "<= 10 µs",
                f"lru_cache {us(lru_time)}, dict {us(dict_time)}",
            ],
            ["memory miss + store f(new, 2, 3)", us(miss_time), "< 50 µs", "-"],
        ],
    )


if __name__ == "__main__":
    main()
