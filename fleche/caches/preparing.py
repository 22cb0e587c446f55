"""Storing a miss, from the cache's side: guarded steps, prepared calls finished once.

:meth:`~FinishesPreparedCalls.save_guarded` runs a store step and turns its
failure into a warning: the one place a cache trades caching for the user's
result.  The cache that prepared a call commits it once, or lets it go.

A :class:`~fleche.call.PreparedCall` is plain data naming the cache that
made it; ``cache.commit(prepared, result, metadata)`` and
``cache.abandon(prepared)`` reach that cache (a wrapper forwards them),
which stores or releases what it holds through two hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..call import PreparedCall
from ..digest import Digest
from ..errors import CacheWarning, warn
from .messages import failure_message

__all__ = ["FinishesPreparedCalls"]


class FinishesPreparedCalls:
    """``save_guarded``, ``commit`` and ``abandon`` of every cache; a cache that prepares calls writes the hooks."""

    def save_guarded(
        self,
        store: Callable[[], Any],
        key: str | None = None,
        *,
        what: str = "store the call",
        then: str = "the result is returned uncached",
    ) -> Any:
        """Run a store step; on failure warn (:class:`CacheWarning`) and return ``None``.

        The single place where fleche trades caching for the user's result:
        backends raise, this decides.  Only ``Exception`` is caught, so an
        interrupt still interrupts.  The warning says "fleche could not
        ``what`` (call ``key``): the cause; ``then``", points at the user's
        line, and suggests cloudpickle when a lambda or a local function
        could not be pickled.
        """
        try:
            return store()
        except Exception as err:
            message = failure_message(self, err, what, key, then)
            if message is not None:
                warn(message, CacheWarning)
            return None

    def commit(
        self,
        prepared: PreparedCall,
        result: Any,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Digest:
        """Store the result and the record of a prepared call (with extra ``metadata``); the call key.

        The cache that prepared it does the work (a wrapper forwards to it);
        ``RuntimeError`` if it was committed already.  The call is released
        whether or not storing succeeds.
        """
        owner = prepared.cache
        if owner is not self:
            return owner.commit(prepared, result, metadata)
        if prepared.committed:
            raise RuntimeError(f"the prepared call {prepared.key[:12]} was committed already")
        try:
            key = self._commit_prepared(prepared, result, metadata or {})
        finally:
            if prepared.open:  # what abandon does for its owner: released, whatever happened
                prepared.open = False
                self._release_prepared(prepared)
        prepared.committed = True
        return key

    def abandon(self, prepared: PreparedCall) -> None:
        """Let a prepared call go without storing anything more (its pins released); idempotent."""
        owner = prepared.cache
        if owner is not self:
            owner.abandon(prepared)
        elif prepared.open:
            prepared.open = False
            self._release_prepared(prepared)

    def _commit_prepared(
        self, prepared: PreparedCall, result: Any, metadata: Mapping[str, Any]
    ) -> Digest:
        """Store what :meth:`commit` stores: a cache whose ``prepare`` makes calls overrides it."""
        raise TypeError(f"{type(self).__name__} prepares no calls of its own to commit")

    def _release_prepared(self, prepared: PreparedCall) -> None:
        """Release what ``prepare`` holds for ``prepared`` (its ``hold``); overridden with it."""
        raise TypeError(f"{type(self).__name__} prepares no calls of its own to release")
