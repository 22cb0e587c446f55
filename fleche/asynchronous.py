"""Cached ``async def`` functions: awaited hits and misses, each call computed once.

``@fleche()`` on a coroutine function gives an :class:`AsyncCachedFunction`:
calling it returns a coroutine, a hit is awaited like a miss, and the same
helpers (``.call``, ``.digest``, ``.contains``, ``.load``, ``.record``,
``.query``, ``.bind``, ``.explain``) work unchanged; ``.rerun`` is awaited too.

Concurrent awaits of one call in one event loop share one computation: the
first becomes the leader and runs the body, the others wait for its future
(an in-process single flight per key).  If the leader is cancelled, a
waiter takes over; if the body raises, every waiter gets the exception.
Reads and writes of the store stay synchronous: they are short next to a
body worth caching, and a thread hop per hit would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from .caches import Cache, RefreshingCache
from .digest import Digest
from .state import active_cache
from .state import cache as activate
from .wrapper import _MISS, CachedFunction, _Keyed

__all__ = ["AsyncCachedFunction", "is_coroutine_function"]

#: ``asyncio.iscoroutinefunction`` recognises objects carrying this marker (Python < 3.12).
_ASYNCIO_MARKER = getattr(getattr(asyncio, "coroutines", None), "_is_coroutine", None)


def is_coroutine_function(func: Any) -> bool:
    """Whether calling ``func`` returns a coroutine: ``async def``, or marked as such."""
    return inspect.iscoroutinefunction(func) or (
        _ASYNCIO_MARKER is not None and getattr(func, "_is_coroutine", None) is _ASYNCIO_MARKER
    )


class AsyncCachedFunction(CachedFunction):
    """A cached coroutine function (see :func:`fleche.fleche`)."""

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        super().__init__(func, **options)
        #: (event loop, id of the cache, key) -> the future of the computation in flight.
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, int, Digest], asyncio.Future] = {}
        # Let inspect/asyncio see a coroutine function, as they would for the body.
        if hasattr(inspect, "markcoroutinefunction"):  # Python >= 3.12
            inspect.markcoroutinefunction(self)
        elif _ASYNCIO_MARKER is not None:
            self._is_coroutine = _ASYNCIO_MARKER

    def __call__(self, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._call(args, kwargs)

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cache = self.cache
        keyed = self._key(cache, args, kwargs)
        if keyed is None:
            return await self.func(*args, **kwargs)
        key = keyed.key
        slot = (asyncio.get_running_loop(), id(cache), key)
        while True:
            pending = self._inflight.get(slot)
            if pending is None:
                result = self._stored_result(cache, key)
                if result is not _MISS:
                    return result
                break
            try:
                # shield: a waiter that is cancelled must not cancel the leader's future.
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and not (task is not None and task.cancelling()):
                    continue  # the leader was cancelled, not us: look again, maybe lead
                raise
        return await self._lead(slot, cache, keyed, args, kwargs)

    async def _lead(
        self,
        slot: tuple[asyncio.AbstractEventLoop, int, Digest],
        cache: Cache,
        keyed: _Keyed,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Compute the call for every awaiter of ``slot`` and publish the outcome."""
        future = slot[0].create_future()
        self._inflight[slot] = future
        try:
            result = await self._compute_async(cache, keyed, args, kwargs)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: no "never retrieved" log when nobody waits
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[slot]

    async def _compute_async(
        self, cache: Cache, keyed: _Keyed, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Await the body and store the call, like :meth:`CachedFunction._compute`."""
        with self._computation(cache, keyed, args, kwargs) as run:
            run.result = await self._body(*run.args, **run.kwargs)
        return run.result

    async def rerun(self, /, *args: Any, **kwargs: Any) -> Any:
        """Compute this call again, and the decorated calls it makes, storing the new results."""
        cache = self.cache
        with activate(RefreshingCache(active_cache())):
            return await self._compute_async(cache, self._keyed(cache, args, kwargs), args, kwargs)

    def __repr__(self) -> str:
        return f"<fleche cached coroutine function {self.module}.{self.name}>"
