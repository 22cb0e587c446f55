"""Pruning and history: maintenance of stored calls through the cache interface only.

:meth:`CacheBase.prune <fleche.caches.CacheBase.prune>` and
:meth:`~fleche.caches.CacheBase.history` delegate here, so every cache and
every composition gets them from ``now``, ``query`` and ``evict`` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..call import DigestedCall, QueryCall
from ..digest import Digest
from ..expiry import EXPIRY, Duration, is_expired, seconds

if TYPE_CHECKING:
    import pandas

__all__ = ["history", "prune"]


def prune(
    cache: Any,
    older_than: Duration | None = None,
    func: Any = None,
    *,
    expired: bool | None = None,
    dry_run: bool = False,
) -> list[Digest]:
    """Remove the calls of ``cache`` matching every criterion given; see :meth:`CacheBase.prune <fleche.caches.CacheBase.prune>`."""
    if older_than is None and func is None and expired is None:
        expired = True
    now = cache.now()
    cutoff = None if older_than is None else now - seconds(older_than, "older_than")
    template, wanted = _function_filter(func)
    doomed = []
    for call in cache.query(template, expired=True):
        record = call.digested_call
        if cutoff is not None and not record.created < cutoff:
            continue
        if wanted is not None and not wanted(record):
            continue
        if expired is not None and is_expired(record, now) != expired:
            continue
        doomed.append(call.key())
    if not dry_run:
        for key in doomed:
            try:
                cache.evict(key)
            except KeyError:
                pass  # removed meanwhile
    return doomed


def history(cache: Any, func: Any = None) -> pandas.DataFrame:
    """Every call of ``cache``, oldest first; see :meth:`CacheBase.history <fleche.caches.CacheBase.history>`."""
    import pandas

    template, wanted = _function_filter(func)
    now = cache.now()
    query = cache.query(template, expired=True)
    if wanted is not None:
        query = query.filter(lambda call: wanted(call.digested_call))
    table = query.table(values=False)
    if table.empty:
        return pandas.DataFrame(
            columns=["key", "function", "result", "created", "expires", "expired"]
        )
    column = f"{EXPIRY}.expires"
    ends = table[column] if column in table else pandas.Series(float("nan"), index=table.index)
    table["expires"] = pandas.to_datetime(ends, unit="s")
    table["expired"] = (ends <= now).fillna(False).astype(bool)
    return table.sort_values("created", kind="stable").reset_index(drop=True)


def _function_filter(func: Any) -> tuple[QueryCall | None, Callable[[DigestedCall], bool] | None]:
    """A template (pushed down to the storage) and a check for the calls of ``func``."""
    if func is None:
        return None, None
    if isinstance(func, str):
        return None, lambda record: func in (record.name, record.qualified_name)
    name = getattr(func, "name", None) if hasattr(func, "prefix") else None  # a CachedFunction
    if name is not None:
        module = None if "module" in getattr(func, "unkeyed", frozenset()) else func.module
        return QueryCall(name=name, module=module), None
    try:
        return QueryCall(name=func.__qualname__, module=func.__module__), None
    except AttributeError:
        raise TypeError(
            f"func= takes a function or a function name, not {type(func).__name__}"
        ) from None
