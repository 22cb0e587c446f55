"""Call records in SQL: SQLite (embedded, the default) or PostgreSQL, through SQLAlchemy.

``Sql(url="runs/calls.db")`` keeps the records in a SQLite file;
``Sql(url="postgresql+psycopg://user@host/db")`` on a server a team or a
cluster shares.  Short digests are index range scans and templates are
answered by set-based SQL.  The tables are in :mod:`.sql_schema`, the
per-process connections in :mod:`.sql_connection`, templates as SQL in
:mod:`.sql_query`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from ..call import Call, DigestedCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest
from ..errors import CorruptEntryWarning, warn
from . import sql_scan
from .base import CallMixin, CallStorage
from .leases import LeaseBackend
from .redaction import redact_url
from .sql_connection import Runtime, resolve_url
from .sql_leases import sql_leases
from .sql_maintenance import Finding, audit, convert_legacy_metadata
from .sql_metadata import join_metadata
from .sql_query import (
    argument_joins,
    batched,
    call_conditions,
    metadata_condition,
    normalize_value,
)
from .sql_schema import PAGE, PREFIX_PAGE, ROW_COLUMNS, calls, decode_row, encode_record
from .sql_seal import broken_seal, seal
from .sql_values import SmallValueTable

if TYPE_CHECKING:  # loaded on first use, by __getattr__ below
    from .sql_models import ArgumentModel, CallModel, MetaModel

__all__ = ["ArgumentModel", "CallModel", "MetaModel", "Sql"]

#: Keys per ``IN (...)`` when records are loaded in bulk.
_CHUNK = 500

_OPEN_LOCK = threading.Lock()
#: This process's id, kept here: ``os.getpid()`` is a system call, and every operation checks it.
_pid = os.getpid()


def _forked() -> None:
    global _OPEN_LOCK, _pid
    _OPEN_LOCK, _pid = threading.Lock(), os.getpid()


os.register_at_fork(after_in_child=_forked)


def _remove(path: str, pid: int) -> None:
    if pid == os.getpid():
        shutil.rmtree(path, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Sql(sql_scan.Scanning, CallStorage):
    """Call records in a SQL database, queried with indexed set-based SQL.

    Parameters
    ----------
    url
        A SQLAlchemy URL (``sqlite:///runs/calls.db``,
        ``postgresql+psycopg://user@host/db``) or a bare file path for
        SQLite; ``None`` (or an in-memory SQLite URL) is a private scratch
        database that lives as long as this object.
    echo
        Log every statement SQLAlchemy runs.

    Each process opens its own engine (re-created after a fork) and each
    thread its own connection; pickling keeps ``url`` and ``echo`` only.
    SQLite runs in WAL mode and waits up to 30 s for a lock, so many
    threads and processes of one machine may write at once; WAL needs a
    local disk, so a store shared across machines belongs on PostgreSQL.
    Its log is copied into the database by a background thread
    (:mod:`.sql_connection`), not by the commit that fills it.
    """

    url: str | None = None
    echo: bool = False
    #: This process's runtime, scratch directory, leases and small-values table.
    _box: list[Any] = dataclasses.field(
        default_factory=lambda: [None] * 4, init=False, repr=False, compare=False
    )

    persistent = True
    supports_prefix_range = True
    supports_query_pushdown = True

    def __post_init__(self) -> None:
        self._runtime()  # fail early on a bad URL, an unreachable server or a newer schema

    def __repr__(self) -> str:
        url = None if self.url is None else redact_url(self.url)
        return f"{type(self).__qualname__}(url={url!r}, echo={self.echo!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "echo": self.echo}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_box", [None] * 4)

    # -- connections -----------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's SQLAlchemy engine."""
        return self._runtime().engine

    @property
    def session(self) -> Callable[[], contextlib.AbstractContextManager[Connection]]:
        """Opens a connection in a transaction for one operation: ``with sql.session() as c: ...``."""
        return self._runtime().engine.begin

    def _runtime(self) -> Runtime:
        runtime = self._box[0]
        if runtime is not None and runtime.pid == _pid:
            return runtime
        with _OPEN_LOCK:
            runtime = self._box[0]
            if runtime is None or runtime.pid != _pid:
                url, where = resolve_url(self.url, self._scratch)
                runtime = self._box[0] = Runtime(url, where, self.echo)
        return runtime

    def _scratch(self) -> Path:
        """The file of this object's private database (made on first use, removed with it)."""
        if self._box[1] is None:
            path = tempfile.mkdtemp(prefix="fleche-sql-")
            weakref.finalize(self, _remove, path, os.getpid())
            self._box[1] = path
        return Path(self._box[1]) / "calls.db"

    def leases(self) -> LeaseBackend | None:
        """Byte locks beside a SQLite file, else a table of the database (chosen once per process).

        See :func:`~fleche.storage.sql_leases.sql_leases`.  Kept weakly:
        table leases refer to their store, and a cycle would hold its connections.
        """
        made = self._box[2]  # (pid, weak reference)
        leases = made[1]() if made is not None and made[0] == _pid else None
        if leases is None:
            leases = sql_leases(self)
            if leases is not None:
                self._box[2] = (_pid, weakref.ref(leases))
        return leases

    def small_values(self) -> SmallValueTable:
        """The table of small values in this database: where a value storage may keep them."""
        runtime = self._box[0]
        if runtime is None or runtime.pid != _pid:  # _runtime(), without a call once open
            runtime = self._runtime()
        made = self._box[3]  # kept here, not by the runtime: no cycle to hold its connections
        if made is None or made.runtime is not runtime:
            made = self._box[3] = SmallValueTable(runtime)
        return made

    # -- primitives --------------------------------------------------------------

    def put(self, call: Any, key: Digest) -> Digest:
        """Store the record of ``call`` under ``key``: one upsert statement."""
        record = call if type(call) is DigestedCall else call.digested()
        row = encode_record(record, str(key))  # exact str: bound without an adapter lookup
        runtime = self._box[0]
        if runtime is None or runtime.pid != _pid:  # _runtime(), without a call once open
            runtime = self._runtime()
        if runtime.statements.postgres:  # its statement also writes the argument rows
            row["names"] = list(record.arguments)
            row["values"] = [str(v) for v in record.arguments.values()]
        runtime.write(*runtime.statements.save(row))
        return key

    def get(self, key: Digest) -> DigestedCall:
        """The record under a full key; ``KeyError`` if none (or if it is damaged, with a warning)."""
        runtime = self._runtime()
        rows = runtime.read(runtime.statements.load, {"key": key})
        if not rows:
            raise KeyError(key)
        return self._decode(key, rows[0])

    def result_of(self, key: Digest | str, namespace: str) -> tuple[Digest | None, Any]:
        # docstring inherited
        if len(key) != DIGEST_LENGTH:
            key = self.expand(key)
        runtime = self._box[0]
        if runtime is None or runtime.pid != _pid:  # _runtime(), without a call once open
            runtime = self._runtime()
        statements = runtime.statements
        # An exact str, not a Digest: sqlite3 looks up an adapter for a str subclass (CPython
        # 3.11 raises and clears an AttributeError to find none), ~0.6 us a statement.
        rows = runtime.read(
            statements.result_of, {"key": str(key), "namespace": statements.namespace(namespace)}
        )
        if not rows:
            raise KeyError(key)
        result, entries, typed, sealed = rows[0]
        if sealed != seal(key, result):  # a changed or copied result digest: never served
            raise self._damaged(key, broken_seal(result, sealed))
        if (
            type(entries) is str
        ):  # SQLite hands back JSON text ("null" if absent); psycopg decodes it
            entries = None if entries == "null" else json.loads(entries)
        if typed is not None:  # some entry JSON cannot hold: put them back
            document = {} if entries is None else {namespace: entries}
            try:
                entries = join_metadata(document, typed).get(namespace)
            except Exception as err:
                raise self._damaged(key, err) from err
        return (None if result is None else Digest(result)), entries

    @classmethod
    def _decode(cls, key: str, row: tuple[Any, ...]) -> DigestedCall:
        try:
            return decode_row(key, row)
        except Exception as err:
            raise cls._damaged(key, err) from err

    @staticmethod
    def _damaged(key: str, err: Exception) -> KeyError:
        """Warn that the record under ``key`` cannot be read; the ``KeyError`` to raise for it."""
        warn(
            f"the call record {key} in the SQL store cannot be read ({type(err).__name__}: {err}); "
            "treating it as missing (it is rewritten when the call is saved again)",
            CorruptEntryWarning,
        )
        return KeyError(key)

    def _contains(self, key: Digest) -> bool:
        runtime = self._runtime()
        return bool(runtime.read(runtime.statements.contains, {"key": key}))

    def _evict(self, key: Digest) -> None:
        runtime = self._runtime()
        # The argument rows go with it (ON DELETE CASCADE).
        if not runtime.write(runtime.statements.evict, {"key": key}):
            raise KeyError(key)

    def list(self) -> Iterator[Digest]:
        """Every key, in key order, read a page at a time (no connection held between pages)."""
        runtime = self._runtime()
        return runtime.keys(runtime.statements.page, {"after": ""}, PAGE)

    def _prefix_range(self, prefix: str) -> Iterator[Digest]:
        # An index range scan over the primary key; keys are hex, all below 'g'.
        runtime = self._runtime()
        bounds = {"low": prefix, "high": prefix + "g", "after": ""}
        return runtime.keys(runtime.statements.prefix, bounds, PREFIX_PAGE)

    # -- maintenance --------------------------------------------------------------

    def audit(self, fix: bool = False) -> list[Finding]:
        """What ``fleche verify`` cannot see by loading records (see :mod:`.sql_maintenance`).

        Argument-index rows left by a record deleted by hand (removed when
        ``fix``), and records whose metadata an older fleche pickled
        (reported only: see :meth:`convert_legacy_metadata`).
        """
        return audit(self.session, fix)

    def convert_legacy_metadata(self, unpickle: bool) -> int:
        """Rewrite the records whose metadata an older fleche pickled; returns how many.

        fleche never unpickles what it reads from a store, so such records
        load without those metadata entries.  ``unpickle=True`` converts the
        pickles to typed JSON: it runs whatever code they name, so only do
        it for a store whose every writer you trust.  ``unpickle=False``
        drops them.
        """
        return convert_legacy_metadata(self.session, unpickle)

    # -- the domain ---------------------------------------------------------------

    # Saves and loads go through put/get as in CallMixin; the spec keeps Sql's base CallStorage.
    save = CallMixin.save
    save_keyed = put  # the miss path's save is the upsert itself: no operation context wraps it
    load = CallMixin.load

    # -- queries ------------------------------------------------------------------

    @staticmethod
    def _normalize_value(value: Any) -> str:
        """The stored form of an argument or result value: its hex digest."""
        return normalize_value(value)

    def _build_call_conditions(self, template: QueryCall) -> list[Any]:
        """Conditions on the ``calls`` row itself: function identity and result."""
        return call_conditions(template)

    def _apply_argument_filters(
        self, statement: Any, arguments_template: dict[str, Any] | None
    ) -> Any:
        """``statement`` joined with the argument index once per templated argument."""
        return argument_joins(statement, arguments_template)

    def _apply_metadata_filters(
        self, statement: Any, meta_specs: dict[str, dict[str, Any]] | None
    ) -> Any:
        """``statement`` narrowed to calls whose metadata may match (see :mod:`.sql_query`)."""
        postgres = not self._runtime().sqlite
        for namespace, entries in (meta_specs or {}).items():
            condition = metadata_condition(namespace, entries, postgres)
            if condition is not None:
                statement = statement.where(condition)
        return statement

    def _matching(self, template: QueryCall, *columns: Any) -> Any:
        """``columns`` of the calls that may match ``template``, in key order."""
        statement = select(*columns).where(*self._build_call_conditions(template))
        statement = self._apply_argument_filters(statement, template.arguments)
        statement = self._apply_metadata_filters(statement, template.metadata)
        return statement.order_by(calls.c.key)

    def query(self, template: QueryCall | Call) -> Iterator[DigestedCall]:
        """The records matching ``template``, found by SQL and checked exactly.

        ``template`` is a :class:`QueryCall`, or a :class:`Call` whose
        ``None`` fields (and empty metadata) are wildcards.

        One statement selects the matching records (argument filters as
        joins on the argument index, metadata filters as JSON expressions),
        up to ``_CHUNK`` of them; past that, the keys of the others are
        listed and their records read ``_CHUNK`` at a time by primary key, so
        the number of statements does not grow with the number of calls
        stored and no connection stays open while the caller iterates.
        Every record is finally checked with :meth:`QueryCall.matches`, so
        the answer is exactly that of a scan.
        """
        template = QueryCall.from_template(template).digested()
        if sql_scan.shaped(template):
            yield from self._scanned(template)
            return
        engine = self.engine
        with engine.connect() as connection:
            rows = connection.execute(
                self._matching(template, calls.c.key, *ROW_COLUMNS).limit(_CHUNK + 1)
            ).all()
        yield from self._matches(template, rows[:_CHUNK])
        if len(rows) <= _CHUNK:
            return
        rest = self._matching(template, calls.c.key).where(calls.c.key > rows[_CHUNK - 1][0])
        with engine.connect() as connection:
            keys = connection.execute(rest).scalars().all()
        for chunk in batched(keys, _CHUNK):
            load = (
                select(calls.c.key, *ROW_COLUMNS)
                .where(calls.c.key.in_(chunk))
                .order_by(calls.c.key)
            )
            with engine.connect() as connection:
                rows = connection.execute(load).all()
            yield from self._matches(template, rows)

    def _matches(self, template: QueryCall, rows: Any) -> Iterator[DigestedCall]:
        """The records of ``rows`` (key first, then :data:`ROW_COLUMNS`) that match ``template``."""
        for key, *row in rows:
            try:
                record = self._decode(key, tuple(row))
            except KeyError:
                continue
            if template.matches(record):
                yield record


def __getattr__(name: str) -> Any:
    # The ORM classes are loaded when first named: opening a store never pays for the ORM.
    if name in ("CallModel", "ArgumentModel", "MetaModel"):
        from . import sql_models

        return getattr(sql_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
