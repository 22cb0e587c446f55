"""The decorator in its other forms (methods, async), explain and verify.

Run: python benchmarks/bench_forms.py
Every figure is printed beside a reference measured in the same run: a hit
through a method or an ``await`` beside the plain-function hit and
``functools.lru_cache``; ``verify`` beside loading every entry once
(``load`` of each value and record, no checks); ``explain`` beside a
``query`` of the same function's calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of, ms, print_table, us  # noqa: E402

from fleche import Cache, cache, fleche  # noqa: E402
from fleche.storage import CallMemory, CallPickleFile, ValueMemory, ValuePickleFile  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Model:
    rate: float

    @fleche()
    def keyed(self, a, b):
        return self.rate * (a + b)

    @fleche(ignore=("self",))
    def unkeyed(self, a, b):
        return a + b

    @functools.cache  # noqa: B019 (a reference figure only)
    def lru(self, a, b):
        return self.rate * (a + b)


def plain(a, b):
    return a + b


async def aplain(a, b):
    return a + b


def hits() -> list[list[str]]:
    cached = fleche(plain)
    acached = fleche(aplain)
    model = Model(0.5)
    lru = functools.lru_cache(maxsize=None)(plain)
    with cache(Cache(ValueMemory(), CallMemory())):
        cached(1, 2), model.keyed(1, 2), model.unkeyed(1, 2), model.lru(1, 2), lru(1, 2)
        asyncio.run(acached(1, 2))
        function = best_of(lambda: cached(1, 2), number=20000)
        keyed = best_of(lambda: model.keyed(1, 2), number=20000)
        unkeyed = best_of(lambda: model.unkeyed(1, 2), number=20000)

        async def awaited(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await acached(1, 2)
            return (time.perf_counter() - start) / n

        async def awaited_plain(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await aplain(1, 2)
            return (time.perf_counter() - start) / n

        async_hit = min(asyncio.run(awaited(20000)) for _ in range(5))
        async_plain = min(asyncio.run(awaited_plain(20000)) for _ in range(5))
    lru_time = best_of(lambda: lru(1, 2), number=20000)
    lru_method = best_of(lambda: model.lru(1, 2), number=20000)
    return [
        ["memory hit f(1, 2)", us(function), f"lru_cache {us(lru_time)}"],
        [
            "memory hit obj.m(1, 2), dataclass self keyed",
            us(keyed),
            f"lru_cache method {us(lru_method)}",
        ],
        [
            "memory hit obj.m(1, 2), ignore=('self',)",
            us(unkeyed),
            f"plain-function hit {us(function)}",
        ],
        [
            "memory hit await f(1, 2)",
            us(async_hit),
            f"await of the bare coroutine {us(async_plain)}",
        ],
    ]


def stores(root: Path, n: int) -> list[list[str]]:
    rows = []
    for name, store in [
        ("memory", Cache(ValueMemory(), CallMemory())),
        ("pickle files", Cache(ValuePickleFile(root=root / "v"), CallPickleFile(root=root / "c"))),
    ]:

        @fleche()
        def simulate(i, scale=1.0):
            return [float(i) * scale, "label"]

        with cache(store):
            for i in range(n):
                simulate(i)
            start = time.perf_counter()
            report = store.verify()
            verify_time = time.perf_counter() - start
            assert report.ok, report
            start = time.perf_counter()
            for key in store.values.list():
                store.values.load(key)
            for key in store.calls.list():
                store.calls.load(key)
            load_time = time.perf_counter() - start
            explain_time = best_of(lambda: simulate.explain(n + 1), number=3, repeat=3)  # noqa: B023
            query_time = best_of(lambda: list(simulate.query()), number=3, repeat=3)  # noqa: B023
        entries = report.values + report.calls
        rows.append(
            [
                f"verify, {name}, {entries} entries",
                f"{ms(verify_time)} ({entries / verify_time:,.0f}/s)",
                f"load every entry {ms(load_time)} ({entries / load_time:,.0f}/s)",
            ]
        )
        rows.append(
            [
                f"explain a miss, {name}, {n} calls",
                ms(explain_time),
                f"query all calls {ms(query_time)}",
            ]
        )
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        rows = hits() + stores(Path(root), 2000)
    print_table(
        "decorator forms, explain and verify", ["case", "fleche", "reference (same run)"], rows
    )


if __name__ == "__main__":
    main()
