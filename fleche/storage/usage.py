"""The usage index of a value storage: sizes, last uses and holders of its entries.

:class:`UsageIndex` is a small SQLite database (a file shared by every
process using the store, or private memory).  For each value entry it keeps
its size, when it was last written or read, and how many holders and
containers refer to it; for each container the parts stored apart from it;
for each holder (a call record, named by its key) when it was last used and
which entries it holds.  Releasing the last hold on an entry frees it, and
with it the parts it alone held.  Reads are remembered in memory and written
in batches, so a read costs no SQL statement.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .sqlite_wal import enter_wal

__all__ = ["UsageIndex"]

#: Reads remembered in memory before they are written to the index.
TOUCH_BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, size INTEGER NOT NULL, used REAL NOT NULL, refs INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_unheld ON entries (used) WHERE refs = 0;
CREATE TABLE IF NOT EXISTS parts (parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child));
CREATE TABLE IF NOT EXISTS holders (key TEXT PRIMARY KEY, used REAL NOT NULL, holds TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS holders_used ON holders (used);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries
    BEGIN UPDATE totals SET bytes = bytes + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries
    BEGIN UPDATE totals SET bytes = bytes - OLD.size WHERE id = 0; END;
"""

_TOUCH_ENTRY = "UPDATE entries SET used = max(used, ?) WHERE key = ?"
_TOUCH_HOLDER = "UPDATE holders SET used = max(used, ?) WHERE key = ?"


