"""Checks and repairs of a SQL call store that reading its records cannot see.

``fleche verify`` reads every record through the storage API; what it
cannot see from there is found here: argument-index rows whose record is
gone (a ``calls`` row deleted by hand while what keeps the index was off: the
SQLite store's triggers, PostgreSQL's foreign key) and
records that still hold metadata an older fleche pickled (schema 1).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.engine import Connection

from ..digest import Digest
from ..errors import FlecheWarning, SaveError
from .sql_metadata import merge_metadata, split_metadata
from .sql_schema import arguments, calls, expiry_column

__all__ = ["ORPHAN_ARGUMENTS", "PICKLED_METADATA", "Finding", "audit", "convert_legacy_metadata"]

ORPHAN_ARGUMENTS = "orphan argument rows"
PICKLED_METADATA = "pickled metadata"
_PAGE = 500

Session = Callable[[], AbstractContextManager[Connection]]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One inconsistency of the tables: the key it concerns, what, why, and whether it was repaired."""

    key: Digest | None
    kind: str
    detail: str
    fixable: bool
    fixed: bool = False


def _key(text: str) -> Digest | None:
    try:
        return Digest(text)
    except (TypeError, ValueError):
        return None


def audit(session: Session, fix: bool = False) -> list[Finding]:
    """Orphan argument rows (removed when ``fix``) and records with pickled metadata (reported)."""
    orphaned = ~exists().where(calls.c.key == arguments.c.call_key)
    with session() as connection:
        orphans = connection.execute(
            select(arguments.c.call_key, func.count())
            .where(orphaned)
            .group_by(arguments.c.call_key)
            .order_by(arguments.c.call_key)
        ).all()
        if fix and orphans:
            connection.execute(delete(arguments).where(orphaned))
        # Sorted here: ORDER BY made SQLite walk the key index and look up every row (15x slower).
        pickled = sorted(
            connection.execute(select(calls.c.key).where(calls.c.meta_extra.is_not(None))).scalars()
        )
    findings = [
        Finding(
            _key(key),
            ORPHAN_ARGUMENTS,
            f"{count} argument-index rows of a record that is gone "
            "(deleted by hand with the index's triggers or foreign key off?)",
            fixable=True,
            fixed=fix,
        )
        for key, count in orphans
    ]
    findings += [
        Finding(
            _key(key),
            PICKLED_METADATA,
            "metadata pickled by an older fleche, not read: the record loads without it; "
            "convert with Sql.convert_legacy_metadata(unpickle=True) if you trust the store's "
            "writers, or drop it with unpickle=False",
            fixable=False,
        )
        for key in pickled
    ]
    return findings


def convert_legacy_metadata(session: Session, unpickle: bool) -> int:
    """Rewrite every record with pickled metadata; returns how many were rewritten.

    ``unpickle=True`` unpickles it (this runs whatever code the pickles
    name: only for a store whose every writer you trust) and stores it as
    typed JSON; ``unpickle=False`` drops it.  A record whose unpickled
    metadata has a type the typed encoding refuses is left as it is, with
    a warning naming it.
    """
    converted = 0
    refused: list[str] = []
    for rows in _pickled_pages(session):
        with session() as connection:
            for key, meta, pickled in rows:
                if type(meta) is not dict:
                    meta = json.loads(meta)
                typed, expires = None, expiry_column(meta)
                if unpickle:
                    try:
                        whole = merge_metadata(meta, pickle.loads(pickled))
                        meta, typed = split_metadata(whole)
                    except SaveError as err:
                        refused.append(f"{key}: {err}")
                        continue
                    expires = expiry_column(whole)
                connection.execute(
                    update(calls)
                    .where(calls.c.key == key)
                    .values(meta=meta, meta_typed=typed, meta_extra=None, expires=expires)
                )
                converted += 1
    if refused:
        warnings.warn(
            "these records kept their pickled metadata: " + "; ".join(refused),
            FlecheWarning,
            stacklevel=2,
        )
    return converted


def _pickled_pages(session: Session) -> Iterator[list[Any]]:
    """Rows ``(key, meta, meta_extra)`` still pickled, a page at a time, in key order."""
    after = ""
    while True:
        with session() as connection:
            rows = connection.execute(
                select(calls.c.key, calls.c.meta, calls.c.meta_extra)
                .where(calls.c.meta_extra.is_not(None), calls.c.key > after)
                .order_by(calls.c.key)
                .limit(_PAGE)
            ).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]
