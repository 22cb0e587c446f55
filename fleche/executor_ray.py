"""Ray tasks behind the ``concurrent.futures`` interface, so :func:`~fleche.executor.wrap_executor` takes them.

Ray has no ``Executor`` of its own; :class:`RayExecutor` is the small
adapter: each ``submit`` is one Ray task (one remote function, registered
once), its future is Ray's ``ObjectRef.future()``.  Ray pickles the task
with cloudpickle, so a decorated function of ``__main__`` or a notebook
goes by value (:mod:`fleche.shipping`)::

    ray.init()
    with wrap_executor(RayExecutor()) as pool:
        results = list(pool.map(simulate, temperatures))
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_for
from typing import Any, TypeVar

__all__ = ["RayExecutor"]

R = TypeVar("R")


def _call(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    """The body of every Ray task: one remote function for whatever is submitted."""
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Runs each submitted call as a Ray task on the cluster ``ray.init()`` connected to.

    ``options`` go to ``ray.remote`` (``num_cpus``, ``resources``,
    ``max_retries``…).  ``shutdown`` stops taking work and, with ``wait``,
    waits for what was submitted; it leaves the Ray cluster running.
    """

    def __init__(self, **options: Any) -> None:
        import ray

        self._ray = ray
        self._task = ray.remote(**options)(_call) if options else ray.remote(_call)
        self._pending: dict[Future[Any], Any] = {}
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` as a Ray task."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            reference = self._task.remote(fn, args, kwargs)
            future: Future[R] = reference.future()
            self._pending[future] = reference
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; cancel the Ray tasks not done (``cancel_futures``); wait for them."""
        with self._lock:
            self._shutdown = True
            pending = dict(self._pending)
        if cancel_futures:
            for reference in pending.values():
                self._ray.cancel(reference)  # its future fails with Ray's TaskCancelledError
        if wait:
            wait_for(list(pending))