class UsageIndex:
    """The bookkeeping of one value storage in one process (see the module docstring).

    ``path`` is the SQLite file, ``None`` for private memory.  Every change
    is one transaction, so several processes can share the file.
    ``present(key)`` tells whether the storage still holds an entry: one
    removed between its write and its recording is not recorded.
    """

    def __init__(self, path: str | None, present: Callable[[str], bool] = bool) -> None:
        self.pid = os.getpid()
        self._present = present
        self._lock = threading.Lock()
        self._adds: dict[str, tuple[int, float, list[tuple[str, str]]]] = {}
        self._entries: dict[str, float] = {}
        self._holders: dict[str, float] = {}
        self._db = sqlite3.connect(
            path or ":memory:", timeout=30, isolation_level=None, check_same_thread=False
        )
        if path:
            enter_wal(self._db)
            self._db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
        weakref.finalize(self, _close, self._db, self.pid, self._adds)

    # -- reading -----------------------------------------------------------------

    def _read(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if self._adds:
            with self._transaction():
                pass  # what this process recorded is read back
        with self._lock:
            return self._db.execute(sql, tuple(parameters)).fetchall()

    def known(self, key: str) -> bool:
        """Whether the entry under ``key`` is recorded (or about to be, by this process)."""
        if key in self._adds:
            return True
        with self._lock:
            return bool(self._db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchall())

    def total(self) -> int:
        """Bytes of the entries recorded."""
        return self._read("SELECT bytes FROM totals WHERE id = 0")[0][0]

    def holders(self) -> int:
        """How many holders hold entries."""
        return self._read("SELECT COUNT(*) FROM holders")[0][0]

    def size(self, key: str) -> int | None:
        """The recorded size of the entry under ``key``; ``None`` if it is not recorded."""
        rows = self._read("SELECT size FROM entries WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def last_used(self, key: str) -> float | None:
        """When the entry (or holder) ``key`` was last used, as far as written; ``None`` if unknown."""
        rows = self._read(
            "SELECT used FROM entries WHERE key = ? UNION ALL SELECT used FROM holders WHERE key = ?",
            (key, key),
        )
        return max(row[0] for row in rows) if rows else None

    def oldest(self, n: int) -> list[tuple[str, bool]]:
        """The ``n`` least recently used holders and unheld entries: ``(key, is_holder)``."""
        return [
            (key, bool(holder))
            for key, holder, _ in self._read(
                "SELECT key, 1, used FROM holders UNION ALL "
                "SELECT key, 0, used FROM entries WHERE refs = 0 ORDER BY 3 LIMIT ?",
                (n,),
            )
        ]

    # -- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The lock and ``BEGIN IMMEDIATE``…``COMMIT``, writing the entries added meanwhile first."""
        with self._lock:
            adds = dict(self._adds)
            self._adds.clear()
        # Checked outside the lock: an entry evicted since it was written is not recorded.
        adds = {key: add for key, add in adds.items() if self._present(key)}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                _insert(self._db, adds)
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, key: str, size: int, when: float, parts: Iterable[tuple[str, str]]) -> None:
        """Record a new entry of ``size`` bytes written at ``when``, with its stored parts.

        ``parts`` are the ``(parent, child)`` edges of the parts stored apart
        from it, each recorded with size 0 (a container's size is counted on
        the container).  Written with the next change or read, so that a
        call's values and its hold cost one transaction; an entry recorded
        already keeps its size.
        """
        with self._lock:
            self._adds[key] = (size, when, list(parts))
            full = len(self._adds) >= TOUCH_BATCH
        if full:
            with self._transaction():
                pass

    def forget(self, key: str) -> None:
        """The entry under ``key`` is gone from the storage: drop it (its parts stay recorded)."""
        if not self.known(key):
            return  # freed already (the usual case): no write
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            children = _parts(db, key)
            db.executemany(
                "UPDATE entries SET refs = refs - 1 WHERE key = ?", [(c,) for c in children]
            )

    def drop(self, key: str) -> list[str]:
        """Stop recording an unheld entry; returns it and the parts freed with it."""
        with self._transaction() as db:
            row = db.execute("SELECT refs FROM entries WHERE key = ?", (key,)).fetchall()
            if not row or row[0][0] > 0:
                return []
            db.execute("UPDATE entries SET refs = 1 WHERE key = ?", (key,))
            return _decref(db, [key])

    def hold(self, holder: str, keys: Iterable[str], when: float) -> tuple[list[str], list[str]]:
        """``holder`` holds the entries ``keys`` now (instead of what it held before).

        Returns the keys not recorded (they cannot be held until they are)
        and the entries freed because only the old holds of ``holder`` held them.
        """
        keys = list(dict.fromkeys(keys))
        with self._transaction() as db:
            rows = db.execute("SELECT holds FROM holders WHERE key = ?", (holder,)).fetchall()
            old = set(rows[0][0].split()) if rows else set()
            held, missing = [], []
            for key in keys:
                fresh = key not in old
                if (
                    fresh
                    and not db.execute(
                        "UPDATE entries SET refs = refs + 1 WHERE key = ?", (key,)
                    ).rowcount
                ):
                    missing.append(key)
                else:
                    held.append(key)
            freed = _decref(db, old.difference(keys))
            db.execute(
                "INSERT INTO holders VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET used = ?, holds = ?",
                (holder, when, " ".join(held), when, " ".join(held)),
            )
        return missing, freed

    def release(self, holder: str) -> list[str]:
        """``holder`` holds nothing any more; returns the entries freed (no longer recorded)."""
        with self._transaction() as db:
            rows = db.execute(
                "DELETE FROM holders WHERE key = ? RETURNING holds", (holder,)
            ).fetchall()
            return _decref(db, rows[0][0].split()) if rows else []

    # -- uses remembered in memory -------------------------------------------------

    def touch(self, key: str, when: float) -> None:
        """Remember that the entry under ``key`` was read at ``when`` (written on :meth:`flush`)."""
        self._entries[key] = when
        if len(self._entries) >= TOUCH_BATCH:
            self.flush()

    def touch_holder(self, holder: str, when: float) -> None:
        """Remember that ``holder`` was used at ``when`` (written on :meth:`flush`)."""
        self._holders[holder] = when
        if len(self._holders) >= TOUCH_BATCH:
            self.flush()

    def flush(self, *, holders_only: bool = False) -> list[str]:
        """Write the uses remembered in memory; returns the holders touched that are not recorded.

        With ``holders_only``, nothing is written unless a holder was used
        (the order of eviction depends on it; the values' uses go along).
        """
        if holders_only and not self._holders:
            return []
        with self._lock:
            entries, self._entries = self._entries, {}
            holders, self._holders = self._holders, {}
        if not entries and not holders and not self._adds:
            return []
        unknown = []
        with self._transaction() as db:
            db.executemany(_TOUCH_ENTRY, [(when, key) for key, when in entries.items()])
            for holder, when in holders.items():
                if not db.execute(_TOUCH_HOLDER, (when, holder)).rowcount:
                    unknown.append(holder)
        return unknown


def _close(db: sqlite3.Connection, pid: int, adds: dict[str, Any]) -> None:
    """Write what is still pending, then close (in the process that opened ``db`` only)."""
    if pid != os.getpid():
        return
    try:
        if adds:
            db.execute("BEGIN IMMEDIATE")
            _insert(db, adds)
            db.execute("COMMIT")
    except sqlite3.Error:
        pass  # best effort at exit: an entry not recorded is recorded when next held
    db.close()


def _insert(
    db: sqlite3.Connection, adds: dict[str, tuple[int, float, list[tuple[str, str]]]]
) -> None:
    """Write added entries and the edges of their parts (inside a transaction)."""
    for key, (size, when, parts) in adds.items():
        db.execute("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, 0)", (key, size, when))
        for parent, child in parts:
            db.execute("INSERT OR IGNORE INTO entries VALUES (?, 0, ?, 0)", (child, when))
            if db.execute("INSERT OR IGNORE INTO parts VALUES (?, ?)", (parent, child)).rowcount:
                db.execute("UPDATE entries SET refs = refs + 1 WHERE key = ?", (child,))


def _decref(db: sqlite3.Connection, keys: Iterable[str]) -> list[str]:
    """Drop one reference from each entry; those left unreferenced are freed, with their parts."""
    freed: list[str] = []
    todo = list(keys)
    while todo:
        key = todo.pop()
        rows = db.execute(
            "UPDATE entries SET refs = refs - 1 WHERE key = ? RETURNING refs", (key,)
        ).fetchall()
        if not rows or rows[0][0] > 0:
            continue
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        todo.extend(_parts(db, key))
        freed.append(key)
    return freed


def _parts(db: sqlite3.Connection, parent: str) -> list[str]:
    """Remove the part edges of ``parent``; returns its parts."""
    return [
        child
        for (child,) in db.execute(
            "DELETE FROM parts WHERE parent = ? RETURNING child", (parent,)
        ).fetchall()
    ]
