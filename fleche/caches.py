"""Caches: a value storage and a call storage working together.

:class:`Cache` knows calls: it stores their values and records, loads them
back, names them by short digests and collects values no call uses.  It is
also the one place that decides to degrade instead of failing: a value or
record that cannot be stored costs a warning, never the user's result.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from .digest import DIGEST_LENGTH, Digest, digest
from .errors import AmbiguousDigestError, CacheWarning
from .query import QueryIterator
from .storage.base import MIN_PREFIX, CallStorage, ValueStorage
from .storage.memory import CallMemory, ValueMemory
from .storage.void import CallVoid, ValueVoid

__all__ = ["Cache", "memory_cache", "void_cache"]


def _warn(what: str, key: str | None, err: Exception) -> None:
    where = f" for call {key[:12]}" if key else ""
    warnings.warn(
        f"fleche could not {what}{where}: {type(err).__name__}: {err}; the result is returned uncached",
        CacheWarning,
        stacklevel=4,
    )


@dataclasses.dataclass(frozen=True)
class Cache:
    """A value storage and a call storage, e.g. ``Cache(values=ValueMemory(), calls=CallMemory())``.

    Values are stored once under their digest; a call is stored as a
    :class:`~fleche.call.DigestedCall` under its lookup key.  Both may be
    given positionally too: ``Cache(ValueMemory(), CallMemory())``.
    """

    values: ValueStorage
    calls: CallStorage
    _pins: Counter[Digest] = dataclasses.field(default_factory=Counter, init=False, repr=False, compare=False)
    _pins_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.values, self.calls))

    # -- storing -------------------------------------------------------------

    def save(self, call: Call) -> Digest:
        """Store every value of ``call`` and then its record; returns the call key.

        Values go first, so a record never refers to a value not stored.
        """
        record = call.digested()
        for name, value in call.arguments.items():
            self.values.save(value, record.arguments[name])
        self.values.save(call.result, record.result)
        return self.calls.save(record)

    def prepare(self, record: DigestedCall, arguments: Mapping[str, Any], key: Digest) -> PreparedCall:
        """Store the arguments of a call about to run and seal its key.

        ``record`` holds the argument digests (its result is not used yet),
        ``arguments`` the values.  The argument values stay pinned against
        :meth:`gc` until the returned call is committed or abandoned.
        """
        pinned = list(record.arguments.values())
        self._pin(pinned)
        try:
            for name, value in arguments.items():
                self.values.save(value, record.arguments[name])
        except BaseException:
            self._unpin(pinned)
            raise
        return PreparedCall(record, key, self._finish, lambda: self._unpin(pinned))

    def _finish(self, record: DigestedCall, result: Any, metadata: Mapping[str, Any]) -> Digest:
        result_key = digest(result)
        self._pin([result_key])
        try:
            self.values.save(result, result_key)
            meta = {**record.metadata, **metadata} if metadata else record.metadata
            return self.calls.save(dataclasses.replace(record, result=result_key, metadata=meta))
        finally:
            self._unpin([result_key])

    def save_guarded(self, store: Callable[[], Digest], key: str | None = None) -> Digest | None:
        """Run a store step; on failure warn (:class:`CacheWarning`) and return ``None``.

        The single place where fleche trades caching for the user's result:
        backends raise, this decides.  Only ``Exception`` is caught, so an
        interrupt still interrupts.
        """
        try:
            return store()
        except Exception as err:
            _warn("store the call", key, err)
            return None

    def _pin(self, keys: Iterable[Digest]) -> None:
        with self._pins_lock:
            self._pins.update(keys)

    def _unpin(self, keys: Iterable[Digest]) -> None:
        with self._pins_lock:
            self._pins.subtract(keys)
            for key in keys:
                if self._pins[key] <= 0:
                    del self._pins[key]

    # -- reading -------------------------------------------------------------

    def load(self, key: Digest | str) -> LazyCall:
        """The call stored under ``key`` (full or short); values load on access."""
        return LazyCall(self.calls.load(key), self.values)

    def load_result(self, key: Digest | str) -> Any:
        """The result of the call under ``key``; ``KeyError`` if none.

        The decorator's hit path: one record read, one value read, no
        :class:`LazyCall` in between.
        """
        return self.values.load(self.calls.load(key).result)

    def load_value(self, key: Digest | str) -> Any:
        """The value stored under ``key`` (full or short)."""
        return self.values.load(key)

    def contains(self, key: Digest | str) -> bool:
        """Whether a call is stored under ``key``."""
        return self.calls.contains(key)

    def evict(self, key: Digest | str) -> None:
        """Remove the call under ``key``; its values stay until :meth:`gc`."""
        self.calls.evict(key)

    def query(self, template: QueryCall | None = None) -> QueryIterator:
        """Stored calls matching ``template`` (all calls without one), lazily."""
        template = template or QueryCall()

        def source() -> Iterator[LazyCall]:
            for record in self.calls.query(template):
                yield LazyCall(record, self.values)

        return QueryIterator(source, self)

    # -- short digests -------------------------------------------------------

    def expand(self, key: Digest | str) -> Digest:
        """The full digest a prefix names among calls and values together.

        ``KeyError`` if it names nothing, :class:`AmbiguousDigestError` if it
        names several things.
        """
        found: set[Digest] = set()
        candidates: list[str] = []
        for storage in (self.calls, self.values):
            try:
                found.add(storage.expand(key))
            except KeyError:
                pass
            except AmbiguousDigestError as err:
                candidates.extend(err.candidates)
        if candidates or len(found) > 1:
            from .storage.base import needed_length

            everything = sorted(set(candidates) | found)
            raise AmbiguousDigestError(str(key), everything, needed_length(everything))
        if not found:
            raise KeyError(f"no stored call or value starts with {str(key)!r}")
        return found.pop()

    def shrink(self, key: Digest | str) -> Digest:
        """The shortest prefix (at least 4 characters) naming ``key`` among calls and values."""
        key = self.expand(key)
        for length in range(MIN_PREFIX, DIGEST_LENGTH):
            try:
                if self.expand(key[:length]) == key:
                    return Digest(key[:length])
            except AmbiguousDigestError:
                continue
        return key

    # -- maintenance ---------------------------------------------------------

    def referenced(self) -> set[Digest]:
        """Every value digest some stored call refers to, with the children of containers."""
        live: set[Digest] = set()
        todo: list[Digest] = []
        for key in self.calls.list():
            try:
                record = self.calls.load(key)
            except KeyError:
                continue
            todo.extend(record.values())
        with self._pins_lock:
            todo.extend(self._pins)
        while todo:
            key = todo.pop()
            if key in live:
                continue
            live.add(key)
            try:
                todo.extend(self.values.children(key))
            except KeyError:
                continue  # a dangling reference: nothing below it to keep
        return live

    def gc(self, dry_run: bool = False) -> list[Digest]:
        """Remove values no stored call refers to; returns their keys.

        Values of calls in flight (prepared, not yet committed) are kept.
        With ``dry_run`` nothing is removed.
        """
        live = self.referenced()
        dead = [key for key in self.values.list() if key not in live]
        if not dry_run:
            with self._pins_lock:
                pinned = set(self._pins)
            for key in dead:
                if key in pinned:
                    continue
                try:
                    self.values.evict(key)
                except KeyError:
                    pass
        return dead


_MEMORY: Cache | None = None
_MEMORY_LOCK = threading.Lock()


def memory_cache() -> Cache:
    """The process-wide in-memory cache (``cache("memory")``)."""
    global _MEMORY
    with _MEMORY_LOCK:
        if _MEMORY is None:
            _MEMORY = Cache(ValueMemory(), CallMemory())
        return _MEMORY


def void_cache() -> Cache:
    """A cache that stores nothing (``cache("void")``): every call computes."""
    return Cache(ValueVoid(), CallVoid())
