"""Why a call misses: the nearest stored calls of the same function and what differs.

``simulate.explain(300, steps=2000)`` runs nothing.  It says whether the
call is stored; if not, it ranks the stored calls of the same name by how
many things differ from this call, and names each difference exactly: an
argument (with both short digests and a readable summary of both values),
the code digest, the version, the module, or the identity fields left out
of the key.  When no stored call has this function's identity but calls of
the same name exist under another module, version or code, it says so.

Cost: one query by function name (records only), then, for the few nearest
calls, one value load per differing argument to summarise it.
"""

from __future__ import annotations

import dataclasses
import heapq
import reprlib
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .call import DigestedCall, QueryCall
from .digest import Digest
from .errors import CorruptEntryWarning, Indigestible

if TYPE_CHECKING:
    from .caches import Cache
    from .wrapper import CachedFunction

__all__ = ["Difference", "Explanation", "NearMiss", "explain", "summarize"]

#: Outcomes of :func:`explain`.
STORED = "stored"
MISSING = "missing"
DAMAGED = "damaged"
INDIGESTIBLE = "indigestible"

_IDENTITY = ("name", "module", "version", "code", "unkeyed")
_SHORT = 8
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def summarize(value: Any) -> str:
    """A short readable description of a value: its repr, abridged; shape and dtype of arrays, shape and columns of tables."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return f"{type(value).__name__}(shape={shape}, dtype={dtype})"
    columns = getattr(value, "columns", None)
    if isinstance(shape, tuple) and columns is not None:  # a DataFrame: its columns, not its repr
        return f"{type(value).__name__}(shape={shape}, columns={_repr.repr(list(columns))})"
    try:
        return _repr.repr(value)
    except Exception as err:  # a broken __repr__ must not break the explanation
        return f"<{type(value).__name__}: repr failed: {type(err).__name__}>"


@dataclasses.dataclass(frozen=True)
class Difference:
    """One thing that differs between the explained call and a stored one.

    ``field`` is ``"arguments"`` (then ``argument`` names it) or an identity
    field: ``"name"``, ``"module"``, ``"version"``, ``"code"`` or ``"unkeyed"``.
    ``wanted``/``stored`` are the two sides: argument digests (``None`` when
    the argument is absent on that side) or field values.  For arguments,
    ``*_short`` are short digests (the shortest unambiguous prefix where the
    value is stored) and ``*_summary`` readable summaries of the values.
    """

    field: str
    wanted: Any
    stored: Any
    argument: str | None = None
    wanted_short: str = ""
    stored_short: str = ""
    wanted_summary: str = ""
    stored_summary: str = ""

    def __str__(self) -> str:
        if self.field != "arguments":
            return f"{self.field}: {_field(self.field, self.wanted)} here, {_field(self.field, self.stored)} stored"
        if self.wanted is None:
            return f"argument {self.argument!r}: only in the stored call ({self._side('stored')})"
        if self.stored is None:
            return f"argument {self.argument!r}: only in this call ({self._side('wanted')})"
        return f"argument {self.argument!r}: {self._side('wanted')} here, {self._side('stored')} stored"

    def _side(self, side: str) -> str:
        summary, short = getattr(self, f"{side}_summary"), getattr(self, f"{side}_short")
        return f"{summary} [{short}]" if summary else f"[{short}]"


def _field(field: str, value: Any) -> str:
    if field == "code":
        return "no code digest (hash_code=False)" if value is None else f"code {value[:_SHORT]}"
    if field == "unkeyed":
        return (
            "nothing left out of the key" if not value else f"{sorted(value)} left out of the key"
        )
    if field == "version" and value is None:
        return "no version"
    return repr(value)


@dataclasses.dataclass(frozen=True)
class NearMiss:
    """A stored call of the same name and what separates it from the explained call."""

    key: Digest
    short: str
    call: DigestedCall
    differences: tuple[Difference, ...]

    @property
    def distance(self) -> int:
        """How many things differ (identity fields and arguments)."""
        return len(self.differences)

    def __str__(self) -> str:
        n = self.distance
        head = f"call {self.short} ({n} difference{'s' if n != 1 else ''})"
        if n == 0:
            return (
                f"{head}: same function and arguments, stored under another key "
                "(an older key scheme? re-key with cache.calls.transform())"
            )
        return "\n".join([head, *(f"- {d}" for d in self.differences)])


@dataclasses.dataclass(frozen=True)
class Identity:
    """A function identity under which calls of this name are stored, and how many."""

    module: str
    version: str | None
    code: Digest | None
    calls: int

    def __str__(self) -> str:
        code = "" if self.code is None else f", code {self.code[:_SHORT]}"
        version = "" if self.version is None else f", version {self.version!r}"
        return f"{self.module}{version}{code}: {self.calls} call{'s' if self.calls != 1 else ''}"


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Whether a call is stored and, if not, the nearest stored calls.

    ``status`` is ``"stored"``, ``"missing"``, ``"damaged"`` (a record is
    there but it or its result cannot be read: the call would recompute) or
    ``"indigestible"`` (the call cannot be cached; ``detail`` says why).
    ``nearest`` lists the closest stored calls of the same name, best first;
    ``identities`` every module/version/code under which calls of that name
    are stored; ``same_function`` how many of them have this function's
    identity.
    """

    function: str
    status: str
    key: Digest | None = None
    short: str = ""
    arguments: Mapping[str, Digest] = dataclasses.field(default_factory=dict)
    detail: str = ""
    nearest: tuple[NearMiss, ...] = ()
    identities: tuple[Identity, ...] = ()
    same_function: int = 0
    renamed: bool = False

    @property
    def stored(self) -> bool:
        """Whether the call is a hit."""
        return self.status == STORED

    def __str__(self) -> str:
        call = f"{self.function}" + (f" [key {self.short}]" if self.short else "")
        if self.status == STORED:
            return f"{call} is stored: calling it loads the result."
        if self.status == INDIGESTIBLE:
            return f"{call} cannot be cached: {self.detail}"
        if self.status == DAMAGED:
            return f"{call} is stored but cannot be read ({self.detail}); calling it recomputes it."
        lines = [f"{call} is not stored."]
        total = sum(i.calls for i in self.identities)
        if not total:
            lines.append(
                f"No call of {self.function.rsplit('.', 1)[-1]!r} is stored, in any module or version."
            )
            return "\n".join(lines)
        if self.renamed:
            lines.append(
                "No stored call has this name; calls of functions with the same short name:"
            )
        elif not self.same_function:
            lines.append(
                "No call of this function (this module, version and code) is stored, "
                f"but {total} call{'s' if total != 1 else ''} of the same name are, under:"
            )
        if self.renamed or not self.same_function:
            lines.extend(f"  - {identity}" for identity in self.identities)
        lines.append(f"Nearest stored call{'s' if len(self.nearest) != 1 else ''}:")
        for rank, near in enumerate(self.nearest, 1):
            lines.append(f"  {rank}. " + str(near).replace("\n", "\n       "))
        return "\n".join(lines)


