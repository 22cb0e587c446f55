"""The active cache, metadata recorders and tags, as context variables.

``cache(...)`` activates a cache for the rest of the context (sticky) and,
used as ``with cache(...):``, only for the block.  Context variables make
both correct under threads and asyncio tasks.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any

from .caches import Cache, CacheBase, memory_cache, void_cache
from .metadata import Environment, Git, Metadata, Runtime, Tags

__all__ = ["active_cache", "active_metadata", "active_tags", "cache", "meta", "project", "tags"]

_cache: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("fleche_cache", default=None)
_metadata: contextvars.ContextVar[tuple[Metadata, ...]] = contextvars.ContextVar(
    "fleche_metadata", default=(Runtime(), Environment(), Git(), Tags())
)
_tags: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "fleche_tags", default=MappingProxyType({})
)

#: Cache names every process knows without a configuration file.
RESERVED = {"memory": memory_cache, "void": void_cache}


def resolve(spec: Cache | str) -> Cache:
    """A cache from a cache, a name (reserved, or one in ``fleche.toml``), a path or a URL."""
    if isinstance(spec, CacheBase):
        return spec
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(
            f"cache() takes a cache, a cache name, a path or a URL, not {type(spec).__name__}"
        )
    if spec in RESERVED:
        return RESERVED[spec]()
    from .opening import open_for_calls  # a store that cannot be opened costs a warning, not calls

    return open_for_calls(spec)


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


def active_metadata() -> tuple[Metadata, ...]:
    """The metadata recorders in force."""
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


def cache(spec: Cache | str) -> _Activation:
    """Activate a cache: sticky, or for a ``with`` block.

    ``spec`` is a :class:`Cache`, a reserved name (``"memory"``, ``"void"``) or
    a cache named in ``fleche.toml``; an unknown name is a
    :class:`~fleche.errors.ConfigError`.
    """
    return _Activation(_cache, resolve(spec))


def meta(*recorders: Metadata, replace: bool = False) -> _Activation:
    """Add metadata recorders (or, with ``replace``, use only these)."""
    for r in recorders:
        if not (
            hasattr(r, "name")
            and callable(getattr(r, "start", None))
            and callable(getattr(r, "stop", None))
        ):
            raise TypeError(
                f"{r!r} is not a metadata recorder (needs name, start() and stop(token))"
            )
    current = () if replace else _metadata.get()
    return _Activation(_metadata, current + recorders)


def tags(**entries: Any) -> _Activation:
    """Tag the calls made from here on (or inside a ``with`` block)."""
    return _Activation(_tags, {**_tags.get(), **entries})


def project(name: str) -> _Activation:
    """Tag the calls made from here on with a project name: ``tags(project=name)``."""
    return tags(project=name)
