"""Running a function body in a fresh temporary working directory (``isolate=True``).

A body that writes scratch files into the working directory (input decks,
logs of an external solver) would otherwise leave them behind, or collide
with another run.  The directory is made per call, entered, left and
removed afterwards, also when the body raises.  The working directory is a
process-wide setting: isolated bodies running at the same time in several
threads (or tasks) of one process see each other's directory changes, so
run such functions in processes, not threads.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["isolated_directory", "isolating"]


@contextlib.contextmanager
def isolated_directory() -> Iterator[str]:
    """Work in a new temporary directory for the block; return to the previous one, remove it."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="fleche-isolated-") as scratch:
        os.chdir(scratch)
        try:
            yield scratch
        finally:
            os.chdir(previous)


def isolating(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run in its own temporary working directory on every call (sync or async)."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with isolated_directory():
                return await func(*args, **kwargs)

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with isolated_directory():
            return func(*args, **kwargs)

    return run
