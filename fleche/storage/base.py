"""The storage contract: primitive backends, value and call storages.

Backends implement primitives (``put``, ``get``, ``list``, ``_evict``,
``_contains`` and, for fast short digests, ``_prefix_range``); mixins add
behaviour using only those primitives; the domain classes expose ``save``,
``load``, ``expand``, ``shrink`` and ``query``.  Every public operation runs
inside :meth:`KeyManagement._operation_context`, the one place where a lock,
a session or a file handle is injected.  Key management (evict, contains,
short digests) is in :mod:`.keys`; its names are re-exported here.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ..call import Call, DigestedCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest, digest
from ..errors import AmbiguousDigestError, SaveError
from .ahead import SavesAhead
from .bulk_reads import BulkReads, ValueBulkReads
from .keys import (
    MIN_PREFIX,
    NO_CONTEXT,
    Intent,
    KeyManagement,
    OperationContext,
    needed_length,
)
from .leases import LeaseBackend

if TYPE_CHECKING:
    from .usage import UsageIndex

__all__ = [
    "AmbiguousDigestError",
    "CallMixin",
    "CallStorage",
    "Intent",
    "KeyManagement",
    "MIN_PREFIX",
    "OperationContext",
    "SaveError",
    "Staged",
    "StorageBackend",
    "ValueMixin",
    "ValueStorage",
    "examined",
    "follow",
    "needed_length",
]


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

    def _reachable(self, roots: Iterable[Digest], since: float | None) -> set[Digest]:
        """What :meth:`ValueStorage.reachable` answers: each entry's parts read from the entry."""

        def parts(key: Digest) -> Iterable[Digest]:
            with self._operation_context(key):
                return self._children(key)

        return follow(roots, parts)

    def _examine(self, key: Digest) -> tuple[Digest | None, list[Digest]]:
        """What :meth:`ValueStorage.examine` answers: here the value loaded whole."""
        return examined(lambda: self.get(key), list(self._children(key)))

    def _plan(self, value: Any, key: Digest | None) -> tuple[Digest, list[Any]]:
        """The key of ``value`` (``key`` if given) and the ``(entry, key)`` a put of it writes.

        Nothing is written yet; parts come before what refers to them.  By
        default the value is one entry under its digest.
        """
        key = digest(value) if key is None else key
        return key, [(value, key)]

    def _write_plan(self, writes: list[Any]) -> None:
        """Write the entries of a :meth:`_plan`, in order."""
        for entry, key in writes:
            self.put(entry, key)

    def _writing_parts(self, key: Digest, parts: list[Digest]) -> None:
        """Told before an entry referring to ``parts`` is written under ``key`` (gc's log); a hook."""

    def _contains(self, key: Digest) -> bool:
        """Default: a full :meth:`get`; override when a cheaper test exists."""
        try:
            self.get(key)
        except KeyError:
            return False
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Staged:
    """A value digested for storing and not yet written: its key and the entries to write.

    What :meth:`ValueStorage.stage` gives and :meth:`ValueStorage.save_staged`
    takes: the miss path digests a result (and its parts) once, pins the key
    against garbage collection, then writes it.
    """

    key: Digest
    value: Any
    writes: list[Any] | None = None


class ValueStorage(SavesAhead, KeyManagement, ValueBulkReads):
    """Domain interface of a value storage: ``digest(value) -> value``."""

    @abstractmethod
    def save(self, value: Any, key: Digest | None = None) -> Digest:
        """Store ``value`` under its digest (or ``key``); returns the key.

        A key names its content, so saving under a key already stored keeps the
        stored value: the first write wins; saving the same value again costs no rewrite.
        """

    @abstractmethod
    def load(self, key: Digest | str) -> Any:
        """The value under ``key`` (full or short); ``KeyError`` if none."""

    def stage(self, value: Any) -> Staged:
        """``value`` digested once for :meth:`save_staged` (this default: whole), not written yet."""
        return Staged(digest(value), value)

    def save_staged(self, staged: Staged) -> Digest:
        """Store a value staged by :meth:`stage`; returns its key (the first write wins)."""
        return self.save(staged.value, staged.key)

    def children(self, key: Digest | str) -> Iterable[Digest]:
        """Keys of the parts of a value stored apart from it (none by default).

        Garbage collection follows these to keep the parts of a kept value.
        """
        return ()

    def reachable(self, roots: Iterable[Digest], *, since: float | None = None) -> set[Digest]:
        """``roots`` with every value they refer to, parts of parts included: what gc keeps.

        With ``since`` (epoch seconds), also the parts of the containers
        written since then, where the storage records them (a container
        being stored right now, whose call is not recorded yet).  This
        default asks :meth:`children` value by value; a storage that indexes
        its containers' parts (pickle files) answers without opening them.
        """
        return follow(roots, self.children)

    def examine(self, key: Digest) -> tuple[Digest | None, list[Digest]]:
        """The digest of what is stored under ``key`` now, and the keys of its parts stored apart.

        What ``verify`` checks a value with: ``KeyError`` (after a
        :class:`~fleche.errors.CorruptEntryWarning` if damaged) when the
        entry cannot be read, :class:`~fleche.errors.Indigestible` when it
        cannot be digested here, ``None`` for the digest when a part is
        missing or broken.  This default loads the value whole; a storage
        of destructured containers digests a container from its stored
        form, the parts' digests standing for them, so each is read once.
        """
        return examined(lambda: self.load(key), list(self.children(key)))

    def usage(self) -> UsageIndex | None:
        """The index of the sizes and last uses of the entries, if this storage keeps one.

        A size limit reads it to choose what to evict.  ``None`` by default;
        :class:`~fleche.storage.sized.SizedValues` keeps one around any
        value storage.
        """
        return None


