"""The read-only union of several caches, e.g. your own store and a colleague's."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..digest import Digest
from ..errors import ReadOnlyError
from ..expiry import Duration
from .base import CacheBase
from .members import Layered
from .refusing import RefusingWrites

__all__ = ["CachePool"]


@dataclasses.dataclass(frozen=True)
class CachePool(RefusingWrites, Layered):
    """The read-only union of several caches: ``CachePool([mine, colleagues])``.

    Members may be any objects with the cache interface.

    Reads take the first cache that holds a call (in the order given);
    queries see every call once.  Writes raise
    :class:`~fleche.errors.ReadOnlyError`; put the pool under a writable
    layer of a :class:`CacheStack` to keep what you compute.
    """

    _MEMBERS = "caches"
    caches: Sequence[CacheBase]

    def _refuse(self, what: str) -> ReadOnlyError:
        return ReadOnlyError(
            f"cannot {what}: a CachePool is read-only; stack a writable cache above it"
        )

    def _garbage(self, grace: Duration | None) -> set[Digest]:
        removed: set[Digest] = set()
        for cache in self.caches:
            removed.update(cache.gc(True, grace=grace))
        return removed
