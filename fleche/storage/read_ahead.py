"""An ordered map over chunks of work on a few threads, a bounded number of chunks ahead.

Reading many small files is mostly system calls, which release the GIL:
a couple of threads keep the next files coming while the caller checks
the last ones (``verify`` of a store of pickle files, benchmarks/bench_scale.py).
Unlike ``Executor.map``, which submits every chunk at once, at most
``ahead`` chunks are read but not yet taken, so memory stays bounded
however many entries there are.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(
    func: Callable[[T], R], chunks: Iterable[T], threads: int = 2, ahead: int = 4
) -> Iterator[R]:
    """``func(chunk)`` of each of ``chunks``, in order, computed on ``threads`` threads.

    An exception raised by ``func`` is raised here, when its chunk's turn comes.
    """
    pending: collections.deque[Future[R]] = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="fleche-read") as pool:
        try:
            for chunk in chunks:
                pending.append(pool.submit(func, chunk))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the caller stopped early: drop what was not started
            for future in pending:
                future.cancel()
