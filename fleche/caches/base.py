"""What every cache offers, and the maintenance built on it once for all of them.

:class:`CacheBase` declares the operations a cache implements (``save``,
``prepare``, ``load``, ``load_value``, ``contains``, ``evict``, ``query``,
``expand``: the interface of the 0.22 ``BaseCache``) and those it should
override where it can do better than the derived default (``load_result``,
``referenced``, ``gc``, ``now``).  The rest — short digests, pruning,
history, transfer, filtering, tables and the guarded store step — is
derived from those here, so a wrapper that forwards the operations gets
them right without re-implementing them.

Expiry lives in the call record: a call stored with a time to live carries
``metadata["expiry"] = {"ttl": seconds, "expires": epoch seconds}``, so every
process reading the store agrees on when it expires.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest
from ..errors import AmbiguousDigestError, CacheWarning, ReadOnlyError, Rejected, SaveError, warn
from ..storage.base import MIN_PREFIX, needed_length
from .preparing import FinishesPreparedCalls

if TYPE_CHECKING:
    import pandas

    from ..lineage import Lineage
    from ..query import QueryIterator
    from .layered import CacheStack
    from .wrapping import FilteredCache, ReadOnlyCache

__all__ = [
    "EXPIRY",
    "CacheBase",
    "Duration",
    "as_template",
    "expires_at",
    "install_config_reader",
    "is_expired",
    "merge_expansions",
    "seconds",
    "sealed",
]

#: Metadata namespace of a call's expiry: ``{"ttl": seconds, "expires": epoch seconds}``.
EXPIRY = "expiry"

Duration = float | int | datetime.timedelta


def seconds(duration: Duration, what: str = "a duration") -> float:
    """``duration`` (seconds or a ``timedelta``) as a non-negative number of seconds."""
    if isinstance(duration, datetime.timedelta):
        value = duration.total_seconds()
    elif isinstance(duration, int | float) and not isinstance(duration, bool):
        value = float(duration)
    else:
        raise TypeError(
            f"{what} must be seconds or a datetime.timedelta, not {type(duration).__name__}"
        )
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{what} must be zero or positive seconds; got {duration!r}")
    return value


def expires_at(record: Call) -> float | None:
    """When a stored call expires (epoch seconds), or ``None`` if it never does."""
    entry = record.metadata.get(EXPIRY)
    return None if entry is None else entry.get("expires")


def is_expired(record: Call, now: float) -> bool:
    """Whether a stored call has expired by ``now``."""
    return entry_expired(record.metadata.get(EXPIRY), now)


def entry_expired(entry: Mapping[str, Any] | None, now: float) -> bool:
    """Whether a call's expiry entry (its :data:`EXPIRY` metadata, or ``None``) has passed by ``now``."""
    if entry is None:
        return False
    expires = entry.get("expires")
    return expires is not None and expires <= now


def stamp_expiry(
    metadata: Mapping[str, Mapping[str, Any]], now: float, ttl: float | None
) -> Mapping[str, Mapping[str, Any]]:
    """``metadata`` with its absolute expiry filled in.

    A ``ttl`` already in the metadata (from ``@fleche(ttl=...)``) wins over
    the cache's ``ttl``; an ``expires`` already there is kept as it is (a
    copied record keeps the expiry it was stored with).
    """
    entry = metadata.get(EXPIRY)
    if entry is not None:
        if "expires" in entry or entry.get("ttl") is None:
            return metadata
        ttl = entry["ttl"]
    elif ttl is None:
        return metadata
    return {**metadata, EXPIRY: {"ttl": ttl, "expires": now + ttl}}