def explain(
    function: CachedFunction,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    limit: int = 3,
    load_values: bool = True,
) -> Explanation:
    """Explain whether ``function(*args, **kwargs)`` is stored in its cache, and if not why.

    ``limit`` is how many nearest calls to describe; with ``load_values``
    off, argument summaries are left out and no value is read.
    """
    cache = function.cache
    qualified = f"{function.module}.{function.name}"
    try:
        arguments, digests, key = function._keyed(cache, args, kwargs)
    except Indigestible as err:
        return Explanation(qualified, INDIGESTIBLE, detail=str(err))
    wanted = {name: Digest.from_raw(raw) for name, raw in digests.items()}
    base = {"function": qualified, "key": key, "short": key[:_SHORT], "arguments": wanted}
    if cache.contains(key):
        damage = _damage(cache, key)
        status = DAMAGED if damage else STORED
        return Explanation(status=status, detail=damage, **{**base, "short": _short(cache, key)})

    records, renamed = _same_name(cache, function.name)
    identities = Counter((r.module, r.version, r.code) for r in records)
    compared = list(_compared(function, wanted, records))
    same = sum(1 for _, diffs in compared if all(d.field == "arguments" for d in diffs))
    ranked = heapq.nsmallest(
        limit, ((len(d), -r.created, i, r, d) for i, (r, d) in enumerate(compared))
    )
    nearest = tuple(_near_miss(cache, r, d, arguments, load_values) for *_, r, d in ranked)
    return Explanation(
        status=MISSING,
        nearest=nearest,
        identities=tuple(Identity(m, v, c, n) for (m, v, c), n in identities.most_common()),
        same_function=same,
        renamed=renamed,
        **base,
    )


