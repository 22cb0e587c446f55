"""Small values kept in the call database, large ones in files or objects: one value storage.

A miss of a small call stores an argument and a result of a few bytes
each.  As files (or objects) that is a create, a write and a rename (or a
PUT) per value, more than the record's own row costs; diskcache keeps
such values in its SQLite file.  :class:`SmallValues` does the same: an
entry whose encoded bytes (the very bytes of a pickle file: header,
check or signature, payload) are at most ``inline_limit`` goes into the
``small_values`` table of the call database (:mod:`.sql_values`), the
others into the backend below.  Reads look in the table first, then in
the backend, so a store written before (every value a file) or with
another limit reads the same; listing merges both, sorted.

It sits right above a :class:`~fleche.storage.pickle_file.PickleCodec`
backend (pickle files, the object store), below the mixins
(destructuring, the children log, locks), which see one storage.  An
entry is content-addressed in either place: the first write wins, and a
later one only marks it as used now, which the grace period of garbage
collection reads (:meth:`SmallValues.stored_at`); removing an unused row
is one statement that leaves a row used meanwhile in place.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from ..digest import Digest
from .base import Staged, StorageBackend
from .entry_pages import plain_entries, plain_values
from .key_join import positions

if TYPE_CHECKING:
    from .sql_values import SmallValueTable

__all__ = ["INLINE_LIMIT", "KEPT", "Encoded", "HeldWithRecord", "SmallValues", "beside"]

#: Encoded entries up to this many bytes are kept in the call database by the templates.
INLINE_LIMIT = 2048
#: What :meth:`SmallValues._keep_small` answers for an entry it kept in the database.
KEPT: Any = object()
#: ``on`` while a miss stores its values: small entries wait for the record's transaction
#: (``True``: held by this thread's connection; a list: collected there, see HeldWithRecord).
_HOLDING = threading.local()
#: Kinds whose size is their length: too large to inline is known without encoding them.
_SIZED_BY_LENGTH = frozenset({bytes, str, bytearray})
#: Kinds of stored entries that are the value they stand for (no layer above rebuilds them:
#: one that does, :class:`~fleche.storage.destructuring.DestructuringMixin`, stores the
#: containers it rebuilds as forms of its own).
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes, list, tuple, dict})
#: :meth:`SmallValues.values_of` scans the table whole once it is asked for at least one
#: key (counted with repeats) per this many rows.
_DENSE = 4
#: Rows decoded in one step by :meth:`SmallValues.values_of`.
_BATCH = 1000
_first = itemgetter(0)


class Encoded(NamedTuple):
    """An entry encoded already (header and check, payload): the codec writes it as it is."""

    head: bytes
    payload: bytes


def _merged(*sorted_keys: Iterable[Digest]) -> Iterator[Digest]:
    """The keys of sorted streams, sorted, each once (an entry may be in both places)."""
    last = None
    for key in heapq.merge(*sorted_keys):
        if key != last:
            yield key
            last = key


@dataclasses.dataclass(frozen=True)
class SmallValues(StorageBackend):
    """Entries of at most ``inline_limit`` encoded bytes in ``database``'s table; the rest below.

    Parameters
    ----------
    database
        The call storage whose database keeps the small entries (a
        :class:`~fleche.storage.sql.Sql`, anything with ``small_values()``);
        ``None`` keeps every entry in the backend.  The cache templates
        give the store's own call storage; a configuration table names it
        as a storage table (``database = {type = "Sql", url = ...}``).
    inline_limit
        The largest encoded entry (bytes) kept in the database; 0 (the
        default here; the templates give :data:`INLINE_LIMIT`) writes every
        new entry to the backend (entries in the table stay readable).
    """

    database: Any = dataclasses.field(default=None, kw_only=True, repr=False, compare=False)
    #: Not compared: where new small entries go, not what the store holds or how it reads.
    inline_limit: int = dataclasses.field(default=0, kw_only=True, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        if self.database is not None and self.inline_limit > 0 and not self.saves_ahead:
            # Declared so that a cache asks commits_with (see HeldWithRecord).
            object.__setattr__(self, "saves_ahead", True)

    def _settle_held(self) -> None:
        """Write the entries this thread holds now (their record is saved elsewhere)."""
        if self.database is not None:
            self.database.small_values().flush()

    def inline_bytes(self) -> int:
        """How many bytes the entries kept in the call database take (0 without one)."""
        table = self._rows()
        return 0 if table is None else table.size()

    def _rows(self) -> SmallValueTable | None:
        """The table small entries are read from, if this storage has a database."""
        database = self.database
        return None if database is None else database.small_values()

    def _keep_small(self, value: Any, key: Digest) -> Any:
        """Store ``value`` in the table if its entry is small (then :data:`KEPT`); else what to write below.

        What is written below is ``value`` itself, or its entry once encoded
        (:class:`Encoded`), never encoded twice.
        """
        limit = self.inline_limit
        if self.database is None or limit <= 0:
            return value
        # Too large to inline, known without encoding it (arrays, bytes, text): tested here,
        # not in a helper, as it runs for every value a miss stores.
        size = getattr(value, "nbytes", None)
        if type(size) is int:
            if size > limit:
                return value
        elif type(value) in _SIZED_BY_LENGTH and len(value) > limit:
            return value
        head, payload = self._encode(value, key)  # type: ignore[attr-defined]
        if len(head) + len(payload) > limit:
            return Encoded(head, payload)
        damaged = self._damaged  # type: ignore[attr-defined]
        hold = getattr(_HOLDING, "on", False)
        self.database.small_values().put(key, head + payload, key in damaged, hold)
        if type(hold) is not list:  # a collected repair runs only if its call is committed
            damaged.discard(key)
        return KEPT

    def put(self, value: Any, key: Digest) -> Digest:
        # docstring inherited
        if self.database is None:  # every entry below: no call more than the backend's put
            return super().put(value, key)
        entry = self._keep_small(value, key)
        if entry is not KEPT:
            super().put(entry, key)
        return key

    def _read(self, key: Digest, file: str) -> Any:
        # A pickle file's read (what get and verify's examine_many use): the table first.
        database = self.database
        data = None if database is None else database.small_values().get(key)
        if data is None:
            return super()._read(key, file)  # type: ignore[misc]
        return self._decode(data, key.encode())  # type: ignore[attr-defined]

    def _rewrite(self, target: Any, entry: Any, key: Digest) -> None:
        # compress_all/decompress_all: a row is rewritten in place, a file as a file
        table = self._rows()
        if table is None or table.stored_at(key) is None:
            super()._rewrite(target, entry, key)  # type: ignore[misc]
            return
        head, payload = target._encode(entry, key)
        table.put(key, head + payload, replace=True)

    def _fetch(self, key: Digest) -> Any:
        # An object store's read of an entry's bytes: the table first.
        table = self._rows()
        data = None if table is None else table.get(key)
        return super()._fetch(key) if data is None else data  # type: ignore[misc]

    def load_many(self, keys: Iterable[Digest]) -> dict[Digest, Any]:
        # docstring inherited: the table's entries read a page per statement, the others one by one
        table = self._rows()
        if table is None or not self._context_free:  # type: ignore[attr-defined]
            return super().load_many(keys)  # type: ignore[misc]
        wanted = keys if isinstance(keys, (set, frozenset)) else set(keys)
        found: dict[Digest, Any] = {}
        decode, resolve, new = self._decode, self._resolve, str.__new__  # type: ignore[attr-defined]
        head = self._plain_head()  # type: ignore[attr-defined]
        for rows in table.get_many(wanted):
            decoded, left = ({}, rows) if head is None else plain_entries(rows, head)
            for key, form in decoded.items():  # a scalar is its own value: no call
                if type(form) not in _PLAIN:
                    decoded[key] = resolve(form, key)
            found.update(decoded)
            for text, data in left:
                key = new(Digest, text)
                try:
                    found[key] = resolve(decode(data, text.encode()), key)
                except Exception:  # noqa: BLE001 - read again alone below, which warns as a load does
                    continue
        if len(found) < len(wanted):  # in the backend, damaged, or with a part missing
            found.update(super().load_many(wanted.difference(found)))  # type: ignore[misc]
        return found

    def values_of(self, keys: Sequence[Digest | str], missing: Any = None) -> list[Any]:
        # docstring inherited: when most rows are asked for (a table of a store's calls), the
        # table is scanned whole and joined to the keys at once (.key_join): no dict of every
        # value, no lookup per key; only the rows asked for are decoded
        table = self._rows()
        if table is None or not self._context_free or len(keys) * _DENSE < table.count():  # type: ignore[attr-defined]
            return super().values_of(keys, missing)  # type: ignore[misc]
        rows = table.scan()
        at = positions(list(map(_first, rows)), keys)
        if at is None:  # a key that is not a digest's text
            return super().values_of(keys, missing)  # type: ignore[misc]
        values, lost = self._joined(rows, at, missing)
        if lost:  # in the backend, damaged, or with a part missing: read alone (warned of)
            found = super().load_many({keys[n] for n in lost})  # type: ignore[misc]
            for n in lost:
                values[n] = found.get(keys[n], missing)
        return values

    def _joined(self, rows: list[Any], at: Any, missing: Any) -> tuple[list[Any], list[int]]:
        """The value of the row at each index of ``at`` (-1: ``missing``), each row decoded once;
        and the indices that are ``missing`` (found in numpy: no scan of the values)."""
        import numpy

        used = numpy.flatnonzero(numpy.bincount(at[at >= 0], minlength=len(rows)))
        chosen = rows if len(used) == len(rows) else list(map(rows.__getitem__, used.tolist()))
        entries = numpy.empty(len(rows) + 1, dtype=object)  # the last one: where at is -1
        values, unread = self._entries(chosen, missing)
        entries[used] = numpy.fromiter(values, dtype=object, count=len(values))
        entries[-1] = missing
        lost = (at < 0) | numpy.isin(at, used[unread]) if unread else at < 0
        return entries[at].tolist(), numpy.flatnonzero(lost).tolist()

    def _entries(self, rows: list[tuple[str, bytes]], missing: Any) -> tuple[list[Any], list[int]]:
        """The value of each row ``(key, bytes)``, in order, ``missing`` where it cannot be read
        here; and the indices of those rows."""
        values: list[Any] = []
        unread: list[int] = []
        decode, new = self._decode, str.__new__  # type: ignore[attr-defined]
        head = self._plain_head()  # type: ignore[attr-defined]
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            forms = None if head is None else plain_values(batch, head)
            plain = forms is not None  # then no row of the batch is missing
            if forms is None:  # decoded row by row where the page cannot be at once
                decoded, left = ({}, batch) if head is None else plain_entries(batch, head)
                for text, data in left:  # written otherwise (signed, compressed), or damaged
                    try:
                        decoded[new(Digest, text)] = decode(data, text.encode())
                    except Exception:  # noqa: BLE001 - read again alone, which warns as a load does
                        continue
                forms = list(map(decoded.get, map(_first, batch), repeat(missing)))
            if not _PLAIN.issuperset(map(type, forms)):
                plain = False
                forms = [
                    self._resolved(form, text, missing)
                    for form, (text, _) in zip(forms, batch, strict=True)
                ]
            if not plain:
                unread += (start + n for n, form in enumerate(forms) if form is missing)
            values += forms
        return values, unread

    def _resolved(self, form: Any, text: str, missing: Any) -> Any:
        """:meth:`_resolve` of one row's entry; ``missing`` if a part of it cannot be read."""
        if form is missing or type(form) in _PLAIN:
            return form
        try:
            return self._resolve(form, str.__new__(Digest, text))
        except Exception:  # noqa: BLE001 - read again alone, which says why
            return missing

    def _resolve(self, form: Any, key: Digest) -> Any:
        """The value a stored entry stands for: the entry itself, unless a layer above rebuilds it.

        (:class:`~fleche.storage.destructuring.DestructuringMixin` does: its
        containers' parts are loaded.)  What :meth:`load_many` makes of a row.
        """
        return form

    def _contains(self, key: Digest) -> bool:
        table = self._rows()
        return (table is not None and table.stored_at(key) is not None) or super()._contains(key)

    def stored_at(self, key: Digest) -> float | None:
        # docstring inherited: a row's time is that of its last write or reuse
        table = self._rows()
        stored = None if table is None else table.stored_at(key)
        return super().stored_at(key) if stored is None else stored

    def _evict(self, key: Digest) -> None:
        table = self._rows()
        removed = table is not None and table.delete(key)
        try:
            super()._evict(key)
        except KeyError:
            if not removed:
                raise
        self._damaged.discard(key)  # type: ignore[attr-defined]

    def evict_unused(self, key: Digest, horizon: float) -> bool:
        # docstring inherited: a row used again after ``horizon`` stays, and so does its file
        table = self._rows()
        if table is not None and table.stored_at(key) is not None:
            if not table.delete_unused(key, horizon):
                return False
            super().evict_unused(key, horizon)  # a copy written before the table held it
            self._damaged.discard(key)  # type: ignore[attr-defined]
            return True
        return super().evict_unused(key, horizon)

    def list(self) -> Iterator[Digest]:
        # docstring inherited
        table = self._rows()
        below = super().list()
        return iter(below) if table is None else _merged(table.keys(), below)

    def _prefix_range(self, prefix: str) -> Iterator[Digest]:
        # Both are sorted range scans: the table's index, the fan-out directories.
        table = self._rows()
        below = super()._prefix_range(prefix)
        return iter(below) if table is None else _merged(table.keys(prefix.lower()), below)

    def small_rows(self, low: str, high: str) -> Iterator[tuple[str, bytes, float]]:
        """``(key, bytes, stored)`` of the small entries from ``low`` to ``high``, sorted (a range scan)."""
        table = self._rows()
        return iter(()) if table is None else table.rows(low, high)

    def _read_below(self, key: Digest, file: str) -> Any:
        """The entry of ``key`` read from the backend, not looked for in the table (it has no row)."""
        return super()._read(key, file)  # type: ignore[misc]