def merge_expansions(key: Digest | str, attempts: Iterable[Callable[[], Digest]]) -> Digest:
    """The one full digest several stores agree a prefix names.

    Each attempt is one store's ``expand``; ``KeyError`` if none knows the
    prefix, :class:`AmbiguousDigestError` (with every candidate) if they
    name different things or one of them is ambiguous.
    """
    found: set[Digest] = set()
    candidates: list[str] = []
    for attempt in attempts:
        try:
            found.add(attempt())
        except KeyError:
            pass
        except AmbiguousDigestError as err:
            candidates.extend(err.candidates)
    if candidates or len(found) > 1:
        everything = sorted(set(candidates) | found)
        raise AmbiguousDigestError(str(key), everything, needed_length(everything))
    if not found:
        raise KeyError(f"no stored call or value starts with {str(key)!r}")
    return found.pop()


def as_template(template: QueryCall | None, fields: Mapping[str, Any]) -> QueryCall | None:
    """The template of ``query(template, **fields)``: the 0.22 keywords are :class:`QueryCall` fields."""
    if not fields:
        return template
    if template is None:
        return QueryCall(**fields)
    return dataclasses.replace(template, **fields)


def sealed(
    record: DigestedCall | Call, arguments: Mapping[str, Any] | None, key: Digest | None
) -> tuple[DigestedCall, Mapping[str, Any], Digest]:
    """The arguments of ``prepare``, also from the 0.22 form ``prepare(call)`` (a plain call)."""
    if arguments is not None and key is not None:
        return record, arguments, key  # type: ignore[return-value]
    return record.digested(), record.arguments, record.key()


#: Builds a cache from a configuration table; installed by :mod:`fleche.config`.
_CONFIG_READER: list[Callable[[Any], CacheBase]] = []


def install_config_reader(reader: Callable[[Any], CacheBase]) -> None:
    """Let :meth:`CacheBase.from_config` build caches (the configuration layer sits above)."""
    _CONFIG_READER[:] = [reader]


def where_stored(storage: Any) -> str:
    """Where a storage keeps its entries, for messages: its root, its URL or its kind."""
    for name in ("root", "url"):
        value = getattr(storage, name, None)
        if value is not None:
            return str(value)
    return type(storage).__name__


#: Words of a pickling error about a function pickle finds only by name.
_UNNAMED_FUNCTION = ("<lambda>", "<locals>", "local object")
_CLOUDPICKLE_HINT = (
    'a lambda or a function defined inside another pickles with serializer="cloudpickle" '
    "(pip install 'fleche[cloudpickle]')"
)


def _cause(err: BaseException) -> str:
    """The failure in words (a :class:`SaveError` already names its part), hinting at cloudpickle where it helps."""
    text = str(err) if isinstance(err, SaveError) else f"{type(err).__name__}: {err}"
    if any(word in text for word in _UNNAMED_FUNCTION):
        text += f"; {_CLOUDPICKLE_HINT}"
    return text


#: A medium that refuses every write: one warning per cache and cause every 30 s.
_MEDIUM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_QUIET_SECONDS = 30.0
_quiet_until: dict[tuple[int, str, int], float] = {}


def _quieting(cache: Any, err: BaseException) -> str | None:
    """What to add to the warning about ``err`` (``""`` usually), or ``None`` to stay silent.

    A full disk, a quota or a read-only mount fails every save in a row; the
    user hears of it once, then again every 30 s while it lasts.
    """
    cause: BaseException | None = err
    while cause is not None and not (
        isinstance(cause, OSError) and cause.errno in _MEDIUM_ERRNOS
    ):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return ""
    key, now = (id(cache), str(cache), cause.errno), time.monotonic()
    if now < _quiet_until.get(key, 0.0):
        return None
    _quiet_until[key] = now + _QUIET_SECONDS
    return f" (the same failure is not reported again for {_QUIET_SECONDS:.0f} s)"


