"""Caches that wrap one other cache: read-only, filtered, refreshing.

:class:`WrapperCache` forwards every operation of
:class:`~fleche.caches.base.CacheBase` to the wrapped cache, by name; each
policy overrides only the operations it changes.  There is no
``__getattr__`` forwarding: an operation a wrapper does not know is an
error, not a silent bypass of its policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from ..digest import Digest
from ..errors import ReadOnlyError
from ..query import QueryIterator
from .base import CacheBase, Duration, RefusingWrites

__all__ = ["FilteredCache", "ReadOnlyCache", "RefreshingCache", "WrapperCache"]


@dataclasses.dataclass(frozen=True)
class WrapperCache(CacheBase):
    """A cache that forwards every operation to ``cache``; subclasses change some."""

    cache: CacheBase

    def __post_init__(self) -> None:
        if not isinstance(self.cache, CacheBase):
            raise TypeError(f"{type(self).__name__} wraps a cache, not {type(self.cache).__name__}")

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return (_rebuild, (type(self), fields))

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.cache})"

    @property
    def read_only(self) -> bool:
        # docstring inherited
        return self.cache.read_only

    @property
    def persistent(self) -> bool:
        # docstring inherited
        return self.cache.persistent

    def now(self) -> float:
        # docstring inherited
        return self.cache.now()

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        return self.cache.save(call)

    def prepare(
        self, record: DigestedCall, arguments: Mapping[str, Any], key: Digest
    ) -> PreparedCall:
        # docstring inherited
        return self.cache.prepare(record, arguments, key)

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        return self.cache.load(key)

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        return self.cache.load_result(key)

    def load_value(self, key: Digest | str) -> Any:
        # docstring inherited
        return self.cache.load_value(key)

    def contains(self, key: Digest | str) -> bool:
        # docstring inherited
        return self.cache.contains(key)

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        self.cache.evict(key)

    def query(self, template: QueryCall | None = None, *, expired: bool = False) -> QueryIterator:
        # docstring inherited
        # Re-bound to this wrapper, so that query(...).evict() obeys its policy.
        inner = self.cache.query(template, expired=expired)
        return QueryIterator(inner.__iter__, self)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        return self.cache.expand(key)

    def referenced(self) -> set[Digest]:
        # docstring inherited
        return self.cache.referenced()

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> list[Digest]:
        # docstring inherited
        return self.cache.gc(dry_run, grace=grace)


def _rebuild(cls: type, fields: dict[str, Any]) -> Any:
    return cls(**fields)


@dataclasses.dataclass(frozen=True)
class ReadOnlyCache(RefusingWrites, WrapperCache):
    """``cache`` that can be read but never written, e.g. a colleague's store.

    Every write raises :class:`~fleche.errors.ReadOnlyError`.  A decorated
    function using it still returns its results: a miss is computed and a
    :class:`~fleche.errors.CacheWarning` says it was not stored.
    """

    def _refuse(self, what: str) -> ReadOnlyError:
        return ReadOnlyError(
            f"cannot {what}: the cache {self.cache} is opened read-only; "
            "write through a writable cache (or a CacheStack with a writable layer)"
        )

    def _garbage(self, grace: Duration | None) -> list[Digest]:
        return self.cache.gc(True, grace=grace)


@dataclasses.dataclass(frozen=True)
class RefreshingCache(WrapperCache):
    """``cache`` where every decorated call is computed again and stored over the old one.

    Reading a result is always a miss; everything else (queries, records,
    values, writes) goes to ``cache``.  ``with fleche.cache(RefreshingCache(c)):``
    refreshes every call made in the block.
    """

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        raise KeyError(f"the call {str(key)[:12]} is being refreshed")


@dataclasses.dataclass(frozen=True)
class FilteredCache(WrapperCache):
    """``cache`` showing only the calls ``predicate`` accepts.

    ``predicate`` is a function of a :class:`~fleche.call.LazyCall` or a
    :class:`~fleche.call.QueryCall` template (then pushed down to the
    storage where it can be).  Hidden calls read as missing; writes go
    through unchanged (a stored call that does not match stays hidden).
    Made by ``cache.filter(predicate)``.
    """

    predicate: Callable[[LazyCall], bool] | QueryCall
    _match: Callable[[LazyCall], bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        predicate = self.predicate
        if isinstance(predicate, QueryCall):
            template = predicate.digested()
            match: Callable[[LazyCall], bool] = lambda call: template.matches(call.digested_call)  # noqa: E731
        elif callable(predicate):
            match = predicate
        else:
            raise TypeError(
                f"filter() takes a function of a call or a QueryCall, not {type(predicate).__name__}"
            )
        object.__setattr__(self, "_match", match)

    def _visible(self, key: Digest | str) -> LazyCall:
        call = self.cache.load(key)
        if not self._match(call):
            raise KeyError(f"the call {str(key)[:12]} is hidden by the filter")
        return call

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        return self._visible(key)

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        return self._visible(key).result

    def contains(self, key: Digest | str) -> bool:
        # docstring inherited
        try:
            self._visible(key)
        except KeyError:
            return False
        return True

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        self.cache.evict(self._visible(key).key())

    def query(self, template: QueryCall | None = None, *, expired: bool = False) -> QueryIterator:
        # docstring inherited
        if template is None and isinstance(self.predicate, QueryCall):
            template = self.predicate  # the storage answers it (SQL pushdown)
        inner = self.cache.query(template, expired=expired).filter(self._match)
        return QueryIterator(inner.__iter__, self)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        full = self.cache.expand(key)
        if self.cache.contains(full) and not self.contains(full):
            raise KeyError(f"no visible call or value starts with {str(key)!r}")
        return full