class HeldWithRecord:
    """A miss's small values committed with its record: first in a value storage's bases.

    For a storage with :class:`SmallValues` whose writes all finish at once
    (files): ``save_staged`` (the result, saved by the cache right before
    the record, in the same thread) holds the small entries, and the record
    saved next by the same database commits them.  Arguments are written
    when the call is prepared, except for a caller that commits the call
    itself (the decorator): :meth:`save_held` collects their entries in a
    list that the prepared call carries to the thread that commits it
    (:meth:`give_held`): one transaction a miss.
    """

    def save_staged(self, staged: Staged) -> Digest:
        # docstring inherited: small entries held for this thread's next write to the
        # database: the record the cache saves next, in this thread, commits them with it
        # in one transaction (settle writes them first otherwise)
        if self.database is None or self.inline_limit <= 0:  # type: ignore[attr-defined]
            return super().save_staged(staged)  # type: ignore[misc]
        before = getattr(_HOLDING, "on", False)
        _HOLDING.on = True
        try:
            return super().save_staged(staged)  # type: ignore[misc]
        finally:
            _HOLDING.on = before

    def save_held(self, value: Any, key: Digest, held: list[Any]) -> Digest:
        """``save``, the small entries' writes appended to ``held`` instead (for :meth:`give_held`)."""
        before = getattr(_HOLDING, "on", False)
        _HOLDING.on = held
        try:
            return self.save(value, key)  # type: ignore[attr-defined]
        finally:
            _HOLDING.on = before

    def give_held(self, held: list[Any]) -> None:
        """Hold the writes ``held`` collected (:meth:`save_held`, any thread) for this thread's next record."""
        self.database.small_values().runtime.give_held(held)  # type: ignore[attr-defined]

    def settle(self, keys: Iterable[Digest]) -> None:
        # docstring inherited: the record is saved elsewhere, the held entries written now
        self._settle_held()  # type: ignore[attr-defined]

    def commits_with(self, calls: Any) -> bool:
        # docstring inherited: small values held for a record of their own database
        return self.saves_ahead and calls is self.database  # type: ignore[attr-defined]


def beside(values: Any, calls: Any) -> Any:
    """``values`` reading the small values kept in the database of ``calls``, if both can.

    For a value storage and a call storage named apart (an explicit
    configuration) that may be one store: its small values must not read
    as missing.  New entries still go where ``values``' ``inline_limit`` says.
    """
    if not isinstance(values, SmallValues) or values.database is not None:
        return values
    if not callable(getattr(calls, "small_values", None)):
        return values
    return dataclasses.replace(values, database=calls)