class CacheBase(FinishesPreparedCalls, ABC):
    """The interface of every cache: :class:`~fleche.caches.Cache` and its compositions.

    Capabilities are declared: ``read_only`` (writes raise
    :class:`~fleche.errors.ReadOnlyError`) and ``persistent`` (something
    outlives the process).  ``BaseCache`` is its 0.22 name.  Compositions
    take any object with this interface as a member, subclass or not.
    """

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | list[Any]) -> CacheBase:
        """The cache a configuration table describes (see :func:`fleche.config.cache_from_config`)."""
        return _CONFIG_READER[0](config)

    def __str__(self) -> str:
        """A short name for messages: the kind of cache and where it stores."""
        return type(self).__name__

    @property
    def read_only(self) -> bool:
        """Whether writes raise :class:`~fleche.errors.ReadOnlyError`."""
        return False

    @property
    def persistent(self) -> bool:
        """Whether stored calls outlive this process."""
        return False

    # -- what a cache implements -----------------------------------------------

    def now(self) -> float:
        """The current time (epoch seconds) by this cache's clock; injected in tests."""
        return time.time()

    @abstractmethod
    def save(self, call: Call | LazyCall) -> Digest:
        """Store every value of ``call`` and then its record; returns the call key.

        A :class:`~fleche.call.LazyCall` (e.g. from another cache) is stored
        under the digests it already has, without digesting its values again.
        """

    @abstractmethod
    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        """Store the arguments of a call about to run and seal its key.

        The argument values stay pinned against :meth:`gc` until the
        returned call is committed or abandoned.  ``prepare(call)`` with a
        plain :class:`~fleche.call.Call` (the 0.22 form) digests it here.
        """

    @abstractmethod
    def load(self, key: Digest | str) -> LazyCall:
        """The call stored under ``key`` (full or short); values load on access.

        An expired call is a ``KeyError``, like a missing one.
        """

    def load_result(self, key: Digest | str) -> Any:
        """The result of the call under ``key``; ``KeyError`` if none (or expired).

        The decorator's hit path.  Derived from :meth:`load`; a cache that
        can read a result without its record overrides it.
        """
        return self.load(key).result

    @abstractmethod
    def load_value(self, key: Digest | str) -> Any:
        """The value stored under ``key`` (full or short)."""

    @abstractmethod
    def contains(self, key: Digest | str) -> bool:
        """Whether a call that has not expired is stored under ``key``."""

    @abstractmethod
    def evict(self, key: Digest | str) -> None:
        """Remove the call under ``key``; ``KeyError`` if none.  Its values stay until :meth:`gc`."""

    @abstractmethod
    def query(
        self, template: QueryCall | None = None, *, expired: bool = False, **fields: Any
    ) -> QueryIterator:
        """Stored calls matching ``template`` (all without one), lazily.

        Keywords are :class:`~fleche.call.QueryCall` fields, e.g.
        ``query(name="simulate")`` (the 0.22 form).  Expired calls are left
        out unless ``expired`` is true (maintenance).
        """

    @abstractmethod
    def expand(self, key: Digest | str) -> Digest:
        """The full digest a prefix names among calls and values together.

        ``KeyError`` if it names nothing, :class:`AmbiguousDigestError` if it
        names several things.
        """

    def referenced(self) -> set[Digest]:
        """Every value digest some stored call refers to, with the children of containers.

        Derived from :meth:`query`: the argument and result digests of every
        call it yields, without children of containers; a cache that stores
        containers in parts, or hides expired calls, overrides it.
        """
        live: set[Digest] = set()
        for call in self.query():
            live.update(call.digested_call.values())
        return live

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
        """Remove values no stored call refers to; returns their keys.

        Values of calls in flight in this process are kept; values written
        less than ``grace`` seconds ago (where the storage knows when) are
        kept too, for calls in flight in other processes.  With ``dry_run``
        nothing is removed.  A cache without a value storage of its own (the
        default here, e.g. one written against the 0.22 interface) raises
        :class:`~fleche.errors.Rejected`.
        """
        raise Rejected(f"{self} cannot collect garbage: it has no value storage of its own")

    # -- derived once for every cache --------------------------------------------

    def save_guarded(
        self,
        store: Callable[[], Any],
        key: str | None = None,
        *,
        what: str = "store the call",
        then: str = "the result is returned uncached",
    ) -> Any:
        """Run a store step; on failure warn (:class:`CacheWarning`) and return ``None``.

        The single place where fleche trades caching for the user's result:
        backends raise, this decides.  Only ``Exception`` is caught, so an
        interrupt still interrupts.  The warning says "fleche could not
        ``what`` (call ``key``): the cause; ``then``", points at the user's
        line, and suggests cloudpickle when a lambda or a local function
        could not be pickled.
        """
        try:
            return store()
        except Exception as err:
            quiet = _quieting(self, err)
            if quiet is None:
                return None  # said a moment ago: a full or read-only disk fails every call
            where = f" (call {key[:12]})" if key else ""
            warn(f"fleche could not {what}{where}: {_cause(err)}; {then}{quiet}", CacheWarning)
            return None

    def shrink(self, *keys: Digest | str) -> Digest | tuple[Digest, ...]:
        """The shortest prefix (at least 4 characters) naming ``key`` among calls and values.

        Several keys give a tuple of prefixes, one each.
        """
        if len(keys) != 1:
            return tuple(self._shrink(key) for key in keys)
        return self._shrink(keys[0])

    def _shrink(self, key: Digest | str) -> Digest:
        key = self.expand(key)
        for length in range(MIN_PREFIX, DIGEST_LENGTH):
            try:
                if self.expand(key[:length]) == key:
                    return Digest(key[:length])
            except AmbiguousDigestError:
                continue
        return key

    def filter(self, predicate: Callable[[LazyCall], bool] | QueryCall) -> FilteredCache:
        """This cache showing only the calls ``predicate`` accepts (a function or a template)."""
        from .wrapping import FilteredCache

        return FilteredCache(self, predicate)

    def transfer(
        self,
        target: CacheBase,
        template: QueryCall | bool | None = None,
        overwrite: bool = False,
        *,
        pop: bool = False,
    ) -> int:
        """Copy the calls matching ``template`` (all without one), with their values, into ``target``.

        Calls ``target`` already holds are skipped unless ``overwrite``;
        with ``pop`` the copied calls are evicted here.  Values are copied
        under the digests they have, not digested again.  Returns how many
        calls were copied.  A bool in second place is ``pop``, as in the
        0.22 signature ``transfer(other, pop=False, overwrite=False)``.
        """
        if isinstance(template, bool):
            template, pop = None, template
        return self.query(template).transfer(target, pop=pop, overwrite=overwrite)

    def readonly(self) -> ReadOnlyCache:
        """This cache, readable but never written."""
        from .wrapping import ReadOnlyCache

        return ReadOnlyCache(self)

    def push(self, cache: CacheBase) -> CacheStack:
        """``cache`` stacked in front of this one: it is read first and written too."""
        from .layered import CacheStack

        return CacheStack((cache, self))

    def table(
        self,
        arguments: Any = None,
        results: bool | None = None,
        shrink_keys: bool | None = None,
        *,
        values: bool | None = None,
    ) -> pandas.DataFrame:
        """Every stored call as a row; see :meth:`fleche.query.QueryIterator.table`."""
        return self.query().table(arguments, results, shrink_keys, values=values)

    def prune(
        self,
        older_than: Duration | None = None,
        func: Any = None,
        *,
        expired: bool | None = None,
        dry_run: bool = False,
    ) -> list[Digest]:
        """Remove the calls matching every criterion given; returns their keys.

        Parameters
        ----------
        older_than
            Calls stored more than this long ago (seconds or a ``timedelta``).
        func
            Calls of this function: a decorated function, a plain one, or its
            (qualified) name as a string.
        expired
            ``True``: only expired calls; ``False``: only live ones.  With no
            criterion at all, ``prune()`` removes the expired calls.
        dry_run
            Only report what would be removed.

        Values of removed calls stay until :meth:`gc`.
        """
        if older_than is None and func is None and expired is None:
            expired = True
        now = self.now()
        cutoff = None if older_than is None else now - seconds(older_than, "older_than")
        template, wanted = _function_filter(func)
        doomed = []
        for call in self.query(template, expired=True):
            record = call.digested_call
            if cutoff is not None and not record.created < cutoff:
                continue
            if wanted is not None and not wanted(record):
                continue
            if expired is not None and is_expired(record, now) != expired:
                continue
            doomed.append(call.key())
        if not dry_run:
            for key in doomed:
                try:
                    self.evict(key)
                except KeyError:
                    pass  # removed meanwhile
        return doomed

    def history(self, func: Any = None) -> pandas.DataFrame:
        """Every stored call (expired ones too), oldest first, with its timestamps.

        Columns: ``key``, ``function``, the argument and result digests,
        ``created``, ``expires`` (``NaT`` if never), ``expired`` and the
        metadata columns.  No value is loaded.
        """
        import pandas

        template, wanted = _function_filter(func)
        now = self.now()
        query = self.query(template, expired=True)
        if wanted is not None:
            query = query.filter(lambda call: wanted(call.digested_call))
        table = query.table(values=False)
        if table.empty:
            return pandas.DataFrame(
                columns=["key", "function", "result", "created", "expires", "expired"]
            )
        column = f"{EXPIRY}.expires"
        ends = table[column] if column in table else pandas.Series(float("nan"), index=table.index)
        table["expires"] = pandas.to_datetime(ends, unit="s")
        table["expired"] = (ends <= now).fillna(False).astype(bool)
        return table.sort_values("created", kind="stable").reset_index(drop=True)

    def lineage(
        self,
        key: Digest | str,
        *,
        used_by: bool = False,
        depth: int | None = None,
        summaries: bool = True,
    ) -> Lineage:
        """Which calls produced the value or call ``key`` (or, with ``used_by``, used it).

        See :func:`fleche.lineage.lineage`.
        """
        from ..lineage import lineage

        return lineage(self, key, used_by=used_by, depth=depth, summaries=summaries)