class ValueMixin(ValueStorage, StorageBackend):
    """A value storage built on :class:`StorageBackend` primitives."""

    def save(self, value: Any, key: Digest | None = None) -> Digest:
        # docstring inherited
        if key is None:
            key = digest(value)
        if self._context_free:
            return self.put(value, key)
        with self._operation_context(key):
            return self.put(value, key)

    def load(self, key: Digest | str) -> Any:
        # docstring inherited
        if len(key) != DIGEST_LENGTH or type(key) is not Digest:  # the hit path skips expand
            key = self.expand(key)
        if self._context_free:
            return self.get(key)
        with self._operation_context(key):
            return self.get(key)

    def stage(self, value: Any) -> Staged:
        # docstring inherited
        key, writes = self._plan(value, None)
        return Staged(key, value, writes)

    def save_staged(self, staged: Staged) -> Digest:
        # docstring inherited
        if staged.writes is None:
            return self.save(staged.value, staged.key)
        if self._context_free:  # the miss path: no null context entered and left
            self._write_plan(staged.writes)
        else:
            with self._operation_context(staged.key):
                self._write_plan(staged.writes)
        return staged.key

    def children(self, key: Digest | str) -> Iterable[Digest]:
        # docstring inherited
        key = self.expand(key)
        with self._operation_context(key):
            return self._children(key)

    def reachable(self, roots: Iterable[Digest], *, since: float | None = None) -> set[Digest]:
        # docstring inherited
        return self._reachable(roots, since)

    def examine(self, key: Digest) -> tuple[Digest | None, list[Digest]]:
        # docstring inherited
        with self._operation_context(key):
            return self._examine(key)


def examined(load: Callable[[], Any], parts: list[Digest]) -> tuple[Digest | None, list[Digest]]:
    """The digest of ``load()`` and ``parts``; ``None`` for the digest if a part fails to load."""
    try:
        value = load()
    except KeyError:
        if parts:
            return None, parts
        raise
    return digest(value), parts


def follow(roots: Iterable[Digest], parts: Callable[[Digest], Iterable[Digest]]) -> set[Digest]:
    """``roots`` and everything ``parts`` leads to from them (a missing entry leads nowhere)."""
    found: set[Digest] = set()
    todo = list(roots)
    while todo:
        key = todo.pop()
        if key in found:
            continue
        found.add(key)
        try:
            todo.extend(parts(key))
        except KeyError:
            continue  # a dangling reference: nothing below it to keep
    return found


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

    def save_keyed(self, record: DigestedCall, key: Digest) -> Digest:
        """Store ``record`` under ``key``, its lookup key as the caller sealed it; returns ``key``.

        The miss path's save: the cache hands down the key the decorator computed, so
        the storage need not digest the record again.  This default calls :meth:`save`
        (which does); storages built on :class:`CallMixin` store under ``key`` as given.
        """
        return self.save(record)

    @abstractmethod
    def query(self, template: QueryCall | Call) -> Iterable[DigestedCall]:
        """The records matching ``template``; use ``None`` as wildcard.

        ``template`` is a :class:`QueryCall` or a :class:`Call` (any :class:`DigestedCall`
        too), whose ``None`` fields are wildcards (see :meth:`QueryCall.from_template`).
        Arguments and result match by digest, so a template may hold values or their
        digests; metadata entries match by equality.
        """

    def result_of(self, key: Digest | str, namespace: str) -> tuple[Digest | None, Any]:
        """The result digest of the call under ``key`` and its metadata ``namespace`` (or ``None``).

        All a cache hit needs (the result and its expiry); ``KeyError`` if
        there is no such call.  Backends override it to read less than the
        whole record.
        """
        record = self.load(key)
        return record.result, record.metadata.get(namespace)

    def leases(self) -> LeaseBackend | None:
        """Where processes sharing this store record who computes a missed call; ``None`` here.

        A capability: a store other processes see (files, SQL) returns its
        :class:`~fleche.storage.leases.LeaseBackend`; one private to this
        process has none, and only threads are deduplicated.
        """
        return None

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
        return self.save_keyed(record, record.key())

    def save_keyed(self, record: DigestedCall, key: Digest) -> Digest:
        # docstring inherited
        with NO_CONTEXT if self._context_free else self._operation_context(key):
            return self.put(record, key)

    def load(self, key: Digest | str) -> DigestedCall:
        # docstring inherited
        if len(key) != DIGEST_LENGTH or type(key) is not Digest:  # the hit path skips expand
            key = self.expand(key)
        if self._context_free:
            return self.get(key)
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
