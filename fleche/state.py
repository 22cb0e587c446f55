"""The active cache, metadata recorders and tags, as context variables.

``cache(...)`` activates a cache for the rest of the context (sticky) and,
used as ``with cache(...):``, only for the block; ``meta(...)`` and
``tags(...)`` do the same for metadata recorders and tags.  Context
variables make all three correct under threads and asyncio tasks, and a
:class:`BoundWrapper` carries them to wherever a function runs.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from .caches import Cache, CacheBase, CacheStack
from .metadata import ACTIVE_TAGS, Environment, Git, Metadata, Runtime, Tags

__all__ = [
    "BoundWrapper",
    "active_cache",
    "active_metadata",
    "active_tags",
    "cache",
    "get_cache",
    "get_metadata",
    "meta",
    "project",
    "tags",
]

_cache: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("fleche_cache", default=None)
_metadata: contextvars.ContextVar[tuple[Metadata, ...]] = contextvars.ContextVar(
    "fleche_metadata", default=(Runtime(), Environment(), Git(), Tags())
)
_tags = ACTIVE_TAGS


def resolve(spec: Cache | str) -> Cache:
    """A cache from a cache, a name (reserved, or one in ``fleche.toml``), a path or a URL."""
    if isinstance(spec, CacheBase) or callable(getattr(spec, "load_result", None)):
        return spec  # any object with the cache interface
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(
            f"cache() takes a cache, a cache name, a path or a URL, not {type(spec).__name__}"
        )
    from .opening import open_for_calls  # on first use: import fleche stays light

    return open_for_calls(spec)  # a store that cannot be opened costs a warning, not calls


def default_cache() -> Cache:
    """The cache used when none is active: the configured default, else the embedded store."""
    from .opening import open_for_calls

    return open_for_calls()


def active_cache() -> Cache:
    """The cache decorated functions use right now."""
    current = _cache.get()
    if current is None:
        current = default_cache()
        _cache.set(current)
    return current


def activated_cache() -> Cache | None:
    """The cache set with :func:`cache` in this context, if any (never opens the default)."""
    return _cache.get()


def active_metadata() -> tuple[Metadata, ...]:
    """The metadata recorders in force."""
    return _metadata.get()


def get_cache() -> Cache:
    """The 0.22 name of :func:`active_cache`."""
    return active_cache()


def get_metadata() -> tuple[Metadata, ...]:
    """The 0.22 name of :func:`active_metadata`."""
    return _metadata.get()


def active_tags() -> Mapping[str, Any]:
    """The tags in force."""
    return _tags.get()


class _Activation:
    """Sets a context variable now; as a context manager, restores it on exit."""

    def __init__(self, var: contextvars.ContextVar[Any], value: Any) -> None:
        self.value = value
        self._var = var
        self._token = var.set(value)

    def __enter__(self) -> Any:
        return self.value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._var.reset(self._token)


def cache(new_cache: Cache | str | None = None, stack: bool = False) -> Any:
    """The active cache; or activate one: sticky, or for a ``with`` block.

    ``new_cache`` is a :class:`Cache`, a reserved name (``"memory"``,
    ``"void"``) or a cache named in ``fleche.toml``; an unknown name is a
    :class:`~fleche.errors.ConfigError`.  ``stack=True`` puts it in front of
    the active cache, as a :class:`~fleche.caches.CacheStack`.  Without an
    argument, the active cache itself is returned.
    """
    if new_cache is None:
        return active_cache()
    new = resolve(new_cache)
    if stack:
        new = CacheStack([new, active_cache()])
    return _Activation(_cache, new)


def meta(*new_metadata: Metadata, stack: bool = False) -> _Activation:
    """Use these metadata recorders (or, with ``stack=True``, add them to the active ones).

    As in the 0.22 release, ``meta(r)`` alone replaces the recorders in
    force, the defaults included; ``meta(r, stack=True)`` keeps them.
    """
    for r in new_metadata:
        if not (
            hasattr(r, "name")
            and any(
                callable(getattr(r, first, None)) and callable(getattr(r, then, None))
                for first, then in (("start", "stop"), ("pre", "post"))
            )
        ):
            raise TypeError(
                f"{r!r} is not a metadata recorder (needs name, and start()/stop(token) "
                "or pre(call)/post(pre, call))"
            )
    current = _metadata.get() if stack else ()
    return _Activation(_metadata, current + new_metadata)


def tags(**entries: Any) -> _Activation:
    """Tag the calls made from here on (or inside a ``with`` block)."""
    return _Activation(_tags, {**_tags.get(), **entries})


def project(name: str) -> _Activation:
    """Tag the calls made from here on with a project name: ``tags(project=name)``."""
    return tags(project=name)


@dataclasses.dataclass(frozen=True)
class BoundWrapper:
    """``func`` with a cache, metadata recorders and tags that it always runs with.

    :meth:`bind` captures those active where it is called; calling the
    wrapper installs them around the call, wherever it runs (another
    thread, or another process: it pickles when ``func`` and the cache do).
    """

    func: Callable[..., Any]
    cache: CacheBase
    meta: tuple[Metadata, ...]
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def bind(cls, func: Callable[..., Any]) -> BoundWrapper:
        """``func`` bound to the active cache, metadata recorders and tags."""
        return cls(func, active_cache(), active_metadata(), dict(active_tags()))

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        with (
            _Activation(_cache, self.cache),
            _Activation(_metadata, tuple(self.meta)),
            _Activation(_tags, self.tags),
        ):
            return self.func(*args, **kwargs)
