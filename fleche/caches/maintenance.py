"""Pruning, history and garbage collection: maintenance through the cache interface only.

:meth:`CacheBase.prune <fleche.caches.CacheBase.prune>` and
:meth:`~fleche.caches.CacheBase.history` delegate here, so every cache and
every composition gets them from ``now``, ``query`` and ``evict`` alone;
:meth:`Cache.gc <fleche.caches.Cache.gc>` collects with set operations over
one listing of the values, the references the call storage lists and the
parts the value storage knows (:meth:`~fleche.storage.base.ValueStorage.reachable`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..call import DigestedCall, QueryCall
from ..digest import Digest
from ..expiry import EXPIRY, GC_GRACE, Duration, is_expired, seconds
from ..storage.base import ValueStorage

if TYPE_CHECKING:
    import pandas

__all__ = ["collect", "history", "horizon", "prune", "remove_values", "unreferenced"]


def horizon(cache: Any, grace: Duration | None) -> float:
    """The time before which an unreferenced value is old enough to collect (``None``: :data:`GC_GRACE`)."""
    return cache.now() - seconds(GC_GRACE if grace is None else grace, "grace")


def unreferenced(cache: Any, grace: Duration | None) -> tuple[list[Digest], list[Digest]]:
    """Values of ``cache`` no call refers to: ``(collectable, kept)``, kept being younger than ``grace``.

    The values are listed first, so one written later (a call being stored
    now) is never collectable; a container younger than ``grace`` keeps
    its parts, however old they are.
    """
    since = horizon(cache, grace)
    values: ValueStorage = cache.values
    unused = set(values.list())
    roots = set(cache.calls.referenced())
    roots.update(cache.pins.snapshot())
    unused -= values.reachable(roots, since=since)
    young = [key for key in unused if (values.stored_at(key) or since) > since]
    if young:
        unused -= values.reachable(young)
    return sorted(unused), sorted(young)


def collect(cache: Any, dry_run: bool, grace: Duration | None) -> set[Digest]:
    """Remove (unless ``dry_run``) the collectable values of ``cache``, never one pinned meanwhile."""
    since = horizon(cache, grace)
    return remove_values(cache, unreferenced(cache, grace)[0], dry_run, since)


def remove_values(cache: Any, dead: list[Digest], dry_run: bool, since: float) -> set[Digest]:
    """Remove (unless ``dry_run``) the values ``dead`` of ``cache`` (from :func:`unreferenced`) not in use now.

    ``since`` is the :func:`horizon` taken before ``dead`` was found.  A
    value pinned by a call of this process, or stored again by any writer
    after ``since`` (a call reusing it), is kept
    (:meth:`~fleche.storage.keys.KeyManagement.evict_unused`).
    """
    if dry_run:
        pinned = cache.pins.snapshot()
        return {key for key in dead if key not in pinned}
    removed: set[Digest] = set()

    def remove(key: Digest) -> None:
        if cache.values.evict_unused(key, since):
            removed.add(key)

    for key in dead:
        cache.pins.unless_pinned(key, functools.partial(remove, key))
    return removed


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
