"""Caches: a value storage and a call storage, and compositions of caches.

:class:`Cache` is the building block (values + call records).  The
compositions wrap caches and are caches themselves, so they nest:
:class:`CacheStack` (fast layers in front of persistent ones),
:class:`CachePool` (read-only union), :class:`ReadOnlyCache`,
:class:`FilteredCache` (``cache.filter(...)``), :class:`RefreshingCache`
(every call recomputed) and :class:`SizeLimitedCache` (a byte budget,
least recently used first).  Every one of them offers the operations of
:class:`CacheBase`, including ``prune``, ``history``, ``transfer`` and ``gc``.
"""

from __future__ import annotations

from .base import EXPIRY, CacheBase, expires_at, is_expired
from .core import GC_GRACE, Cache, memory_cache, void_cache
from .layered import CacheStack
from .pool import CachePool
from .size_limited import SizeLimitedCache
from .wrapping import FilteredCache, ReadOnlyCache, RefreshingCache, WrapperCache

__all__ = [
    "EXPIRY",
    "GC_GRACE",
    "Cache",
    "CacheBase",
    "CachePool",
    "CacheStack",
    "FilteredCache",
    "ReadOnlyCache",
    "RefreshingCache",
    "SizeLimitedCache",
    "WrapperCache",
    "expires_at",
    "is_expired",
    "memory_cache",
    "void_cache",
]
