"""A byte budget on a cache: the least recently used calls go first.

:class:`SizeLimitedCache` keeps its bookkeeping in a small SQLite side
index (a file shared by every process using the store, or private memory):
for each call when it was last read and which values it uses, for each
value its size and how many calls and containers refer to it.  Opening a
store never reads its records; a call stored by someone else is registered
the first time it is read.  Evicting a call frees the values no remaining
call refers to, containers with the children they alone hold.

Sizes are estimates: an array's ``nbytes``, the length of ``bytes`` and
``str``, else the pickled length of the value.  The size of a container is
counted on the value itself; its separately stored children count zero.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sqlite3
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall
from ..digest import DIGEST_LENGTH, Digest
from .base import sealed
from .core import Cache
from .wrapping import WrapperCache

__all__ = ["POLICIES", "SizeLimitedCache", "SizeLimitedMixin", "size_of"]

#: Eviction orders: least recently used, or first stored first out.
POLICIES = ("lru", "fifo")
#: Reads remembered in memory before they are written to the index.
_TOUCH_BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, accessed REAL NOT NULL, uses TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS calls_accessed ON calls (accessed);
CREATE TABLE IF NOT EXISTS nodes (key TEXT PRIMARY KEY, size INTEGER NOT NULL, refs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS edges (parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child));
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0);
"""


