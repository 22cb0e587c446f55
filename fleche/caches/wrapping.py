"""Caches that wrap one other cache: read-only, filtered, refreshing.

:class:`WrapperCache` (``CacheWrapper`` in 0.22) forwards every operation of
:class:`~fleche.caches.base.CacheBase` to the wrapped cache, by name; each
policy overrides only the operations it changes.  There is no
``__getattr__`` forwarding: an operation a wrapper does not know is an
error, not a silent bypass of its policy.  The policies are mixins
(:class:`~fleche.caches.refusing.RefusingWrites`, :class:`FilteringMixin`) put in
front of the forwarding class, so they also fit in front of a cache class of
one's own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from ..digest import Digest
from ..errors import ReadOnlyError
from ..expiry import Duration
from ..query import QueryIterator
from ..storage.leases import LeaseBackend
from .base import CacheBase, install_composition
from .forms import as_template
from .listing import pages_of
from .refusing import RefusingWrites

__all__ = ["FilteredCache", "FilteringMixin", "ReadOnlyCache", "RefreshingCache", "WrapperCache"]


@dataclasses.dataclass(frozen=True)
class WrapperCache(CacheBase):
    """A cache that forwards every operation to ``cache``; subclasses change some.

    ``cache`` is any object with the cache interface, a
    :class:`~fleche.caches.base.CacheBase` or not.
    """

    cache: CacheBase

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

    def leases(self) -> LeaseBackend | None:
        # docstring inherited: the wrapped cache's, unless this one is never written
        return None if self.read_only else self.cache.leases()

    def now(self) -> float:
        # docstring inherited
        return self.cache.now()

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        return self.cache.save(call)

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
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

    def query(
        self, template: QueryCall | None = None, *, expired: bool = False, **fields: Any
    ) -> QueryIterator:
        # docstring inherited
        # Re-bound to this wrapper, so that query(...).evict() obeys its policy.
        # The same query, its pages and count too (a table of it reads pages, not calls).
        inner = self.cache.query(as_template(template, fields), expired=expired)
        return dataclasses.replace(inner, cache=self)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        return self.cache.expand(key)

    def referenced(self) -> set[Digest]:
        # docstring inherited
        return self.cache.referenced()

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
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

    def leases(self) -> None:
        # docstring inherited: a refresh computes again even while another process computes
        return None


class FilteringMixin:
    """Mixin showing only the calls ``self.predicate`` accepts (the filtering policy).

    ``predicate`` is a function of a :class:`~fleche.call.LazyCall` or a
    :class:`~fleche.call.QueryCall` template (then pushed down to the
    storage where it can be).  Hidden calls read as missing; writes go
    through unchanged (a stored call that does not match stays hidden).
    Put it in front of a cache class that has a ``predicate`` attribute.
    """

    predicate: Callable[[LazyCall], bool] | QueryCall

    @functools.cached_property
    def _match(self) -> Callable[[LazyCall], bool]:
        predicate = self.predicate
        if isinstance(predicate, QueryCall):
            template = predicate.digested()
            return lambda call: template.matches(call.digested_call)
        if callable(predicate):
            return predicate
        raise TypeError(
            f"filter() takes a function of a call or a QueryCall, not {type(predicate).__name__}"
        )

    def _visible(self, key: Digest | str) -> LazyCall:
        call = super().load(key)  # type: ignore[misc]
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
        super().evict(self._visible(key).key())  # type: ignore[misc]

    def query(
        self, template: QueryCall | None = None, *, expired: bool = False, **fields: Any
    ) -> QueryIterator:
        # docstring inherited
        template = as_template(template, fields)
        if template is None and isinstance(self.predicate, QueryCall):
            template = self.predicate  # the storage answers it (SQL pushdown)
        inner = super().query(template, expired=expired)  # type: ignore[misc]
        shown = inner.filter(self._match)
        if inner.pages is None or inner.values_of is None:
            return dataclasses.replace(shown, cache=self)
        # A table of it is still built from pages: those of the calls shown.
        return dataclasses.replace(
            shown, cache=self, pages=lambda: pages_of(shown.calls()), values_of=inner.values_of
        )

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        full = super().expand(key)  # type: ignore[misc]
        if super().contains(full) and not self.contains(full):  # type: ignore[misc]
            raise KeyError(f"no visible call or value starts with {str(key)!r}")
        return full


@dataclasses.dataclass(frozen=True)
class FilteredCache(FilteringMixin, WrapperCache):
    """``cache`` showing only the calls ``predicate`` accepts; made by ``cache.filter(predicate)``.

    See :class:`FilteringMixin` for what is hidden and what is not.
    """

    predicate: Callable[[LazyCall], bool] | QueryCall

    def __post_init__(self) -> None:
        _ = self._match  # a wrong predicate fails here, not at the first read


install_composition("filter", FilteredCache)
install_composition("readonly", ReadOnlyCache)
