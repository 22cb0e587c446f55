"""Caches: a value storage and a call storage working together.

:class:`Cache` knows calls: it stores their values and records, loads them
back, names them by short digests and collects values no call uses.  It is
also the one place that decides to degrade instead of failing: a value or
record that cannot be stored costs a warning, never the user's result
(:meth:`~fleche.caches.preparing.FinishesPreparedCalls.save_guarded`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall, unstored_arguments
from ..digest import Digest, digest
from ..errors import Indigestible, SaveError
from ..expiry import EXPIRY, GC_GRACE, Duration, entry_expired, is_expired, seconds, stamp_expiry
from ..query import QueryIterator
from ..storage.base import CallStorage, ValueStorage
from ..storage.leases import LeaseBackend
from ..storage.memory import CallMemory, ValueMemory
from ..storage.void import CallVoid, ValueVoid
from . import listing, maintenance, verification
from .base import CacheBase, as_template, merge_expansions, sealed
from .messages import where_stored
from .pins import Pins

if TYPE_CHECKING:
    from ..storage.sql_newest import NewestFirst

__all__ = ["GC_GRACE", "Cache", "memory_cache", "prepare_committed_here", "void_cache"]


@dataclasses.dataclass(frozen=True)
class Cache(CacheBase):
    """A value storage and a call storage, e.g. ``Cache(values=ValueMemory(), calls=CallMemory())``.

    Values are stored once under their digest; a call is stored as a
    :class:`~fleche.call.DigestedCall` under its lookup key.  Both may be
    given positionally too: ``Cache(ValueMemory(), CallMemory())``.

    Parameters
    ----------
    ttl
        Time to live (seconds or a ``timedelta``) of the calls stored here
        that have none of their own (``@fleche(ttl=...)`` wins).  The expiry
        is written into each record, so every process agrees on it.
    clock
        Returns the current time in epoch seconds (``time.time``); tests
        inject their own so that nothing ever sleeps.
    """

    values: ValueStorage
    calls: CallStorage
    _: dataclasses.KW_ONLY
    ttl: Duration | None = None
    clock: Callable[[], float] = time.time
    #: Values of the calls prepared here and not yet committed, kept from :meth:`gc`.
    pins: Pins = dataclasses.field(default_factory=Pins, init=False, repr=False, compare=False)
    #: Whether a miss settles the values saved ahead before its record (see :mod:`~fleche.storage.ahead`).
    settles: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)
    #: Whether the values' small entries may wait for the record's transaction (same database).
    holds: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.ttl is not None:
            object.__setattr__(self, "ttl", seconds(self.ttl, "ttl"))
        values = self.values
        holds = values.saves_ahead and values.commits_with(self.calls)
        object.__setattr__(self, "settles", values.saves_ahead and not holds)
        object.__setattr__(self, "holds", holds)

    def __reduce__(self) -> tuple[Any, ...]:
        options = {"ttl": self.ttl, "clock": self.clock}
        return (_rebuild, (type(self), self.values, self.calls, options))

    def __str__(self) -> str:
        return f"Cache({where_stored(self.values)}, {where_stored(self.calls)})"

    @property
    def persistent(self) -> bool:
        # docstring inherited
        return bool(self.values.persistent and self.calls.persistent)

    def leases(self) -> LeaseBackend | None:
        # docstring inherited: those of the store of the call records
        return self.calls.leases()

    def newest_first(self) -> NewestFirst | None:
        # docstring inherited: the call storage's
        return self.calls.newest_first()

    def now(self) -> float:
        # docstring inherited
        return self.clock()

    # -- storing -------------------------------------------------------------

    def save(self, call: Call | LazyCall) -> Digest:
        """Store every value of ``call`` and then its record; returns the call key.

        Values go first, so a record never refers to a value not stored.  A
        :class:`~fleche.call.LazyCall` is stored under the digests it has.
        Arguments given as a :class:`Digest` name values stored already, and
        ``Unstored`` ones are keyed by digest only: neither is copied.
        """
        record = call.digested_call if isinstance(call, LazyCall) else call.digested()
        unstored = unstored_arguments(record.metadata)
        for name, key in record.arguments.items():
            if name in unstored:
                continue  # keyed by digest only: the user keeps the value
            value = call.arguments[name]
            if type(value) is not Digest:  # a digest names a value stored already
                self.values.save(value, key)
        self.values.save(call.result, record.result)
        metadata = stamp_expiry(record.metadata, self.clock(), self.ttl)
        if metadata is not record.metadata:
            record = dataclasses.replace(record, metadata=metadata)
        return self.calls.save(record)

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        """Store the arguments of a call about to run and seal its key.

        ``record`` holds the argument digests (its result is not used yet),
        ``arguments`` the values.  The argument values stay pinned against
        :meth:`gc` until the returned call is committed or abandoned.
        ``prepare(call)`` with a plain call (the 0.22 form) digests it first.
        Prepared by :func:`prepare_committed_here` (the decorator), small
        values kept in the call database are stored with the record instead.
        """
        return self._prepare(record, arguments, key, getattr(_COMMITTED_HERE, "on", False))

    def _prepare(
        self, record: Any, arguments: Mapping[str, Any] | None, key: Digest | None, here: bool
    ) -> PreparedCall:
        """:meth:`prepare`; ``here``: the caller commits the call itself (see :func:`prepare_committed_here`)."""
        if arguments is None or key is None:
            record, arguments, key = sealed(record, arguments, key)
        pinned = list(record.arguments.values())
        self.pins.pin(pinned)
        name = ""
        values = self.values
        held: list[Any] | None = None
        extra: tuple[Any, ...] = ()
        if self.holds and here:
            held = []  # small entries' writes, carried by the prepared call to its record's
            save, extra = values.save_held, (held,)  # type: ignore[attr-defined]
        else:
            save = values.save_ahead if self.settles else values.save  # settled before the record
        try:
            for name, value in arguments.items():
                save(value, record.arguments[name], *extra)
        except Exception as err:
            self.pins.unpin(pinned)
            raise SaveError(f"argument {name!r}: {type(err).__name__}: {err}") from err
        except BaseException:
            self.pins.unpin(pinned)
            raise
        return PreparedCall(record, key, self, (pinned, held))

    def _commit_prepared(
        self, prepared: PreparedCall, result: Any, metadata: Mapping[str, Any]
    ) -> Digest:
        # The key sealed by prepare and the result digest taken here go down
        # as they are: no storage digests them again.
        try:
            staged = self.values.stage(result)  # the result and its parts digested once
        except Indigestible as err:
            raise err.located("result") from None
        record = prepared.record
        result_key = staged.key
        pinned, held = prepared.hold
        if prepared.open:  # pinned with the arguments, released with them when it is finished
            self.pins.pin([result_key])
            pinned.append(result_key)
        self.values.save_staged(staged)
        if self.settles:  # arguments saved ahead: stored before the record names them
            self.values.settle(record.arguments.values())
        meta = record.metadata
        if metadata:  # the recorders' fresh mapping as it is, unless the record has its own
            meta = {**meta, **metadata} if meta else metadata
        if self.ttl is not None or EXPIRY in meta:
            meta = stamp_expiry(meta, self.clock(), self.ttl)
        if held:  # the arguments' small entries, in the record's transaction (in this thread)
            self.values.give_held(held)  # type: ignore[attr-defined]
        return self.calls.save_keyed(record.completed(result_key, meta), prepared.key)

    def _release_prepared(self, prepared: PreparedCall) -> None:
        self.pins.unpin(prepared.hold[0])

    # -- reading -------------------------------------------------------------

    def _live(self, key: Digest | str) -> DigestedCall:
        """The record under ``key``; ``KeyError`` if it is missing or has expired."""
        record = self.calls.load(key)
        if is_expired(record, self.clock()):
            raise KeyError(f"the call {str(key)[:12]} expired")
        return record

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        return LazyCall(self._live(key), self.values)

    def load_result(self, key: Digest | str) -> Any:
        """The result of the call under ``key``; ``KeyError`` if none (or expired).

        The decorator's hit path: one record read, one value read, no
        :class:`LazyCall` in between.
        """
        # Not _live: a SQL store reads the result and the expiry only (benchmarks/bench_stack.py).
        result, expiry = self.calls.result_of(key, EXPIRY)
        if expiry is not None and entry_expired(expiry, self.clock()):
            raise KeyError(f"the call {str(key)[:12]} expired")
        return self.values.load(result)

    def _live_result(self, key: Digest | str) -> Digest | None:
        """The result digest of the call under ``key``; ``KeyError`` if missing or expired."""
        result, expiry = self.calls.result_of(key, EXPIRY)
        if entry_expired(expiry, self.clock()):
            raise KeyError(f"the call {str(key)[:12]} expired")
        return result

    def load_value(self, key: Digest | str) -> Any:
        # docstring inherited
        return self.values.load(key)

    def contains(self, key: Digest | str) -> bool:
        # docstring inherited
        try:
            self._live_result(key)
        except KeyError:
            return False
        return True

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        self.calls.evict(key)

    def query(
        self, template: QueryCall | None = None, *, expired: bool = False, **fields: Any
    ) -> QueryIterator:
        # docstring inherited
        template = as_template(template, fields) or QueryCall()

        def counter() -> int:
            return self.calls.count(template, now=None if expired else self.clock())

        return listing.calls_of(self, template, expired, counter)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        return merge_expansions(
            key, (lambda: self.calls.expand(key), lambda: self.values.expand(key))
        )

    # -- maintenance ---------------------------------------------------------

    def referenced(self) -> set[Digest]:
        # docstring inherited
        return self.values.reachable([*self.calls.referenced(), *self.pins.snapshot()])

    def unreferenced(self, grace: Duration | None = None) -> tuple[list[Digest], list[Digest]]:
        """Values no stored call refers to: ``(collectable, kept)``, kept being younger than ``grace``.

        What :meth:`gc` removes, and what its grace period keeps for now
        (the values of a call that failed, or of one another process runs).
        """
        return maintenance.unreferenced(self, GC_GRACE if grace is None else grace)

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
        """Remove values no stored call refers to; returns their keys.

        Values of calls in flight in this process (prepared, not yet
        committed) are kept.  Values written less than ``grace`` seconds ago
        (default :data:`GC_GRACE`, an hour) are kept too, where the value
        storage knows when an entry was written
        (:meth:`~fleche.storage.base.KeyManagement.stored_at`): another
        process may be running a call whose arguments they are; so are the
        parts of such a young container, however old.  With ``dry_run``
        nothing is removed.
        """
        return maintenance.collect(self, dry_run, GC_GRACE if grace is None else grace)

    def redigest(self) -> int:
        """Store every value and call under the digest it has now; returns how many moved.

        For a store written before a change of digest rules (a new hook, a
        new scheme): each value is digested again and stored under its new
        digest, then every call record is rewritten to refer to the new
        digests and re-keyed (:meth:`~fleche.storage.base.CallStorage.transform`,
        which never loses a record if interrupted).  Only then are the value
        entries under the old digests removed, so an interruption loses
        nothing and running it again finishes the job.
        """
        moved: dict[Digest, Digest] = {}
        for key in list(self.values.list()):
            try:
                value = self.values.load(key)
            except KeyError:
                continue
            new = digest(value)
            if new != key:
                self.values.save(value, new)
                moved[key] = new

        def renamed(record: DigestedCall) -> DigestedCall:
            arguments = {name: moved.get(key, key) for name, key in record.arguments.items()}
            return dataclasses.replace(
                record, arguments=arguments, result=moved.get(record.result, record.result)
            )

        rekeyed = self.calls.transform(renamed)
        for key in moved:  # no record refers to them any more
            self.values.evict(key)
        return len(moved) + rekeyed

    def verify(
        self,
        fix: bool = False,
        progress: Callable[[int, int], Any] | None = None,
        *,
        since: float | None = None,
        since_last: bool = False,
    ) -> verification.VerifyReport:
        """Re-read every value and record and check it; with ``fix``, remove the broken ones.

        Returns a report listing each problem with its key; see
        :mod:`fleche.verify` for what is checked and what a repair removes.
        ``progress(done, total)`` is called after each entry.  ``since``
        (e.g. ``report.started`` of the last verify) re-reads only the
        values written after it; ``since_last`` only those written after
        the last verify recorded in the store began.
        """
        return verification.verify(
            self, fix=fix, progress=progress, since=since, since_last=since_last
        )


#: ``on`` while :func:`prepare_committed_here` prepares a call in this thread.
_COMMITTED_HERE = threading.local()


def prepare_committed_here(
    cache: CacheBase, record: DigestedCall, arguments: Mapping[str, Any], key: Digest
) -> PreparedCall:
    """``cache.prepare(record, arguments, key)`` for a caller that commits or abandons the call itself.

    Nothing can read the call's arguments before its record then, so a
    store that keeps small values in its call database writes them in the
    record's transaction (at commit, in whichever thread) rather than in one
    of their own before the body runs: one transaction a miss.  A call that
    fails stores no small argument.  Any other ``prepare`` stores them at
    once, as documented (a remote server commits calls prepared on a lost
    connection by their key alone).
    """
    if type(cache) is Cache:  # told, not set in the thread: no thread-local flag on a miss
        return cache._prepare(record, arguments, key, True)
    before = getattr(_COMMITTED_HERE, "on", False)
    _COMMITTED_HERE.on = True
    try:
        return cache.prepare(record, arguments, key)
    finally:
        _COMMITTED_HERE.on = before


def _rebuild(cls: type, values: ValueStorage, calls: CallStorage, options: dict[str, Any]) -> Cache:
    return cls(values, calls, **options)


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