def _damage(cache: Cache, key: Digest) -> str:
    """Why a stored call would still recompute, or ``""`` if its record and result are there.

    Uses only the cache API (so it works on wrapping and layered caches) and
    never loads the result, which may be large; a value file that is present
    but corrupt is found by :meth:`Cache.verify <fleche.caches.Cache.verify>`.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorruptEntryWarning)
        try:
            record = cache.load(key).digested_call
        except KeyError:
            return "its record is unreadable" if caught else "its record vanished"
    try:
        cache.shrink(record.result)  # KeyError when nothing is stored under the digest
    except KeyError:
        return f"its result value {record.result[:_SHORT]} is missing"
    return ""


def _same_name(cache: Cache, name: str) -> tuple[list[DigestedCall], bool]:
    """Stored records of ``name``; failing that, of functions with the same short name (a scan)."""
    records = [call.digested_call for call in cache.query(QueryCall(name=name))]
    if records:
        return records, False
    short = name.rsplit(".", 1)[-1]
    records = [
        call.digested_call
        for call in cache.query(QueryCall())
        if call.digested_call.name.rsplit(".", 1)[-1] == short
    ]
    return records, bool(records)


def _compared(
    function: CachedFunction, wanted: Mapping[str, Digest], records: Iterable[DigestedCall]
) -> Iterable[tuple[DigestedCall, tuple[Difference, ...]]]:
    for record in records:
        yield (
            record,
            (*_identity_differences(function, record), *_argument_differences(wanted, record)),
        )


def _identity_differences(function: CachedFunction, record: DigestedCall) -> list[Difference]:
    found = []
    for field in _IDENTITY:
        mine, theirs = getattr(function, field), getattr(record, field)
        if field in ("module", "version") and field in function.unkeyed and field in record.unkeyed:
            continue  # left out of both keys: cannot separate them
        if mine != theirs:
            found.append(Difference(field, mine, theirs))
    return found


def _argument_differences(wanted: Mapping[str, Digest], record: DigestedCall) -> list[Difference]:
    stored = record.arguments
    return [
        Difference("arguments", wanted.get(name), stored.get(name), argument=name)
        for name in sorted(wanted.keys() | stored.keys())
        if wanted.get(name) != stored.get(name)
    ]


def _near_miss(
    cache: Cache,
    record: DigestedCall,
    differences: tuple[Difference, ...],
    arguments: Mapping[str, Any],
    load_values: bool,
) -> NearMiss:
    """A ranked record with short digests and value summaries filled in."""
    detailed = []
    for diff in differences:
        if diff.field == "arguments":
            name = diff.argument
            diff = dataclasses.replace(
                diff,
                wanted_short=_short(cache, diff.wanted),
                stored_short=_short(cache, diff.stored),
                wanted_summary=_summary(
                    cache, diff.wanted, arguments.get(name, _ABSENT), load_values
                ),
                stored_summary=_summary(cache, diff.stored, _ABSENT, load_values),
            )
        detailed.append(diff)
    key = record.key()
    return NearMiss(key, _short(cache, key), record, tuple(detailed))


_ABSENT = object()


def _short(cache: Cache, key: Digest | None) -> str:
    """The shortest prefix naming ``key`` in the cache, or its first characters if not stored."""
    if key is None:
        return ""
    try:
        return cache.shrink(key)
    except (KeyError, ValueError):
        return f"{key[:_SHORT]}, not stored"


def _summary(cache: Cache, key: Digest | None, value: Any, load: bool) -> str:
    """A readable summary of a value: the given one, else the stored one when ``load``."""
    if key is None:
        return ""
    if value is not _ABSENT and type(value) is not Digest:
        return summarize(value)
    if not load:
        return ""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always", CorruptEntryWarning)
        try:
            return summarize(cache.load_value(key))
        except KeyError:
            return "<not stored>"
        except Exception as err:
            return f"<unreadable: {type(err).__name__}>"
