"""Cache-aware ``concurrent.futures`` executors: workers use the submitter's cache.

The active cache, metadata recorders and tags are context variables
(:mod:`fleche.state`), which a worker thread or process does not inherit.
:func:`wrap_executor` returns an executor that carries them along with
every task::

    with wrap_executor(ProcessPoolExecutor()) as pool, cache("project-x"):
        futures = [pool.submit(simulate, t) for t in temperatures]
        results = list(pool.map(simulate, temperatures))

A thread pool runs each task in a copy of the submitter's context.  Any
other executor (process pools, whatever the start method) gets the cache
pickled — caches and storages pickle by their constructor arguments — and
activated around the task in the worker; a worker rebuilds each distinct
cache once, not once per task.

A decorated function submitted whose call is already stored is not
scheduled at all: its future is returned already resolved with the stored
result.  Concurrent identical calls in several workers compute once (see
:mod:`fleche.single_flight`).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import CacheWarning, warn
from .state import activated_cache, active_metadata, active_tags, cache, meta, tags

__all__ = ["CachingExecutor", "wrap_executor"]

R = TypeVar("R")

_MISSING = object()
#: Distinct caches a worker process keeps rebuilt (a pool rarely sees more than one).
_REBUILT_MAX = 8
_rebuilt: dict[bytes, tuple[Any, tuple[Any, ...], dict[str, Any]]] = {}
_rebuilt_lock = threading.Lock()


def wrap_executor(executor: Executor) -> CachingExecutor:
    """``executor`` made to run tasks with the submitter's cache, metadata and tags (see the module)."""
    if isinstance(executor, CachingExecutor):
        return executor
    if not isinstance(executor, Executor):
        hint = (
            " (a Dask client's is client.get_executor())"
            if hasattr(executor, "get_executor")
            else ""
        )
        raise TypeError(
            f"wrap_executor() takes a concurrent.futures.Executor{hint}, not {type(executor).__name__}"
        )
    return CachingExecutor(executor)


class CachingExecutor(Executor):
    """An executor whose tasks see the cache, metadata and tags active where they were submitted.

    Made by :func:`wrap_executor`; shutting it down shuts the wrapped one down.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._threads = isinstance(executor, ThreadPoolExecutor)
        self._lock = threading.Lock()
        # (the objects pickled, kept alive so their ids stay theirs) and their pickle.
        self._state: tuple[tuple[Any, ...], bytes | None] | None = None
        self._warned = False

    def __repr__(self) -> str:
        return f"wrap_executor({self.executor!r})"

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)``; a stored call of a decorated function resolves at once."""
        stored = _stored_result(fn, args, kwargs)
        if stored is not _MISSING:
            future: Future[R] = Future()
            future.set_result(stored)
            return future
        if self._threads:
            return self.executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)
        if _by_value(fn):
            # Pickled here, once: Dask would pickle it twice (its stream names __main__).
            return self.executor.submit(
                _run_shipped, self._pickled_state(), pickle.dumps(fn), args, kwargs
            )
        return self.executor.submit(_run, self._pickled_state(), fn, args, kwargs)

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        **options: Any,
    ) -> Iterator[R]:
        """Like :meth:`Executor.map`; with ``chunksize > 1`` on a process pool, tasks go in chunks.

        Chunked tasks skip the check for stored calls at submission (the
        worker still loads them instead of computing).  Other keywords go
        to the wrapped executor's ``map`` as given.
        """
        if chunksize > 1 and not self._threads:
            task = functools.partial(_apply, self._pickled_state(), fn)
            given = {"timeout": timeout, "chunksize": chunksize, **options}
            return self.executor.map(task, *iterables, **_taken(self.executor, "map", given))
        return super().map(fn, *iterables, timeout=timeout, **options)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, **options: Any) -> None:
        """Shut the wrapped executor down.

        ``cancel_futures=False`` is not passed to an executor whose
        ``shutdown`` does not take it (Dask's); other keywords go as given.
        """
        given = {"wait": wait, "cancel_futures": cancel_futures, **options}
        self.executor.shutdown(**_taken(self.executor, "shutdown", given))

    def _pickled_state(self) -> bytes | None:
        """The active cache, metadata and tags, pickled once for as long as they stay the same.

        With no cache activated, none is sent: a worker opens the default
        cache itself when a task needs it (the same one, from the same
        configuration), and submitting a plain function opens nothing.
        """
        current = (activated_cache(), active_metadata(), active_tags())
        with self._lock:
            known = self._state
            if known is not None and all(a is b for a, b in zip(known[0], current, strict=True)):
                return known[1]
            try:
                data: bytes | None = pickle.dumps((current[0], current[1], dict(current[2])))
            except Exception as err:
                data = None
                warn(
                    f"fleche cannot send the active cache {current[0]} to worker processes "
                    f"({type(err).__name__}: {err}); they use their own default cache",
                    CacheWarning,
                )
            else:
                if current[0] is not None and not current[0].persistent and not self._warned:
                    self._warned = True
                    warn(
                        f"the active cache {current[0]} is not persistent: calls computed in worker "
                        "processes are stored in each worker's own copy, not seen here; "
                        "use a file or SQL store to share them",
                        CacheWarning,
                    )
            self._state = (current, data)
            return data


