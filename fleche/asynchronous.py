"""Cached ``async def`` functions: awaited hits and misses, each call computed once.

``@fleche()`` on a coroutine function gives an :class:`AsyncCachedFunction`:
calling it returns a coroutine, a hit is awaited like a miss, and the same
helpers (``.call``, ``.digest``, ``.contains``, ``.load``, ``.record``,
``.query``, ``.bind``, ``.explain``) work unchanged; ``.rerun`` is awaited too.

Concurrent misses of one call compute it once, awaited or not, in one
process or several: an awaited miss joins the single flight of plain calls
(:func:`fleche.single_flight.compute_once_async`), the same table of calls
in flight and the same leases, waiting without blocking its event loop.
If the leading task is cancelled, a waiter takes over; if the body raises,
every waiter gets the exception.  Reads and writes of the store, and taking
a lease (which never waits), stay synchronous: they are short next to a
body worth caching, and a thread hop per hit would cost more than it saves.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from .caches import Cache, RefreshingCache
from .single_flight import compute_once_async
from .state import active_cache
from .state import cache as activate
from .wrapper import MISS, CachedFunction, Keyed, install_awaitable_variant

__all__ = ["AsyncCachedFunction", "is_coroutine_function"]


@functools.cache
def _asyncio_marker() -> Any:
    """What ``asyncio.iscoroutinefunction`` recognises (Python < 3.12); asyncio loaded on first use.

    ``import fleche`` does not import asyncio: a program that awaits has it already.
    """
    import asyncio

    return getattr(getattr(asyncio, "coroutines", None), "_is_coroutine", None)


def is_coroutine_function(func: Any) -> bool:
    """Whether calling ``func`` returns a coroutine: ``async def``, or marked as such."""
    if inspect.iscoroutinefunction(func):
        return True
    marker = _asyncio_marker()
    return marker is not None and getattr(func, "_is_coroutine", None) is marker


class AsyncCachedFunction(CachedFunction):
    """A cached coroutine function (see :func:`fleche.fleche`)."""

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        super().__init__(func, **options)
        # Let inspect/asyncio see a coroutine function, as they would for the body.
        if hasattr(inspect, "markcoroutinefunction"):  # Python >= 3.12
            inspect.markcoroutinefunction(self)
        elif _asyncio_marker() is not None:
            self._is_coroutine = _asyncio_marker()

    def __call__(self, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._call(args, kwargs)

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cache = self.cache
        keyed = self._key(cache, args, kwargs)
        if keyed is None:
            return await self.func(*args, **kwargs)
        key = keyed.key
        result = self._stored_result(cache, key)
        if result is not MISS:
            return result
        return await compute_once_async(
            cache,
            key,
            lambda: cache.load_result(key),
            lambda: self._compute_async(cache, keyed, args, kwargs),
        )

    async def _compute_async(
        self, cache: Cache, keyed: Keyed, args: tuple[Any, ...], kwargs: dict[str, Any]
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


install_awaitable_variant(AsyncCachedFunction)
