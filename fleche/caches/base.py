"""What every cache offers: the abstract cache and the operations derived from it.

:class:`CacheBase` declares the operations a cache implements (``save``,
``prepare``, ``load``, ``load_value``, ``contains``, ``evict``, ``query``,
``expand``: the interface of the 0.22 ``BaseCache``) and those it should
override where it can do better than the derived default (``load_result``,
``referenced``, ``gc``, ``now``).  The rest — short digests, pruning,
history, lineage, transfer, filtering, tables and the guarded store step —
is derived from those, so a wrapper that forwards the operations gets them
right without re-implementing them.  The work of the longer ones lives
beside this module and uses only the interface: pruning and history in
:mod:`.maintenance`, lineage in :mod:`.provenance`, the wording of failed
stores in :mod:`.messages`; expiry arithmetic in :mod:`fleche.expiry`.  The
normal forms of :mod:`.forms` (``as_template``, ``sealed``,
``merge_expansions``), which every implementation needs, are importable
from here too.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest
from ..errors import AmbiguousDigestError, Rejected
from ..expiry import Duration
from ..storage.base import MIN_PREFIX
from ..storage.leases import LeaseBackend
from . import maintenance, provenance
from .forms import as_template, merge_expansions, sealed
from .preparing import FinishesPreparedCalls

if TYPE_CHECKING:
    import pandas

    from ..query import QueryIterator
    from ..storage.sql_newest import NewestFirst
    from .lineage import Lineage

__all__ = [
    "CacheBase",
    "as_template",
    "install_composition",
    "install_config_reader",
    "merge_expansions",
    "sealed",
]


#: The compositions behind :meth:`CacheBase.filter`, ``readonly`` and ``push``, by
#: method name; installed by the modules defining them, which build on this one.
_COMPOSITIONS: dict[str, Callable[..., CacheBase]] = {}


def install_composition(method: str, build: Callable[..., CacheBase]) -> None:
    """Let :class:`CacheBase` ``method`` (``"filter"``, ``"readonly"``, ``"push"``) return ``build(...)``."""
    _COMPOSITIONS[method] = build


#: Builds a cache from a configuration table; installed by :mod:`fleche.config`.
_CONFIG_READER: list[Callable[[Any], CacheBase]] = []


def install_config_reader(reader: Callable[[Any], CacheBase]) -> None:
    """Let :meth:`CacheBase.from_config` build caches (the configuration layer sits above)."""
    _CONFIG_READER[:] = [reader]


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

    def leases(self) -> LeaseBackend | None:
        """Where the processes sharing this cache record who computes a missed call.

        A capability (see :mod:`fleche.storage.leases`): ``None`` means only
        the threads of one process are kept from computing a call twice.
        Compositions forward it from the member a decorated call writes to.
        """
        return None

    def newest_first(self) -> NewestFirst | None:
        """Windows of the stored calls newest first, cut by the store; ``None`` by default.

        A capability for browsing (``fleche ui``), forwarded from the call
        storage (:meth:`~fleche.storage.bulk_reads.BulkReads.newest_first`)
        by a plain :class:`~fleche.caches.Cache`.
        """
        return None

    def __len__(self) -> int:
        """How many calls that have not expired are stored (counted by the store where it can)."""
        return self.query().count()

    def __bool__(self) -> bool:
        # A cache is a cache, stored calls or not (``__len__`` must not make an empty one false).
        return True

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

    def filter(self, predicate: Callable[[LazyCall], bool] | QueryCall) -> CacheBase:
        """This cache showing only the calls ``predicate`` accepts (a function or a template): a :class:`~fleche.caches.FilteredCache`."""
        return _COMPOSITIONS["filter"](self, predicate)

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

    def readonly(self) -> CacheBase:
        """This cache, readable but never written: a :class:`~fleche.caches.ReadOnlyCache`."""
        return _COMPOSITIONS["readonly"](self)

    def push(self, cache: CacheBase) -> CacheBase:
        """``cache`` stacked in front of this one, read first and written too: a :class:`~fleche.caches.CacheStack`."""
        return _COMPOSITIONS["push"]((cache, self))

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
        return maintenance.prune(self, older_than, func, expired=expired, dry_run=dry_run)

    def history(self, func: Any = None) -> pandas.DataFrame:
        """Every stored call (expired ones too), oldest first, with its timestamps.

        Columns: ``key``, ``function``, the argument and result digests,
        ``created``, ``expires`` (``NaT`` if never), ``expired`` and the
        metadata columns.  No value is loaded.
        """
        return maintenance.history(self, func)

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
        return provenance.lineage(self, key, used_by=used_by, depth=depth, summaries=summaries)
