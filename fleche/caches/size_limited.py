"""A byte budget on a cache: the least recently used calls go first.

The bookkeeping is the value storage's: :class:`SizeLimitedCache` reads
the usage index its value storage declares
(:meth:`~fleche.storage.base.ValueStorage.usage`), wrapping the storage in
a :class:`~fleche.storage.sized.SizedValues` when it keeps none.  That
index records the size and last use of every value written or read, and
which calls hold which values.  The policy here only decides: after each
store it evicts, through the cache, the least recently used calls (and
values no call holds) until the budget is kept; evicting a call frees the
values no remaining call holds, containers with the parts they alone hold.

Opening a store never reads its records; a call stored by someone else is
registered the first time it is read.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, unstored_arguments
from ..digest import DIGEST_LENGTH, Digest
from ..expiry import Duration
from ..storage.sized import SizedValues, size_of
from ..storage.usage import UsageIndex
from .core import Cache
from .forms import sealed
from .wrapping import WrapperCache

__all__ = ["POLICIES", "SizeLimitedCache", "SizeLimitedMixin", "size_of"]

#: Eviction orders: least recently used, or first stored first out.
POLICIES = ("lru", "fifo")
#: Victims read from the index at a time.
_BATCH = 16


@dataclasses.dataclass(frozen=True)
class SizeLimitedMixin(WrapperCache):
    """``cache`` kept under a budget: storing a call evicts the least recently used ones.

    The size-limit policy; build it as :class:`SizeLimitedCache`.  (In the
    0.22 release ``SizeLimitedMixin`` was mixed into a cache class; here the
    policy wraps a :class:`~fleche.caches.Cache`.)

    Parameters
    ----------
    cache
        The :class:`~fleche.caches.Cache` whose calls are limited.
    max_bytes
        The budget for the values stored through this cache (``None``: none).
    max_calls
        At most this many calls are kept (``None``: no limit on the number).
    policy
        ``"lru"`` (least recently read first) or ``"fifo"`` (first stored first).
    index
        The SQLite file of the bookkeeping, shared by every process that
        uses the store; ``None`` keeps it in memory (right for a memory
        cache).  Not used when the value storage keeps its own
        (:meth:`~fleche.storage.base.ValueStorage.usage`).
    clock
        Returns the current time in epoch seconds; injected in tests.
    """

    cache: Cache
    _: dataclasses.KW_ONLY
    max_bytes: int | None = None
    max_calls: int | None = None
    policy: str = "lru"
    index: str | Path | None = None
    clock: Callable[[], float] = time.time
    #: ``cache`` with values that keep account: every operation goes through it.
    _counted: Cache = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.cache, Cache):
            raise TypeError(
                f"SizeLimitedCache limits a Cache (values and calls), not {type(self.cache).__name__}"
            )
        _check_limits(self.max_bytes, self.max_calls, self.policy)
        if self.index is not None:
            object.__setattr__(self, "index", Path(self.index).expanduser())
        counted = self.cache
        if counted.values.usage() is None:
            values = SizedValues(counted.values, index=self.index, clock=self.clock)
            counted = dataclasses.replace(counted, values=values)
        object.__setattr__(self, "_counted", counted)

    def _usage(self) -> UsageIndex:
        usage = self._counted.values.usage()
        assert usage is not None  # declared when __post_init__ checked it
        return usage

    def total(self) -> int:
        """Bytes of the values stored through this cache and kept now."""
        return self._usage().total()

    # -- reading: remember the use -----------------------------------------------------

    def _touch(self, key: Digest | str) -> None:
        if self.policy == "lru":
            self._usage().touch_holder(key, self.clock())

    def flush(self) -> None:
        """Write the uses remembered in memory to the index (registering calls it does not know)."""
        if self._register(self._usage().flush()):
            self._enforce()

    def _register(self, keys: list[str]) -> bool:
        """Hold the values of calls used here and unknown to the index; whether there were any."""
        for key in keys:  # stored before the limit, or by another process
            try:
                record = self._counted.load(key).digested_call
            except KeyError:
                continue
            self._hold(record, {})
        return bool(keys)

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        call = self._counted.load(key)
        self._touch(call.key() if len(key) != DIGEST_LENGTH else key)
        return call

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        result = self._counted.load_result(key)
        if self.policy == "lru":  # the hit path: _touch inlined (benchmarks/bench_stack.py)
            self._counted.values.usage().touch_holder(key, self.clock())  # type: ignore[union-attr]
        return result

    def load_value(self, key: Digest | str) -> Any:
        # docstring inherited
        return self._counted.load_value(key)

    # -- writing: hold the values, then keep to the budget ----------------------------------

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        key = self._counted.save(call)
        if isinstance(call, LazyCall):  # its values are read from its store if need be
            self._hold(call.digested_call, {})
        else:
            record = call.digested()
            self._hold(record, _stored_values(call, record))
        self._enforce()
        return key

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        # docstring inherited
        record, arguments, key = sealed(record, arguments, key)
        inner = self._counted.prepare(record, arguments, key)
        given = {record.arguments[name]: value for name, value in arguments.items()}
        return PreparedCall(record, key, self, (inner, given))

    def _commit_prepared(
        self, prepared: PreparedCall, result: Any, metadata: Mapping[str, Any]
    ) -> Digest:
        # docstring inherited
        inner, given = prepared.hold
        done = inner.commit(result, metadata)
        stored = self._counted.load(done).digested_call
        self._hold(stored, {**given, stored.result: result})
        self._enforce()
        return done

    def _release_prepared(self, prepared: PreparedCall) -> None:
        # docstring inherited
        inner, _ = prepared.hold
        inner.abandon()

    def _hold(self, record: DigestedCall, values: Mapping[str, Any]) -> None:
        """Record that the call ``record`` holds its values (and free what it held before).

        A value the index does not know (stored before the limit, or freed
        by another process between our write and now) is stored again
        through the counting storage, from ``values`` or from the store.
        """
        usage, key, when = self._usage(), record.key(), self.clock()
        missing, freed = usage.hold(key, record.values(), when)
        again = [k for k in missing if self._store_again(k, values)]
        if again:
            _, more = usage.hold(key, record.values(), when)
            freed.extend(more)
        self._free(freed)

    def _store_again(self, key: Digest, values: Mapping[str, Any]) -> bool:
        storage = self._counted.values
        try:
            value = values[key] if key in values else storage.load(key)
        except KeyError:
            return False  # neither at hand nor stored: the call holds it untracked
        storage.save(value, key)
        return True

    # -- evicting ------------------------------------------------------------------

    def _free(self, keys: list[str]) -> None:
        """Remove freed values from the storage, except arguments of calls running here.

        Through ``cache.values``, below the bookkeeping: the index let go of
        them already.
        """
        if not keys:
            return
        values, pins = self.cache.values, self._counted.pins
        for key in keys:
            pins.unless_pinned(key, functools.partial(values.evict, key))

    def _over(self) -> bool:
        """Whether the values kept exceed ``max_bytes`` or the calls ``max_calls``."""
        usage = self._usage()
        if self.max_bytes is not None and usage.total() > self.max_bytes:
            return True
        return self.max_calls is not None and usage.holders() > self.max_calls

    def _enforce(self) -> None:
        """Evict calls (and values no call holds), least recently used first, to fit the budget."""
        if not self._over():
            return
        usage = self._usage()
        self._register(usage.flush(holders_only=True))  # the order of the last uses
        while self._over():
            victims = usage.oldest(_BATCH)
            if not victims:
                return
            for key, is_call in victims:
                if is_call:
                    self._forget(key)
                else:
                    self._free(usage.drop(key))
                if not self._over():
                    return

    def _forget(self, key: str) -> None:
        """Remove a call from the store and the index, then the values only it held."""
        self._counted.evict(key)
        self._free(self._usage().release(key))

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        self._forget(self._counted.expand(key) if len(key) != DIGEST_LENGTH else key)

    def referenced(self) -> set[Digest]:
        # docstring inherited
        return self._counted.referenced()

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
        # docstring inherited
        return self._counted.gc(dry_run, grace=grace)


def _stored_values(call: Call, record: DigestedCall) -> dict[Digest, Any]:
    """The values :meth:`Cache.save` stores for ``call``, by digest."""
    unstored = unstored_arguments(record.metadata)
    values = {
        record.arguments[name]: value
        for name, value in call.arguments.items()
        if name not in unstored and type(value) is not Digest
    }
    values[record.result] = call.result
    return values


def _check_limits(max_bytes: int | None, max_calls: int | None, policy: str) -> None:
    if max_bytes is None and max_calls is None:
        raise ValueError("a SizeLimitedCache needs max_bytes, max_calls or both")
    for name, limit in (("max_bytes", max_bytes), ("max_calls", max_calls)):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"{name} must be a whole number >= 0 or None; got {limit!r}")
    if policy not in POLICIES:
        raise ValueError(f"unknown eviction policy {policy!r}; choose one of {list(POLICIES)}")


class SizeLimitedCache(SizeLimitedMixin):
    """A cache kept under a budget: ``SizeLimitedCache(cache, max_bytes=10**9)``.

    See :class:`SizeLimitedMixin` for the parameters.  The 0.22 form
    ``SizeLimitedCache(values, calls, max_size)`` is accepted too: a
    :class:`~fleche.caches.Cache` of the two storages keeping at most
    ``max_size`` calls (the least recently used go first).
    """

    def __init__(
        self,
        cache: Any = None,
        calls: Any = None,
        max_size: int | None = None,
        *,
        values: Any = None,
        **options: Any,
    ) -> None:
        cache = values if cache is None else cache  # values=: the 0.22 keyword
        if calls is not None:
            cache = Cache(cache, calls)
            options.setdefault("max_calls", max_size)
        elif max_size is not None:
            raise TypeError(
                "max_size goes with the 0.22 form SizeLimitedCache(values, calls, max_size)"
            )
        super().__init__(cache, **options)
