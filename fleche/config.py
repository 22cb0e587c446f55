"""Which cache a name means: ``fleche.toml`` discovery and the embedded default."""

from __future__ import annotations

from .caches import Cache, memory_cache
from .errors import ConfigError

__all__ = ["default_cache", "named_cache"]


def named_cache(name: str) -> Cache:
    """The cache configured under ``name``; :class:`ConfigError` if there is none."""
    raise ConfigError(f"unknown cache name {name!r}; known names: 'memory', 'void'")


def default_cache() -> Cache:
    """The cache used when none is active."""
    return memory_cache()
