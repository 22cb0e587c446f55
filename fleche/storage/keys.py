"""Key management: what every keyed storage offers over its stored keys.

Evicting, testing, and naming entries by short digests (``expand``,
``shrink``) are derived here once from the primitives a backend writes
(``list``, ``_evict``, ``_contains`` and, for fast short digests,
``_prefix_range``), and every operation runs inside
:meth:`KeyManagement._operation_context`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable
from itertools import islice
from typing import Any, ClassVar

from ..digest import DIGEST_LENGTH, Digest
from ..errors import AmbiguousDigestError
from .registry import storage_config

__all__ = [
    "Intent",
    "KeyManagement",
    "MAX_CANDIDATES",
    "MIN_PREFIX",
    "NO_CONTEXT",
    "OperationContext",
    "constructor_arguments",
    "needed_length",
]

#: The no-op context of a storage without a resource to inject (shared: costs nothing).
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

    #: Each primitive (``put``, ``get``, ``_evict``) is atomic by itself, as a file renamed
    #: into place is: a lock held around one of them guards nothing.
    atomic_entries: ClassVar[bool] = False
    #: This class's ``_operation_context`` only takes a per-key lock (so an atomic storage may skip it).
    _context_only_locks: ClassVar[bool] = False
    #: Operations skip ``_operation_context``: nothing overrides it, or it only locks atomic entries.
    _context_free: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        contexts = [c for c in cls.__mro__[:-1] if "_operation_context" in vars(c)]
        contexts.remove(KeyManagement)
        cls._context_free = not contexts or (
            cls.atomic_entries and all(vars(c).get("_context_only_locks") for c in contexts)
        )

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
        knows nothing; storages that keep a write time override it (files
        also count a writer finding the entry already stored as a write).
        """
        return None

    def evict_unused(self, key: Digest, horizon: float) -> bool:
        """Remove the entry under a full key unless :meth:`stored_at` is after ``horizon``; whether it was.

        Garbage collection's last step, for an entry it found unreferenced
        and older than ``horizon``: a call storing the same value meanwhile
        keeps it.  Here the time is read again just before the eviction; a
        storage that can set an entry aside atomically closes the instant
        between the two (:class:`~fleche.storage.file.FileStorage` does).
        """
        written = self.stored_at(key)
        if written is not None and written > horizon:
            return False
        try:
            with self._operation_context(key):
                self._evict(key)
        except KeyError:
            return False
        return True

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
