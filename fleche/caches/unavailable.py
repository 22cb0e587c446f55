"""A store that cannot be opened right now: calls still run, and it is tried again later.

When the active store cannot be opened (a read-only mount, a full disk, a
corrupt database, an unreachable server), decorated calls must still
return their results.  :class:`UnavailableCache` stands in for it: one
:class:`~fleche.errors.CacheWarning` says why, every operation goes to a
fallback (a read-only view of the store when one could be opened, else a
cache that stores nothing), and opening the store is tried again at most
once every ``retry_after`` seconds, not on every call.  Once it opens,
every operation goes to it.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from ..digest import Digest
from ..errors import CacheWarning
from .base import CacheBase, Duration

__all__ = ["RETRY_SECONDS", "UnavailableCache"]

#: Seconds between two attempts to open a store that could not be opened.
RETRY_SECONDS = 30.0


class UnavailableCache(CacheBase):
    """Stands in for the store ``name`` that ``opener()`` failed to open with ``error``.

    ``fallback`` serves meanwhile (e.g. the store opened read-only, or a
    void cache); ``leases(cache)`` finds the lease backend of the store once
    it is open.  Writes the fallback refuses cost no further warning: the
    first one said the results are not stored.
    """

    def __init__(
        self,
        name: str,
        opener: Callable[[], CacheBase],
        error: Exception,
        fallback: CacheBase,
        *,
        retry_after: float = RETRY_SECONDS,
        leases: Callable[[CacheBase], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.error = error
        self.fallback = fallback
        self.retry_after = retry_after
        self._open = opener
        self._leases = leases
        self._clock = clock
        self._opened: CacheBase | None = None
        self._next_try = clock() + retry_after
        self._lock = threading.Lock()
        how = (
            "it is read, new results are not stored"
            if fallback.persistent
            else "calls run without it and nothing is stored"
        )
        why = " ".join(str(error).splitlines()[:1])  # a driver's first line says it
        warnings.warn(
            f"fleche: the store {name} is unavailable ({type(error).__name__}: {why}); "
            f"{how}; opening it is tried again every {retry_after:g} s",
            CacheWarning,
            stacklevel=3,
        )

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @property
    def available(self) -> bool:
        """Whether the store itself has been opened (after an attempt that succeeded)."""
        return self._opened is not None

    def current(self) -> CacheBase:
        """The store if it is open (trying to open it when the time has come), else the fallback."""
        opened = self._opened
        if opened is not None:
            return opened
        now = self._clock()
        if now >= self._next_try:
            with self._lock:
                if self._opened is None and now >= self._next_try:
                    self._next_try = now + self.retry_after
                    try:
                        self._opened = self._open()
                    except Exception as err:  # still unavailable: the fallback serves on
                        self.error = err
        return self.fallback if self._opened is None else self._opened

    def leases(self) -> Any:
        """The lease backend of the store once it is open; none meanwhile."""
        opened = self._opened
        return None if opened is None or self._leases is None else self._leases(opened)

    def save_guarded(
        self, store: Callable[[], Any], key: str | None = None, **wording: str
    ) -> Any:
        # docstring inherited
        if self.current() is not self.fallback:
            return super().save_guarded(store, key, **wording)
        try:
            return store()
        except Exception:  # said once already: this store cannot take results now
            return None

    # -- every operation goes to the store or the fallback ----------------------

    @property
    def read_only(self) -> bool:
        # docstring inherited
        return self.current().read_only

    @property
    def persistent(self) -> bool:
        # docstring inherited
        return self.current().persistent

    def now(self) -> float:
        # docstring inherited
        return self.current().now()

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        return self.current().save(call)

    def prepare(
        self, record: DigestedCall, arguments: Mapping[str, Any], key: Digest
    ) -> PreparedCall:
        # docstring inherited
        return self.current().prepare(record, arguments, key)

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        return self.current().load(key)

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        return self.current().load_result(key)

    def load_value(self, key: Digest | str) -> Any:
        # docstring inherited
        return self.current().load_value(key)

    def contains(self, key: Digest | str) -> bool:
        # docstring inherited
        return self.current().contains(key)

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        self.current().evict(key)

    def query(self, template: QueryCall | None = None, *, expired: bool = False) -> Any:
        # docstring inherited
        return self.current().query(template, expired=expired)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        return self.current().expand(key)

    def referenced(self) -> set[Digest]:
        # docstring inherited
        return self.current().referenced()

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> list[Digest]:
        # docstring inherited
        return self.current().gc(dry_run, grace=grace)