class _Counting:
    """A write-only file that only counts bytes."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.size += n
        return n


def size_of(value: Any) -> int:
    """Estimated bytes of ``value``: ``nbytes`` of arrays, ``len`` of bytes/str, else pickled length."""
    if isinstance(value, bytes | bytearray | memoryview):
        return memoryview(value).nbytes
    if isinstance(value, str):
        return len(value)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int) and type(value).__module__.startswith("numpy"):
        return nbytes
    sink = _Counting()
    try:
        pickle.dump(value, sink, protocol=5)
    except Exception:
        return sys.getsizeof(value)
    return sink.size


class _Index:
    """The side index: one connection per process, every change one transaction."""

    def __init__(self, path: str | None) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.db = sqlite3.connect(
            path or ":memory:", timeout=30, isolation_level=None, check_same_thread=False
        )
        if path:
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
        with self.lock:
            self.db.executescript(_SCHEMA)
        weakref.finalize(self, _close, self.db, self.pid)

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def read(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(sql, tuple(parameters)).fetchall()


def _close(db: sqlite3.Connection, pid: int) -> None:
    if pid == os.getpid():
        db.close()


class _Transaction:
    """``with index.transaction() as db:`` — the index lock and ``BEGIN IMMEDIATE``…``COMMIT``."""

    def __init__(self, index: _Index) -> None:
        self.index = index

    def __enter__(self) -> sqlite3.Connection:
        self.index.lock.acquire()
        try:
            self.index.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.index.lock.release()
            raise
        return self.index.db

    def __exit__(self, kind: type | None, *_: object) -> None:
        try:
            self.index.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.index.lock.release()


def _incref(db: sqlite3.Connection, key: str) -> None:
    db.execute("UPDATE nodes SET refs = refs + 1 WHERE key = ?", (key,))


def _decref(db: sqlite3.Connection, keys: Iterable[str]) -> list[str]:
    """Drop one reference from each key; the nodes left unreferenced are removed (cascading)."""
    freed: list[str] = []
    todo = list(keys)
    while todo:
        key = todo.pop()
        db.execute("UPDATE nodes SET refs = refs - 1 WHERE key = ?", (key,))
        row = db.execute("SELECT refs, size FROM nodes WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] > 0:
            continue
        db.execute("DELETE FROM nodes WHERE key = ?", (key,))
        db.execute("UPDATE totals SET bytes = bytes - ? WHERE id = 0", (row[1],))
        children = [c for (c,) in db.execute("SELECT child FROM edges WHERE parent = ?", (key,))]
        db.execute("DELETE FROM edges WHERE parent = ?", (key,))
        todo.extend(children)
        freed.append(key)
    return freed


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
        The budget for the values of the calls tracked here (``None``: none).
    max_calls
        At most this many calls are kept (``None``: no limit on the number).
    policy
        ``"lru"`` (least recently read first) or ``"fifo"`` (first stored first).
    index
        The SQLite file of the bookkeeping, shared by every process that
        uses the store; ``None`` keeps it in memory (right for a memory cache).
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
    _box: list[Any] = dataclasses.field(
        default_factory=lambda: [None], init=False, repr=False, compare=False
    )
    _touched: dict[str, float] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _pins: Counter[str] = dataclasses.field(
        default_factory=Counter, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.cache, Cache):
            raise TypeError(
                f"SizeLimitedCache limits a Cache (values and calls), not {type(self.cache).__name__}"
            )
        if self.max_bytes is None and self.max_calls is None:
            raise ValueError("a SizeLimitedCache needs max_bytes, max_calls or both")
        for name in ("max_bytes", "max_calls"):
            limit = getattr(self, name)
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
            ):
                raise ValueError(f"{name} must be a whole number >= 0 or None; got {limit!r}")
        if self.policy not in POLICIES:
            raise ValueError(
                f"unknown eviction policy {self.policy!r}; choose one of {list(POLICIES)}"
            )
        if self.index is not None:
            object.__setattr__(self, "index", Path(self.index).expanduser())

    def _db(self) -> _Index:
        index = self._box[0]
        if index is None or index.pid != os.getpid():
            with self._lock:
                index = self._box[0]
                if index is None or index.pid != os.getpid():
                    if self.index is not None:
                        self.index.parent.mkdir(parents=True, exist_ok=True)
                    index = self._box[0] = _Index(None if self.index is None else str(self.index))
        return index

    # -- size ------------------------------------------------------------------

    def total(self) -> int:
        """Bytes of the values of the calls tracked now."""
        return self._db().read("SELECT bytes FROM totals WHERE id = 0")[0][0]

    # -- reading: remember the access ----------------------------------------------

    def _touch(self, key: Digest | str) -> None:
        if self.policy != "lru":
            return
        self._touched[key] = self.clock()
        if len(self._touched) >= _TOUCH_BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the reads remembered in memory to the index (registering calls it does not know)."""
        with self._lock:
            touched = dict(self._touched)
            self._touched.clear()
        if not touched:
            return
        index = self._db()
        with index.transaction() as db:
            unknown = []
            for key, when in touched.items():
                cursor = db.execute(
                    "UPDATE calls SET accessed = max(accessed, ?) WHERE key = ?", (when, key)
                )
                if cursor.rowcount == 0:
                    unknown.append((key, when))
        for (
            key,
            when,
        ) in unknown:  # stored before the limit or by another process: registered lazily
            try:
                call = self.cache.load(key)
            except KeyError:
                continue
            self._register(call.digested_call, _sizes_of(call), when)
        if unknown:
            self._enforce()

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        call = self.cache.load(key)
        self._touch(call.key() if len(key) != DIGEST_LENGTH else key)
        return call

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        result = self.cache.load_result(key)
        self._touch(key)
        return result

    # -- writing: register, then keep to the budget ----------------------------------

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        key = self.cache.save(call)
        record = call.digested_call if isinstance(call, LazyCall) else call.digested()
        self._register(record, _sizes_of(call, record), self.clock(), _values_of(call, record))
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
        pinned = list(record.arguments.values())
        with self._lock:
            self._pins.update(pinned)
        try:
            inner = self.cache.prepare(record, arguments, key)
        except BaseException:
            self._unpin(pinned)
            raise
        sizes = {record.arguments[name]: size_of(value) for name, value in arguments.items()}
        given = {record.arguments[name]: value for name, value in arguments.items()}
        return PreparedCall(record, key, self, (inner, pinned, sizes, given))

    def _commit_prepared(
        self, prepared: PreparedCall, result: Any, metadata: Mapping[str, Any]
    ) -> Digest:
        # docstring inherited
        inner, _, sizes, given = prepared.hold
        done = inner.commit(result, metadata)
        stored = self.cache.calls.load(done)
        sizes[stored.result] = size_of(result)
        self._register(stored, sizes, self.clock(), {**given, stored.result: result})
        self._enforce()
        return done

    def _release_prepared(self, prepared: PreparedCall) -> None:
        # docstring inherited
        inner, pinned, _, _ = prepared.hold
        inner.abandon()
        self._unpin(pinned)

    def _unpin(self, keys: list[Digest]) -> None:
        with self._lock:
            self._pins.subtract(keys)
            for key in keys:
                if self._pins[key] <= 0:
                    del self._pins[key]

    def _register(
        self,
        record: DigestedCall,
        sizes: Mapping[str, int],
        when: float,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Track a stored call: its values (and their stored parts), and replace what it used before.

        ``values`` (by digest), when at hand, are stored again if another
        process freed them between our write and our registration.
        """
        index = self._db()
        uses = list(dict.fromkeys(record.values()))
        known = {
            k
            for (k,) in index.read(
                f"SELECT key FROM nodes WHERE key IN ({','.join('?' * len(uses))})", uses
            )
        }
        edges: list[tuple[str, str]] = []
        todo = [k for k in uses if k not in known]
        seen = set(todo)
        while todo:  # the stored parts of new containers, read outside the transaction
            parent = todo.pop()
            try:
                children = list(self.cache.values.children(parent))
            except KeyError:
                continue
            for child in children:
                edges.append((parent, child))
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        key = record.key()
        freed: list[str] = []
        new: list[str] = []
        with index.transaction() as db:
            row = db.execute("SELECT uses FROM calls WHERE key = ?", (key,)).fetchone()
            for node in seen.union(uses):  # a value known a moment ago may have been freed since
                size = sizes.get(node, 0)
                if db.execute(
                    "INSERT OR IGNORE INTO nodes VALUES (?, ?, 0)", (node, size)
                ).rowcount:
                    db.execute("UPDATE totals SET bytes = bytes + ? WHERE id = 0", (size,))
                    new.append(node)
            for parent, child in edges:
                if db.execute(
                    "INSERT OR IGNORE INTO edges VALUES (?, ?)", (parent, child)
                ).rowcount:
                    _incref(db, child)
            for node in uses:
                _incref(db, node)
            if row is not None:  # stored again (a rerun): release what the old record used
                freed = _decref(db, row[0].split())
            db.execute(
                "INSERT INTO calls VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET accessed = ?, uses = ?",
                (key, when, " ".join(uses), when, " ".join(uses)),
            )
        # Our references are counted now: nothing frees these values any more.  A
        # value new to the index may have been freed by another process just
        # before (while our write skipped it as present): store it again.
        for node in new:
            if values is not None and node in values and not self.cache.values.contains(node):
                self.cache.values.save(values[node], node)
        self._free(freed)

    def _free(self, keys: Iterable[str]) -> None:
        for key in keys:
            with self._lock:
                if key in self._pins:
                    continue  # an argument of a call running here; gc() removes it later if unused
            try:
                self.cache.values.evict(key)
            except KeyError:
                pass

    def _over(self) -> bool:
        """Whether the calls tracked now exceed ``max_bytes`` or ``max_calls``."""
        if self.max_bytes is not None and self.total() > self.max_bytes:
            return True
        if self.max_calls is None:
            return False
        return self._db().read("SELECT COUNT(*) FROM calls")[0][0] > self.max_calls

    def _enforce(self) -> None:
        """Evict calls, least recently used first, until the tracked ones fit the budget."""
        if self._touched:
            self.flush()
        while self._over():
            victims = self._db().read("SELECT key FROM calls ORDER BY accessed LIMIT 16")
            if not victims:
                return
            for (key,) in victims:
                self._forget(key)
                if not self._over():
                    return

    def _forget(self, key: str) -> None:
        """Remove a call from the store and the index, then the values only it used."""
        try:
            self.cache.evict(key)
        except KeyError:
            pass  # already gone (another process, or evicted directly)
        with self._db().transaction() as db:
            row = db.execute("SELECT uses FROM calls WHERE key = ?", (key,)).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM calls WHERE key = ?", (key,))
            freed = _decref(db, row[0].split())
        self._free(freed)

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        full = self.cache.expand(key) if len(key) != DIGEST_LENGTH else key
        self.cache.evict(full)
        self._forget(full)


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


def _values_of(call: Call | LazyCall, record: DigestedCall) -> dict[str, Any]:
    values = {record.arguments[name]: call.arguments[name] for name in record.arguments}
    values[record.result] = call.result
    return values


def _sizes_of(call: Call | LazyCall, record: DigestedCall | None = None) -> dict[str, int]:
    record = record or call.digested()
    sizes = {record.arguments[name]: size_of(call.arguments[name]) for name in record.arguments}
    sizes[record.result] = size_of(call.result)
    return sizes
