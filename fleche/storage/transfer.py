"""Copy entries from one storage into another: values by digest, call records by key.

One routine moves a store between backends (pickle files to SQL, HDF5 to
pickle, a store to an archive and back) and between the layouts of one
backend (HDF5 ``refix``).  Both sides are seen as :class:`Entries`, five
operations any storage offers; :class:`ValueEntries` and :class:`CallEntries`
adapt value and call storages.

It streams (keys in batches of :data:`BATCH`), it is resumable (an entry the
target holds already is skipped, so running it again after an
interruption finishes the job) and it never loses data: an entry leaves
the source only when asked to, after the target has confirmed it holds
it; a store's call records are copied after the values they refer to,
and a record whose values could not be copied is not copied at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ..digest import Digest

__all__ = [
    "BATCH",
    "CallEntries",
    "Entries",
    "StoreTally",
    "Tally",
    "ValueEntries",
    "copy_entries",
    "copy_store",
    "remove_copied",
]

#: Keys read, written and removed together: bounds memory, lets a target write a batch at once.
BATCH = 256

#: ``progress(stage, done, total)``: ``stage`` is ``"values"``, ``"calls"`` or ``"removing"``.
Progress = Callable[[str, int, int], None]


class Entries(Protocol):
    """One side of a transfer: keyed entries to list, test, read, write in batches and remove."""

    def keys(self) -> Iterable[str]:
        """Every key held."""

    def has(self, key: str) -> bool:
        """Whether ``key`` is held (what the copy of an entry is confirmed by)."""

    def read(self, key: str) -> Any:
        """The entry of ``key``; ``KeyError`` if it is gone or unreadable."""

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        """Store each ``(key, entry)``; raise if any cannot be stored."""

    def remove(self, keys: Sequence[str]) -> None:
        """Remove these keys (all held: they were just listed)."""


class _Storage:
    """Entries of a storage with ``list``/``contains``/``load``/``evict`` (see the subclasses)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def keys(self) -> Iterable[str]:
        return self.storage.list()

    def has(self, key: str) -> bool:
        return self.storage.contains(key)

    def read(self, key: str) -> Any:
        return self.storage.load(key)

    def remove(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                self.storage.evict(key)
            except KeyError:
                pass  # removed meanwhile: what was asked


class ValueEntries(_Storage):
    """The values of a value storage, each stored again under the digest it has (not recomputed).

    What it holds is listed once, when first asked, then followed through
    its own writes and removals: one listing instead of a lookup per key.
    A value another process stores meanwhile may be copied again, which
    costs a write the storage skips (a key names its content).
    """

    def __init__(self, storage: Any) -> None:
        super().__init__(storage)
        self._held: set[str] | None = None

    def has(self, key: str) -> bool:
        if self._held is None:
            self._held = set(map(str, self.storage.list()))
        return str(key) in self._held

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        # A storage that can write a batch at once says so with ``batched()``.
        batched = getattr(self.storage, "batched", contextlib.nullcontext)
        with batched():
            for key, value in items:
                self.storage.save(value, Digest(key))
        if self._held is not None:
            self._held.update(str(key) for key, _ in items)

    def confirms(self, key: str) -> bool:
        """Whether the storage itself says it holds ``key`` (what a removal waits for)."""
        return self.storage.contains(key)

    def remove(self, keys: Sequence[str]) -> None:
        super().remove(keys)
        if self._held is not None:
            self._held.difference_update(map(str, keys))


class CallEntries(_Storage):
    """The records of a call storage, each saved again (under its lookup key)."""

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        for _, record in items:
            self.storage.save(record)


@dataclasses.dataclass
class Tally:
    """What one :func:`copy_entries` did: entries copied, already there, removed, and failed."""

    copied: int = 0
    skipped: int = 0
    removed: int = 0
    #: Keys that could not be read, with the reason; they stay in the source.
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counts, for JSON."""
        return dataclasses.asdict(self)


def copy_entries(
    source: Entries,
    target: Entries,
    keys: Iterable[str] | None = None,
    *,
    overwrite: bool = False,
    remove: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Tally:
    """Copy ``keys`` (every key of ``source`` without them) into ``target``; returns the tally.

    A key ``target`` holds is skipped unless ``overwrite``.  With
    ``remove`` each batch leaves ``source`` once ``target`` confirms it
    holds it (entries that failed stay).  With ``dry_run`` nothing is
    written: the tally says what would be copied.  ``progress(done, total)``
    is called after each batch.
    """
    keys = list(source.keys() if keys is None else keys)
    tally = Tally()
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        _copy_batch(source, target, batch, tally, overwrite, dry_run)
        if remove and not dry_run:
            tally.removed += remove_copied(
                source, target, [k for k in batch if k not in tally.failed]
            )
        if progress is not None:
            progress(start + len(batch), len(keys))
    return tally


def _copy_batch(
    source: Entries, target: Entries, keys: list[str], tally: Tally, overwrite: bool, dry_run: bool
) -> None:
    todo = keys if overwrite else [k for k in keys if not target.has(k)]
    tally.skipped += len(keys) - len(todo)
    items = []
    for key in todo:
        try:
            items.append((key, source.read(key)))
        except Exception as err:  # an unreadable entry is reported, never fatal, and kept
            tally.failed[key] = "missing or unreadable" if isinstance(err, KeyError) else repr(err)
    if items and not dry_run:
        target.write(items)
    tally.copied += len(items)


def remove_copied(source: Entries, target: Entries, keys: Sequence[str]) -> int:
    """Remove from ``source`` those ``keys`` that ``target`` holds; returns how many."""
    confirms = getattr(target, "confirms", target.has)  # exact, where ``has`` is a snapshot
    confirmed = [k for k in keys if confirms(k)]
    if confirmed:
        source.remove(confirmed)
    return len(confirmed)


@dataclasses.dataclass
class StoreTally:
    """What :func:`copy_store` did with the values and with the call records."""

    values: Tally
    calls: Tally

    def as_dict(self) -> dict[str, Any]:
        """The counts, for JSON."""
        return {"values": self.values.as_dict(), "calls": self.calls.as_dict()}


class _Complete:
    """The records of ``calls`` whose values are all in ``values``: a record never points at nothing."""

    def __init__(self, calls: Entries, values: Entries, lost: set[str], check: bool) -> None:
        self.calls, self.values, self.lost, self.check = calls, values, lost, check
        self.keys, self.has, self.remove = calls.keys, calls.has, calls.remove

    def read(self, key: str) -> Any:
        record = self.calls.read(key)
        missing = [
            str(d)
            for d in _digests(record)
            if str(d) in self.lost or (self.check and not self.values.has(d))
        ]
        if missing:
            raise LookupError(f"its values {', '.join(sorted(missing))} could not be copied")
        return record


def copy_store(
    source: tuple[Entries, Entries],
    target: tuple[Entries, Entries],
    calls: Iterable[str] | None = None,
    *,
    overwrite: bool = False,
    remove: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> StoreTally:
    """Copy the values, then the call records, of ``source`` into ``target`` (each ``(values, calls)``).

    With ``calls`` (keys), only those records and the values they refer
    to; otherwise everything, unreferenced values too.  With ``remove`` the
    copied records leave the source once everything is copied, and so do
    the copied values when the whole store was copied and no record
    failed (otherwise a record left behind may still need them; ``gc``
    removes the values no record refers to).  Other options:
    :func:`copy_entries`.
    """
    (values, records), (to_values, to_records) = source, target
    value_keys = None
    if calls is not None:
        calls = list(calls)
        value_keys = sorted({str(d) for k in calls for d in _values_of(records, k)})
    options = {"overwrite": overwrite, "dry_run": dry_run}
    done = copy_entries(
        values, to_values, value_keys, **options, progress=_stage(progress, "values")
    )
    complete = _Complete(records, to_values, set(done.failed), not dry_run)
    copied = copy_entries(
        complete, to_records, calls, **options, progress=_stage(progress, "calls")
    )
    if remove and not dry_run:
        copied.removed = _remove_all(complete, to_records, calls, progress)
        if calls is None and not copied.failed:
            done.removed = _remove_all(values, to_values, value_keys, progress)
    return StoreTally(done, copied)


def _values_of(records: Entries, key: str) -> Iterable[Digest]:
    try:
        return _digests(records.read(key))
    except KeyError:
        return ()  # reported when the record itself is copied


def _digests(record: Any) -> list[Digest]:
    """The values a record refers to (a call that stored no result refers to none)."""
    return [d for d in record.values() if d is not None]


def _remove_all(
    source: Entries, target: Entries, keys: Iterable[str] | None, progress: Progress | None
) -> int:
    keys = list(source.keys() if keys is None else keys)
    removed = 0
    for start in range(0, len(keys), BATCH):
        removed += remove_copied(source, target, keys[start : start + BATCH])
        if progress is not None:
            progress("removing", min(start + BATCH, len(keys)), len(keys))
    return removed


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
