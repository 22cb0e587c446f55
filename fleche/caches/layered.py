"""Caches made of several caches: a stack of layers (the pool is in :mod:`.pool`).

A :class:`CacheStack` is, e.g., memory in front of a persistent store: reads
try the layers top-down and a hit in a lower layer is copied into the
layers above it (once, however many threads read it); writes go to every
writable layer.  A :class:`CachePool` is the read-only union of several
stores, e.g. your own and a colleague's.

A layer that fails (anything but ``KeyError``: a database down, a full
disk) is skipped for ``retry_after`` seconds while the others keep serving;
one :class:`~fleche.errors.CacheWarning` is emitted per outage.  Reading
over several members, with that bookkeeping, is :class:`~.members.Layered`,
shared with the pool; this module adds the back-fill and the writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall
from ..digest import Digest
from ..errors import ReadOnlyError
from ..expiry import Duration
from ..storage.leases import LeaseBackend
from .base import CacheBase, install_composition
from .forms import sealed
from .members import Layered

__all__ = ["CacheStack"]


class _Given:
    """Values already in hand, by digest, else read from ``fallback``.

    Lets a plain call be stored in several layers digested once, and a
    result just read from a lower layer be copied up without reading it again.
    """

    __slots__ = ("_values", "_fallback")

    def __init__(self, values: dict[Digest, Any], fallback: CacheBase | None = None) -> None:
        self._values = values
        self._fallback = fallback

    def load(self, key: Digest) -> Any:
        try:
            return self._values[key]
        except KeyError:
            if self._fallback is None:
                raise
        return self._fallback.load_value(key)


def _copy(layer: CacheBase, key: Digest, result: Any) -> LazyCall:
    """The call under ``key`` in ``layer``, its result already in hand."""
    record = layer.load(key).digested_call
    return LazyCall(record, _Given({record.result: result}, layer))  # type: ignore[arg-type]


def _lazy(call: Call | LazyCall) -> LazyCall:
    if isinstance(call, LazyCall):
        return call
    record = call.digested()
    given = {record.arguments[name]: value for name, value in call.arguments.items()}
    given[record.result] = call.result
    return LazyCall(record, _Given(given))  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class _Stack(Layered):
    """The fields and behaviour of :class:`CacheStack` (which adds the 0.22 keyword)."""

    _MEMBERS = "layers"
    layers: Sequence[CacheBase]
    _filling: set[Digest] = dataclasses.field(
        default_factory=set, init=False, repr=False, compare=False
    )

    @property
    def read_only(self) -> bool:
        # docstring inherited
        return all(layer.read_only for layer in self.layers)

    def leases(self) -> LeaseBackend | None:
        # docstring inherited: those of the lowest layer that has leases, the one shared widest
        for layer in reversed(self.layers):
            found = layer.leases()
            if found is not None:
                return found
        return None

    @property
    def stack(self) -> tuple[CacheBase, ...]:
        """The layers, top first (the 0.22 name of :attr:`layers`)."""
        return self.layers  # type: ignore[return-value]

    def _writable(self) -> list[tuple[int, CacheBase]]:
        return [
            (i, layer)
            for i, layer in enumerate(self.layers)
            if not layer.read_only and (not self._down or self._usable(i))
        ]

    # -- reading with back-fill --------------------------------------------------

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        start = 0
        if not self._down:  # the hit path: one call on the top layer (benchmarks/bench_stack.py)
            try:
                return self.layers[0].load_result(key)
            except KeyError:
                start = 1
            except Exception as err:
                self._failed(0, err)
                start = 1
        key = self._full(key)
        index, result = self._first(key, lambda layer: layer.load_result(key), start)
        if index:
            layer = self.layers[index]
            self._back_fill(key, index, lambda: _copy(layer, key, result))
        return result

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        key = self._full(key)
        index, call = self._first(key, lambda layer: layer.load(key))
        if index:
            self._back_fill(key, index, lambda: call)
        return call

    def _back_fill(self, key: Digest, index: int, call: Callable[[], LazyCall]) -> None:
        """Copy a call found in layer ``index`` into the writable layers above it, once."""
        with self._lock:
            if key in self._filling:
                return  # another reader is copying it right now
            self._filling.add(key)
        try:
            found = None
            for upper, layer in self._writable():
                if upper >= index:
                    break
                try:
                    if not layer.contains(key):  # a reader that finished before us copied it
                        found = found or call()
                        layer.save(found)
                except Exception as err:
                    self._failed(upper, err)
        finally:
            with self._lock:
                self._filling.discard(key)

    # -- writing -------------------------------------------------------------------

    def _each_writable(self, write: Callable[[int, CacheBase], Any], what: str) -> list[Any]:
        """``write`` on every usable writable layer; raises only if none of them took it."""
        done: list[Any] = []
        error: Exception | None = None
        for index, layer in self._writable():
            try:
                done.append(write(index, layer))
            except Exception as err:
                error = err
                self._failed(index, err)
            else:
                self._worked(index)
        if not done:
            if error is not None:
                raise error
            raise ReadOnlyError(f"cannot {what}: no layer of {self} is writable (or working)")
        return done

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        lazy = _lazy(call)  # digested once for every layer
        return self._each_writable(lambda _, layer: layer.save(lazy), "store a call")[0]

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        # docstring inherited
        record, arguments, key = sealed(record, arguments, key)
        prepared = self._each_writable(
            lambda index, layer: (index, layer.prepare(record, arguments, key)),
            f"store the call {key[:12]}",
        )

        return PreparedCall(record, key, self, prepared)

    def _commit_prepared(
        self, prepared: PreparedCall, result: Any, metadata: Mapping[str, Any]
    ) -> Digest:
        # docstring inherited
        done: Digest | None = None
        error: Exception | None = None
        for index, each in prepared.hold:
            try:
                done = each.commit(result, metadata)
            except Exception as err:
                error = err
                self._failed(index, err)
        if done is None:
            raise error or ReadOnlyError(f"no layer stored the call {prepared.key[:12]}")
        return done

    def _release_prepared(self, prepared: PreparedCall) -> None:
        # docstring inherited
        for _, each in prepared.hold:
            each.abandon()

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        key = self._full(key)
        evicted = 0

        def evict(_: int, layer: CacheBase) -> None:
            nonlocal evicted
            try:
                layer.evict(key)
                evicted += 1
            except KeyError:
                pass

        self._each_writable(evict, f"evict {key[:12]}")
        if not evicted:
            raise KeyError(f"no writable layer holds the call {key[:12]}")

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
        # docstring inherited
        removed: set[Digest] = set()
        for keys in self._each_writable(
            lambda _, layer: layer.gc(dry_run, grace=grace), "collect garbage"
        ):
            removed.update(keys)
        return removed


class CacheStack(_Stack):
    """Layers of caches, fastest first: ``CacheStack([memory, persistent])``.

    ``layers`` (``stack`` in 0.22) may hold any objects with the cache
    interface.  Reads try each layer top-down; a call found in a lower layer is copied,
    with its values, into the writable layers above it — once, even when
    several threads read it at the same time.  Saves go to every writable
    layer.  A failing layer is skipped for ``retry_after`` seconds with one
    :class:`~fleche.errors.CacheWarning`; the stack keeps working as long as
    one layer does.
    """

    def __init__(
        self,
        layers: Sequence[CacheBase] | None = None,
        *,
        stack: Sequence[CacheBase] | None = None,
        **options: Any,
    ) -> None:
        # ``stack=`` is the 0.22 name of ``layers``.
        if (layers is None) == (stack is None):
            raise TypeError(
                "CacheStack takes its layers once: CacheStack(layers) or CacheStack(stack=...)"
            )
        super().__init__(layers if stack is None else stack, **options)


install_composition("push", CacheStack)