def _function_filter(func: Any) -> tuple[QueryCall | None, Callable[[DigestedCall], bool] | None]:
    """A template (pushed down to the storage) and a check for the calls of ``func``."""
    if func is None:
        return None, None
    if isinstance(func, str):
        return None, lambda record: func in (record.name, record.qualified_name)
    name = getattr(func, "name", None) if hasattr(func, "prefix") else None  # a CachedFunction
    if name is not None:
        module = None if "module" in getattr(func, "unkeyed", frozenset()) else func.module
        return QueryCall(name=name, module=module), None
    try:
        return QueryCall(name=func.__qualname__, module=func.__module__), None
    except AttributeError:
        raise TypeError(
            f"func= takes a function or a function name, not {type(func).__name__}"
        ) from None


class RefusingWrites:
    """Mixin for read-only caches: every write raises, ``gc`` only reports.

    Put it in front of a cache class (``class Frozen(RefusingWrites, Cache)``);
    ``ReadOnlyMixin`` is its 0.22 name.  A class may say why through
    :meth:`_refuse` and what a dry ``gc`` would collect through :meth:`_garbage`.
    """

    @property
    def read_only(self) -> bool:
        """Always ``True``: this cache is never written."""
        return True

    def _refuse(self, what: str) -> ReadOnlyError:
        """The error a refused write raises; says why and what to do instead."""
        return ReadOnlyError(f"cannot {what}: {self} is read-only")

    def _garbage(self, grace: Duration | None) -> set[Digest]:
        """What ``gc`` would remove (the class this mixin is put in front of, asked dry)."""
        return super().gc(True, grace=grace)  # type: ignore[misc]

    def save(self, call: Call | LazyCall) -> Digest:
        """Refused: raises :class:`~fleche.errors.ReadOnlyError`."""
        raise self._refuse("store a call")

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        """Refused: raises :class:`~fleche.errors.ReadOnlyError`."""
        raise self._refuse(f"store the call {sealed(record, arguments, key)[2][:12]}")

    def evict(self, key: Digest | str) -> None:
        """Refused: raises :class:`~fleche.errors.ReadOnlyError`."""
        raise self._refuse(f"evict {str(key)[:12]}")

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
        """What garbage collection would remove; only ``dry_run=True`` is allowed."""
        if not dry_run:
            raise self._refuse("collect garbage (dry_run=True only reports)")
        return self._garbage(grace)