#: Keywords of ``concurrent.futures`` that not every executor takes, with their defaults.
_STANDARD = {"timeout": None, "chunksize": 1, "cancel_futures": False}


def _taken(executor: Executor, method: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` without the standard keywords at their default that ``method`` does not take."""
    names = _keywords(type(executor), method)
    if names is None:
        return given
    return {
        name: value
        for name, value in given.items()
        if name in names or name not in _STANDARD or value != _STANDARD[name]
    }


@functools.cache
def _keywords(kind: type, method: str) -> frozenset[str] | None:
    """The keywords ``kind.method`` takes by name (read once per class); ``None``: any."""
    try:
        parameters = inspect.signature(getattr(kind, method)).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass everything
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(
        p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def _stored_result(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The stored result of ``fn(*args, **kwargs)`` if ``fn`` is a cached function and has it."""
    from .asynchronous import AsyncCachedFunction
    from .methods import BoundCachedFunction
    from .wrapper import CachedFunction

    function = fn.__func__ if isinstance(fn, BoundCachedFunction) else fn
    if not isinstance(function, CachedFunction) or isinstance(function, AsyncCachedFunction):
        return _MISSING
    try:
        return fn.cache.load_result(fn.digest(*args, **kwargs))
    except Exception:  # a miss, or something the call itself will report
        return _MISSING


def _by_value(fn: Any) -> bool:
    """Whether ``fn`` is a decorated function that pickles by value (see :mod:`fleche.shipping`)."""
    from .shipping import importable
    from .wrapper import CachedFunction

    return isinstance(fn, CachedFunction) and not importable(fn)


def _activated(state: bytes | None) -> tuple[Any, tuple[Any, ...], dict[str, Any]] | None:
    """The cache, metadata and tags of a pickled state, rebuilt once per worker process."""
    if state is None:
        return None
    with _rebuilt_lock:
        found = _rebuilt.get(state)
        if found is None:
            if len(_rebuilt) >= _REBUILT_MAX:
                _rebuilt.pop(next(iter(_rebuilt)))
            found = _rebuilt[state] = pickle.loads(state)
        return found


def _within(
    state: bytes | None, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    found = _activated(state)
    if found is not None:
        active, recorders, active_tags = found
        if active is not None:
            cache(active)
        meta(*recorders)
        tags(**active_tags)
    return fn(*args, **kwargs)


def _run(
    state: bytes | None, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    """A task in a worker process: ``fn`` in a fresh context with the submitter's cache active."""
    return contextvars.Context().run(_within, state, fn, args, kwargs)


def _run_shipped(
    state: bytes | None, function: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """:func:`_run` of a decorated function pickled by the submitter (rebuilt once per process)."""
    return _run(state, pickle.loads(function), args, kwargs)


def _apply(state: bytes | None, fn: Callable[..., R], *args: Any) -> R:
    """One item of a chunked :meth:`CachingExecutor.map`."""
    return _run(state, fn, args, {})
