"""Lineage: which calls produced a stored value, and which calls used it.

The public home of :func:`lineage` and :class:`Lineage` (also
``cache.lineage(key)``).  They are built in the cache layer, from the cache
interface alone: the walk in :mod:`fleche.caches.provenance` (what is
followed, and how), the graph and its renderings in
:mod:`fleche.caches.lineage`.
"""

from __future__ import annotations

from .caches.lineage import PART, Edge, Lineage
from .caches.provenance import lineage

__all__ = ["PART", "Edge", "Lineage", "lineage"]
