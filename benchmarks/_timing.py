"""Shared timing and table printing for the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def best_of(func: Callable[[], object], number: int = 1000, repeat: int = 5) -> float:
    """Seconds per call of ``func``: the best of ``repeat`` runs of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def best(func: Callable[[], object], repeat: int = 3) -> float:
    """Seconds of the quickest of ``repeat`` single runs of ``func`` (for slow operations)."""
    return best_of(func, number=1, repeat=repeat)


def best_of_alternated(
    funcs: dict[str, Callable[[], object]],
    number: dict[str, int],
    repeat: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Seconds per call of each function, best of ``repeat`` runs taken in turn.

    The candidates run one batch each, round after round, so that all of
    them meet the same spells of a busy machine or a throttled disk.
    ``clock=time.thread_time`` counts CPU time only: on a machine shared with
    other work, the time the thread waits for a core is left out.
    """
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(repeat):
        for name, func in funcs.items():
            start = clock()
            for _ in range(number[name]):
                func()
            best[name] = min(best[name], (clock() - start) / number[name])
    return best


def us(seconds: float) -> str:
    """Seconds as microseconds, for a table cell."""
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    """Seconds as milliseconds, for a table cell."""
    return f"{seconds * 1e3:,.2f} ms"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned text table (readable in a terminal and in a CI log)."""
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
