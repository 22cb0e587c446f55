"""The read-only union of several caches, e.g. your own store and a colleague's."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall
from ..digest import Digest
from ..errors import ReadOnlyError
from .base import CacheBase, Duration
from .layered import _Layered, _members, _rebuild

__all__ = ["CachePool"]


@dataclasses.dataclass(frozen=True)
class CachePool(_Layered):
    """The read-only union of several caches: ``CachePool([mine, colleagues])``.

    Reads take the first cache that holds a call (in the order given);
    queries see every call once.  Writes raise
    :class:`~fleche.errors.ReadOnlyError`; put the pool under a writable
    layer of a :class:`CacheStack` to keep what you compute.
    """

    caches: Sequence[CacheBase]
    _: dataclasses.KW_ONLY
    retry_after: float = 60.0
    clock: Callable[[], float] = time.time
    _down: dict[int, float] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "caches", _members(self.caches, "CachePool"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.caches, {"retry_after": self.retry_after, "clock": self.clock}),
        )

    @property
    def _members(self) -> tuple[CacheBase, ...]:
        return self.caches

    @property
    def read_only(self) -> bool:
        # docstring inherited
        return True

    def _refuse(self, what: str) -> ReadOnlyError:
        return ReadOnlyError(
            f"cannot {what}: a CachePool is read-only; stack a writable cache above it"
        )

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        raise self._refuse("store a call")

    def prepare(
        self, record: DigestedCall, arguments: Mapping[str, Any], key: Digest
    ) -> PreparedCall:
        # docstring inherited
        raise self._refuse(f"store the call {key[:12]}")

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        raise self._refuse(f"evict {str(key)[:12]}")

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> list[Digest]:
        # docstring inherited
        if not dry_run:
            raise self._refuse("collect garbage (dry_run=True only reports)")
        removed: dict[Digest, None] = {}
        for cache in self.caches:
            removed.update(dict.fromkeys(cache.gc(True, grace=grace)))
        return list(removed)
