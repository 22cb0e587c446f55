"""The storage contract: key management, primitive backends, value and call storages.

Backends implement primitives (``put``, ``get``, ``list``, ``_evict``,
``_contains`` and, for fast short digests, ``_prefix_range``); mixins add
behaviour using only those primitives; the domain classes expose ``save``,
``load``, ``expand``, ``shrink`` and ``query``.  Every public operation runs
inside :meth:`KeyManagement._operation_context`, the one place where a lock,
a session or a file handle is injected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, ClassVar

from ..call import Call, DigestedCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest, digest
from ..errors import AmbiguousDigestError, SaveError
from .bulk_reads import BulkReads
from .registry import storage_config

__all__ = [
    "AmbiguousDigestError",
    "CallMixin",
    "CallStorage",
    "Intent",
    "KeyManagement",
    "MIN_PREFIX",
    "OperationContext",
    "SaveError",
    "StorageBackend",
    "ValueMixin",
    "ValueStorage",
]

#: The shared no-op operation context (mixins skip entering it on the hot path).
NO_CONTEXT = contextlib.nullcontext()

#: What :meth:`KeyManagement._operation_context` returns: a context manager
#: entered around one operation (``isinstance`` works on it).
OperationContext = contextlib.AbstractContextManager


class Intent(enum.Enum):
    """Whether an operation writes or only reads its key.

    The 0.22 name, kept so code that imports it runs.  ``_operation_context``
    takes the key alone (as the storage reference has it): every mixin
    fleche ships scopes its resource by key, whatever the operation.
    """

    WRITE = "write"
    READ = "read"


#: Shortest prefix :meth:`KeyManagement.shrink` hands out.
MIN_PREFIX = 4
#: How many candidates an :class:`AmbiguousDigestError` lists at most.
MAX_CANDIDATES = 20


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def needed_length(candidates: list[str]) -> int:
    """How many characters tell every one of the (sorted) candidates apart."""
    return 1 + max(
        (_common_prefix(a, b) for a, b in zip(candidates, candidates[1:], strict=False)), default=0
    )


def constructor_arguments(storage: Any) -> dict[str, Any]:
    """The fields a storage dataclass was built from (what pickling and configs keep)."""
    return {f.name: getattr(storage, f.name) for f in dataclasses.fields(storage) if f.init}


def _rebuild(cls: type, arguments: dict[str, Any]) -> Any:
    return cls(**arguments)


class KeyManagement(ABC):
    """Key-management helpers shared by every keyed storage.

    Subclasses implement ``list``, ``_evict`` and ``_contains``; ``evict``,
    ``contains``, ``expand`` and ``shrink`` are implemented here once.
    Capabilities are declared, not discovered: ``persistent``,
    ``read_only`` and ``supports_prefix_range`` are class attributes.
    """

    persistent: ClassVar[bool] = False
    read_only: ClassVar[bool] = False
    #: ``_prefix_range`` is an index lookup, not a scan of every key.
    supports_prefix_range: ClassVar[bool] = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle the constructor arguments only, never locks, sessions or indexes.
        return (_rebuild, (type(self), constructor_arguments(self)))

    def to_config(self) -> dict[str, Any]:
        """The table ``fleche.config`` builds this storage from: its registered type and settings.

        Only settings that differ from their defaults are written; secret
        keys never are.  ``ConfigError`` if the class is not registered
        (:func:`~fleche.storage.registry.register_storage`).
        """
        return storage_config(self)

    def _operation_context(self, key: Digest | str) -> OperationContext:
        """Context entered around every operation on ``key``.

        The base is a no-op.  Mixins override it to inject a resource scoped
        to the operation (a lock, a session, a file handle) and chain with
        ``super()`` so every mixin in the MRO wraps the operation::

            @contextlib.contextmanager
            def _operation_context(self, key):
                with self._lock:
                    with super()._operation_context(key):
                        yield
        """
        # One shared no-op context: the hit path of a plain storage pays
        # almost nothing for the hook (benchmarks/bench_core.py).
        return NO_CONTEXT

    @abstractmethod
    def list(self) -> Iterable[Digest]:
        """Every stored key, as a stream (never materialised by the backend).

        Keys written or evicted while the stream is consumed may or may not
        appear.
        """

    @abstractmethod
    def _evict(self, key: Digest) -> None:
        """Remove the entry under a full key; for an absent key do nothing or raise ``KeyError``."""

    @abstractmethod
    def _contains(self, key: Digest) -> bool:
        """Whether an entry is stored under a full key; never raises for a missing key."""

    def _prefix_range(self, prefix: str) -> Iterable[Digest]:
        """Stored keys starting with ``prefix``, in sorted order.

        This default scans :meth:`list`: O(n) in the number of keys.  Backends
        override it with an index lookup (a sorted index, a SQL range scan,
        one fan-out directory) and set ``supports_prefix_range``.
        """
        return sorted(k for k in self.list() if k.startswith(prefix))

    def evict(self, key: Digest | str) -> None:
        """Remove the entry under ``key`` (a full or short digest); nothing if there is none.

        An absent key is not an error, so concurrent garbage collection,
        pruning and evictions never fail on each other.  An ambiguous short
        digest still raises :class:`AmbiguousDigestError`.
        """
        try:
            key = self.expand(key)
            with self._operation_context(key):
                self._evict(key)
        except KeyError:
            return

    def contains(self, key: Digest | str) -> bool:
        """Whether an entry is stored under ``key`` (a full or short digest).

        Text that is no digest at all (not hex, too long, NUL, path
        separators) is not stored: ``False``, on every backend.
        """
        if type(key) is not Digest:
            try:
                key = Digest(key)
            except (TypeError, ValueError):
                return False
        try:
            key = self.expand(key)
        except KeyError:
            return False
        with self._operation_context(key):
            return self._contains(key)

    def expand(self, key: Digest | str) -> Digest:
        """The full key a short digest stands for.

        A full-length digest is returned as is, without a lookup.  Raises
        ``KeyError`` when nothing matches and :class:`AmbiguousDigestError`
        (listing the candidates and the length needed) when several do.
        """
        key = key if type(key) is Digest else Digest(key)
        if len(key) == DIGEST_LENGTH:
            return key
        candidates = list(islice(self._prefix_range(key), MAX_CANDIDATES))
        if not candidates:
            raise KeyError(f"no stored key starts with {str(key)!r}")
        if len(candidates) > 1:
            raise AmbiguousDigestError(key, candidates, needed_length(candidates))
        return candidates[0]

    def stored_at(self, key: Digest) -> float | None:
        """When the entry under a full key was last written (epoch seconds); ``None`` if unknown.

        Garbage collection keeps values younger than its grace period, which
        may belong to a call another process is still running.  The default
        knows nothing; storages that keep a write time override it.
        """
        return None

    def shrink(
        self, *keys: Digest | str, key: Digest | str | None = None
    ) -> Digest | tuple[Digest, ...]:
        """The shortest prefix (at least 4 characters) naming only this key.

        One key (by position, or as ``key=`` as the storage spec names it)
        gives a :class:`Digest`, several a tuple of them.  Costs one
        :meth:`_prefix_range` probe per extra character, so it is O(log n)
        wherever the prefix range is.
        """
        if key is not None:
            keys = (key, *keys)
        if len(keys) != 1:
            return tuple(self._shrink(key) for key in keys)
        return self._shrink(keys[0])

    def _shrink(self, key: Digest | str) -> Digest:
        key = self.expand(key)
        for length in range(MIN_PREFIX, DIGEST_LENGTH):
            if len(list(islice(self._prefix_range(key[:length]), 2))) <= 1:
                return Digest(key[:length])
        return key


class StorageBackend(KeyManagement):
    """Primitive key-value backend: what a backend author writes.

    ``put``/``get``/``_evict``/``list`` (and ``_contains``) know keys and
    objects only; :class:`ValueMixin` and :class:`CallMixin` add the domain.
    """

    #: Entries are named by their content, so a put of a key already stored
    #: keeps the entry there (the first write wins) instead of rewriting it.
    #: Storages whose entries may change under one key (call records) keep False.
    content_addressed: ClassVar[bool] = False

    @abstractmethod
    def put(self, value: Any, key: Digest) -> Digest:
        """Store ``value`` under ``key`` and return ``key``.

        Atomic (a reader sees the old entry, the new one, or none — never a
        partial one) and idempotent (putting the same key again is harmless).
        Safe to call from several threads; persistent backends also from
        several processes.  Raise on failure; never store a partial entry.
        """

    @abstractmethod
    def get(self, key: Digest) -> Any:
        """The object stored under a full key; ``KeyError`` if there is none.

        A corrupt entry reads as ``KeyError`` after a
        :class:`~fleche.errors.CorruptEntryWarning`, never as a wrong value.
        """

    def _children(self, key: Digest) -> Iterable[Digest]:
        """Keys of the parts of the entry under ``key`` stored apart; none by default."""
        return ()

    def _contains(self, key: Digest) -> bool:
        """Default: a full :meth:`get`; override when a cheaper test exists."""
        try:
            self.get(key)
        except KeyError:
            return False
        return True


class ValueStorage(KeyManagement):
    """Domain interface of a value storage: ``digest(value) -> value``."""

    @abstractmethod
    def save(self, value: Any, key: Digest | None = None) -> Digest:
        """Store ``value`` under its digest (or ``key``); returns the key.

        A key names its content, so saving under a key already stored keeps
        the stored value: the first write wins, and saving the same value
        again costs no rewrite.
        """

    @abstractmethod
    def load(self, key: Digest | str) -> Any:
        """The value under ``key`` (full or short); ``KeyError`` if none."""

    def children(self, key: Digest | str) -> Iterable[Digest]:
        """Keys of the parts of a value stored apart from it (none by default).

        Garbage collection follows these so that the parts of a kept value
        are kept too.
        """
        return ()


class ValueMixin(ValueStorage, StorageBackend):
    """A value storage built on :class:`StorageBackend` primitives."""

    def save(self, value: Any, key: Digest | None = None) -> Digest:
        # docstring inherited
        if key is None:
            key = digest(value)
        with self._operation_context(key):
            return self.put(value, key)

    def load(self, key: Digest | str) -> Any:
        # docstring inherited
        key = self.expand(key)
        with self._operation_context(key):
            return self.get(key)

    def children(self, key: Digest | str) -> Iterable[Digest]:
        # docstring inherited
        key = self.expand(key)
        with self._operation_context(key):
            return self._children(key)


class CallStorage(KeyManagement, BulkReads):
    """Domain interface of a call storage: ``lookup key -> DigestedCall``."""

    #: ``query`` is answered by the backend (e.g. SQL), not by a scan.
    supports_query_pushdown: ClassVar[bool] = False

    @abstractmethod
    def save(self, call: Call) -> Digest:
        """Store the record of ``call`` (digested if needed) under its key; returns the key."""

    @abstractmethod
    def load(self, key: Digest | str) -> DigestedCall:
        """The record under ``key`` (full or short); ``KeyError`` if none."""

    @abstractmethod
    def query(self, template: QueryCall | Call) -> Iterable[DigestedCall]:
        """The records matching ``template``; use ``None`` as wildcard.

        ``template`` is a :class:`QueryCall` or a :class:`Call` (any
        :class:`DigestedCall` too), whose ``None`` fields are wildcards
        (see :meth:`QueryCall.from_template`).  Arguments and result match by
        digest, so a template may hold values or their digests; metadata
        entries match by equality.
        """

    def result_of(self, key: Digest | str, namespace: str) -> tuple[Digest | None, Any]:
        """The result digest of the call under ``key`` and its metadata ``namespace`` (or ``None``).

        All a cache hit needs (the result and its expiry); ``KeyError`` if
        there is no such call.  Backends override it to read less than the
        whole record.
        """
        record = self.load(key)
        return record.result, record.metadata.get(namespace)

    def transform(self, func: Callable[[DigestedCall], Call] | None = None) -> int:
        """Rewrite every record through ``func`` and re-key it if its key changed.

        The migration tool.  Each new record is saved before its old key is
        evicted, so an interruption (or ``func`` raising) loses nothing: the
        records done so far are migrated, the rest are untouched, and running
        it again with an idempotent ``func`` finishes the job.  With no
        ``func`` it only re-keys (after a change of key scheme).  Returns the
        number of records whose key changed.
        """
        moved = 0
        for key in list(self.list()):
            try:
                call = self.load(key)
            except KeyError:
                continue  # evicted meanwhile
            new = call if func is None else func(call)
            new_key = self.save(new)
            if new_key != key:
                self.evict(key)
                moved += 1
        return moved


class CallMixin(CallStorage, StorageBackend):
    """A call storage built on :class:`StorageBackend` primitives.

    The storage key is the call's lookup key; ``query`` loads every record
    and matches it (override for backends that can push it down).
    """

    def save(self, call: Call) -> Digest:
        # docstring inherited
        record = call.digested()
        key = record.key()
        with self._operation_context(key):
            return self.put(record, key)

    def load(self, key: Digest | str) -> DigestedCall:
        # docstring inherited
        key = self.expand(key)
        with self._operation_context(key):
            return self.get(key)

    def query(self, template: QueryCall | Call) -> Iterator[DigestedCall]:
        # docstring inherited
        template = QueryCall.from_template(template).digested()
        for key in self.list():
            try:
                record = self.load(key)
            except KeyError:
                continue
            if template.matches(record):
                yield record
