"""Caches: a value storage and a call storage, and compositions of caches.

:class:`Cache` is the building block (values + call records).  The
compositions wrap caches and are caches themselves, so they nest:
:class:`CacheStack` (fast layers in front of persistent ones),
:class:`CachePool` (read-only union), :class:`ReadOnlyCache`,
:class:`FilteredCache` (``cache.filter(...)``), :class:`RefreshingCache`
(every call recomputed) and :class:`SizeLimitedCache` (a byte budget,
least recently used first).  Every one of them offers the operations of
:class:`CacheBase`, including ``prune``, ``history``, ``transfer`` and ``gc``.

The 0.22 names are kept beside ours: ``BaseCache`` (:class:`CacheBase`),
``CacheWrapper`` (:class:`WrapperCache`), ``ReadOnlyMixin``
(:class:`~fleche.caches.refusing.RefusingWrites`), :class:`FilteringMixin`,
:class:`SizeLimitedMixin` and :class:`Rejected` (a policy refused; our
:class:`~fleche.errors.ReadOnlyError` is one).
"""

from __future__ import annotations

from ..errors import Rejected
from ..expiry import EXPIRY, GC_GRACE, expires_at, is_expired
from .base import CacheBase
from .core import Cache, memory_cache, void_cache
from .layered import CacheStack
from .pool import CachePool
from .refusing import RefusingWrites
from .size_limited import SizeLimitedCache, SizeLimitedMixin
from .wrapping import FilteredCache, FilteringMixin, ReadOnlyCache, RefreshingCache, WrapperCache

#: The 0.22 name of :class:`CacheBase`.
BaseCache = CacheBase
#: The 0.22 name of :class:`WrapperCache`.
CacheWrapper = WrapperCache
#: The 0.22 name of :class:`~fleche.caches.refusing.RefusingWrites`.
ReadOnlyMixin = RefusingWrites

__all__ = [
    "EXPIRY",
    "GC_GRACE",
    "BaseCache",
    "Cache",
    "CacheBase",
    "CachePool",
    "CacheStack",
    "CacheWrapper",
    "FilteredCache",
    "FilteringMixin",
    "ReadOnlyCache",
    "ReadOnlyMixin",
    "RefreshingCache",
    "Rejected",
    "SizeLimitedCache",
    "SizeLimitedMixin",
    "WrapperCache",
    "expires_at",
    "is_expired",
    "memory_cache",
    "void_cache",
]
