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

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["UsageIndex"]

#: Reads remembered in memory before they are written to the index.
TOUCH_BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, size INTEGER NOT NULL, used REAL NOT NULL, refs INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_unheld ON entries (refs, used);
CREATE TABLE IF NOT EXISTS parts (parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child));
CREATE TABLE IF NOT EXISTS holders (key TEXT PRIMARY KEY, used REAL NOT NULL, holds TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS holders_used ON holders (used);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0);
"""

_TOUCH_ENTRY = "UPDATE entries SET used = max(used, ?) WHERE key = ?"
_TOUCH_HOLDER = "UPDATE holders SET used = max(used, ?) WHERE key = ?"


class UsageIndex:
    """The bookkeeping of one value storage in one process (see the module docstring).

    ``path`` is the SQLite file, ``None`` for private memory.  Every change
    is one transaction, so several processes can share the file.
    """

    def __init__(self, path: str | None) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._entries: dict[str, float] = {}
        self._holders: dict[str, float] = {}
        self._db = sqlite3.connect(
            path or ":memory:", timeout=30, isolation_level=None, check_same_thread=False
        )
        if path:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
        weakref.finalize(self, _close, self._db, self.pid)

    # -- reading -----------------------------------------------------------------

    def _read(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(parameters)).fetchall()

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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._lock, self._db)

    def used(self, key: str, when: float) -> bool:
        """Mark the entry under ``key`` used at ``when``; whether it is recorded."""
        with self._lock:
            return self._db.execute(_TOUCH_ENTRY, (when, key)).rowcount > 0

    def record(self, key: str, size: int, when: float, parts: Iterable[tuple[str, str]]) -> None:
        """Record the entry under ``key`` and the ``(parent, child)`` edges of its stored parts.

        A part is recorded with size 0: the size of a container is counted
        on the container.  An entry recorded already keeps its size.
        """
        with self._transaction() as db:
            if db.execute(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, 0)", (key, size, when)
            ).rowcount:
                db.execute("UPDATE totals SET bytes = bytes + ? WHERE id = 0", (size,))
            else:
                db.execute(_TOUCH_ENTRY, (when, key))
            for parent, child in parts:
                db.execute("INSERT OR IGNORE INTO entries VALUES (?, 0, ?, 0)", (child, when))
                if db.execute(
                    "INSERT OR IGNORE INTO parts VALUES (?, ?)", (parent, child)
                ).rowcount:
                    db.execute("UPDATE entries SET refs = refs + 1 WHERE key = ?", (child,))

    def forget(self, key: str) -> None:
        """The entry under ``key`` is gone from the storage: drop it (its parts stay recorded)."""
        with self._transaction() as db:
            for (size,) in db.execute(
                "DELETE FROM entries WHERE key = ? RETURNING size", (key,)
            ).fetchall():
                db.execute("UPDATE totals SET bytes = bytes - ? WHERE id = 0", (size,))
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

    def flush(self) -> list[str]:
        """Write the uses remembered in memory; returns the holders touched that are not recorded."""
        with self._lock:
            entries, self._entries = self._entries, {}
            holders, self._holders = self._holders, {}
        if not entries and not holders:
            return []
        unknown = []
        with self._transaction() as db:
            db.executemany(_TOUCH_ENTRY, [(when, key) for key, when in entries.items()])
            for holder, when in holders.items():
                if not db.execute(_TOUCH_HOLDER, (when, holder)).rowcount:
                    unknown.append(holder)
        return unknown


def _close(db: sqlite3.Connection, pid: int) -> None:
    if pid == os.getpid():
        db.close()


class _Transaction:
    """``with index._transaction() as db:`` — the lock and ``BEGIN IMMEDIATE``…``COMMIT``."""

    def __init__(self, lock: threading.Lock, db: sqlite3.Connection) -> None:
        self.lock = lock
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind: type | None, *_: object) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.lock.release()


def _decref(db: sqlite3.Connection, keys: Iterable[str]) -> list[str]:
    """Drop one reference from each entry; those left unreferenced are freed, with their parts."""
    freed: list[str] = []
    todo = list(keys)
    while todo:
        key = todo.pop()
        rows = db.execute(
            "UPDATE entries SET refs = refs - 1 WHERE key = ? RETURNING refs, size", (key,)
        ).fetchall()
        if not rows or rows[0][0] > 0:
            continue
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        db.execute("UPDATE totals SET bytes = bytes - ? WHERE id = 0", (rows[0][1],))
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
