"""The call model: what a call is, how its lookup key is formed, and templates.

A :class:`Call` holds values; a :class:`DigestedCall` holds the digests of
those values and is what call storages keep; a :class:`LazyCall` loads the
values of a digested call on access; a :class:`PreparedCall` is a call whose
arguments are stored and whose key is sealed before its body runs; a
:class:`QueryCall` is a template matched against stored calls.

The lookup key of a call is the digest of its function identity (name,
module, version, code digest) and its arguments by name.  The identity part
is hashed once per function (:func:`function_prefix`) and the arguments are
streamed into one hasher after it (:func:`lookup_key`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin

import xxhash

from .digest import Digest, digest, digest_raw
from .errors import Indigestible

if TYPE_CHECKING:
    from .storage.base import ValueStorage

__all__ = [
    "Call",
    "argument_digests",
    "key_of",
    "DigestedCall",
    "Exactly",
    "Ignored",
    "LazyCall",
    "PreparedCall",
    "QueryCall",
    "Required",
    "UNSTORED",
    "Unstored",
    "function_prefix",
    "lookup_key",
    "unstored_arguments",
]

#: Version of the lookup-key layout; bump it when the layout changes.
KEY_SCHEME = 1

#: Identity fields a decorator may leave out of the key (``hash_module=False``…).
OPTIONAL_IDENTITY = frozenset({"module", "version"})

T = TypeVar("T")


class _Marker:
    """Annotation marker: ``Ignored[T]``, ``Required[T]``, ``Unstored[T]`` in a signature."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getitem__(self, tp: type[T]) -> Any:
        return Annotated[tp, self]

    def __repr__(self) -> str:
        return self.name


#: ``def f(x, log: Ignored[Logger])``: the argument is left out of the key.
Ignored = _Marker("Ignored")
#: ``def f(x: Required[int] = 0)``: the argument is always part of the key,
#: even where a decorator would ignore it.
Required = _Marker("Required")
#: ``def f(frames: Unstored[np.ndarray])``: the argument is keyed by its digest
#: but its value is not copied into the store (a large input you keep anyway).
Unstored = _Marker("Unstored")

#: Metadata namespace naming the arguments a record keys by digest only.
UNSTORED = "unstored"


def unstored_arguments(metadata: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """Names of the arguments whose values a call record does not keep (see ``Unstored``)."""
    entry = metadata.get(UNSTORED)
    return frozenset(entry.get("arguments", ())) if entry else frozenset()


def marked(annotation: Any, marker: _Marker) -> bool:
    """Whether a parameter annotation carries ``marker`` (``Ignored``/``Required``)."""
    return get_origin(annotation) is Annotated and any(
        m is marker for m in get_args(annotation)[1:]
    )


@functools.lru_cache(maxsize=4096)  # every save re-keys its record: hash each identity once
def function_prefix(
    name: str,
    module: str,
    version: str | None = None,
    code: Digest | None = None,
    unkeyed: frozenset[str] = frozenset(),
) -> bytes:
    """The raw digest of a function's identity: the fixed first part of every key.

    ``unkeyed`` names identity fields (``"module"``, ``"version"``) left out of
    the key, so that e.g. moving a function to another module keeps its calls.
    """
    unknown = unkeyed - OPTIONAL_IDENTITY
    if unknown:
        raise ValueError(
            f"cannot leave {sorted(unknown)} out of a lookup key; only {sorted(OPTIONAL_IDENTITY)}"
        )
    return digest_raw(
        (
            "fleche.call",
            KEY_SCHEME,
            name,
            None if "module" in unkeyed else module,
            None if "version" in unkeyed else version,
            code,
        )
    )


def argument_raw(name: str, value: Any) -> bytes:
    """The raw digest of one argument; an :class:`Indigestible` names the argument."""
    try:
        return digest_raw(value)
    except Indigestible as err:
        raise err.located(f"arguments[{name!r}]") from None


def argument_digests(arguments: Mapping[str, Any]) -> dict[str, bytes]:
    """The raw digest of each argument, by name."""
    try:
        return {name: digest_raw(value) for name, value in arguments.items()}
    except Indigestible:  # find the culprit again, now paying for its name
        for name, value in arguments.items():
            argument_raw(name, value)
        raise


_NAMES: dict[str, bytes] = {}


def _name_raw(name: str) -> bytes:
    raw = _NAMES.get(name)
    if raw is None:
        raw = _NAMES[name] = digest_raw(name)
    return raw


def key_of(prefix: bytes, digests: Mapping[str, bytes]) -> Digest:
    """The lookup key from a function prefix and the raw digests of the arguments.

    Arguments are taken in name order, so the key does not depend on the
    order in which a storage gives them back.
    """
    # One-shot hashing of the joined parts is the same digest as streaming
    # them, and half the cost for the usual handful of arguments
    # (benchmarks/bench_core.py).
    parts = [prefix]
    for name in sorted(digests):
        parts.append(_name_raw(name))
        parts.append(digests[name])
    return Digest.from_raw(xxhash.xxh3_128_digest(b"".join(parts)))


def lookup_key(prefix: bytes, arguments: Mapping[str, Any]) -> Digest:
    """The key of a call: its function prefix, then each argument by name.

    Values may be given as digests (``digest(Digest(x)) == x``), so a
    digested call has the same key as the call it was made from.
    """
    return key_of(prefix, argument_digests(arguments))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One call of a function: its identity, arguments, result and metadata.

    ``arguments`` maps parameter names to values, with defaults applied and
    ignored parameters left out.  ``metadata`` maps a namespace (``"runtime"``,
    ``"tags"``…) to a mapping of plain values.  ``unkeyed`` names the identity
    fields left out of the lookup key.  Records are shared, not copied: treat
    the mappings as read-only.
    """

    name: str
    module: str
    arguments: Mapping[str, Any]
    result: Any = None
    metadata: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    version: str | None = None
    code: Digest | None = None
    unkeyed: frozenset[str] = frozenset()
    created: float = dataclasses.field(default_factory=time.time)

    def prefix(self) -> bytes:
        """The raw digest of this call's function identity."""
        return function_prefix(self.name, self.module, self.version, self.code, self.unkeyed)

    def key(self) -> Digest:
        """The lookup key of this call (independent of its result and metadata)."""
        return lookup_key(self.prefix(), self.arguments)

    def digested(self) -> DigestedCall:
        """This call with every argument and the result replaced by its digest."""
        return DigestedCall(
            name=self.name,
            module=self.module,
            arguments={
                name: Digest.from_raw(argument_raw(name, v)) for name, v in self.arguments.items()
            },
            result=digest(self.result),
            metadata=self.metadata,
            version=self.version,
            code=self.code,
            unkeyed=self.unkeyed,
            created=self.created,
        )

    def replace(self, **changes: Any) -> Call:
        """A copy with some fields changed (e.g. for :meth:`CallStorage.transform`)."""
        return dataclasses.replace(self, **changes)

    @property
    def qualified_name(self) -> str:
        """``module.name``, the way a person names the function."""
        return f"{self.module}.{self.name}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DigestedCall(Call):
    """A call whose arguments and result are the digests of the values.

    This is the record call storages keep: small, and queryable without
    touching the values.
    """

    def digested(self) -> DigestedCall:
        return self

    def values(self) -> Iterator[Digest]:
        """Every value digest this record references: arguments, then result."""
        yield from self.arguments.values()
        yield self.result


class _LazyArguments(Mapping[str, Any]):
    """Arguments of a :class:`LazyCall`, each loaded the first time it is read."""

    def __init__(self, digests: Mapping[str, Digest], load: Callable[[Digest], Any]) -> None:
        self._digests = digests
        self._load = load
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            key = self._digests[name]
            try:
                self._loaded[name] = self._load(key)
            except KeyError:  # not kept (an ``Unstored`` argument): its digest stands for it
                return key
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: <{d[:8]}>" for k, d in self._digests.items()) + "}"


class LazyCall:
    """A stored call whose argument and result values load on first access."""

    __slots__ = ("digested_call", "_values", "_arguments", "_result")

    def __init__(self, digested_call: DigestedCall, values: ValueStorage) -> None:
        self.digested_call = digested_call
        self._values = values
        self._arguments = _LazyArguments(digested_call.arguments, values.load)
        self._result: Any = _UNSET

    def __getattr__(self, name: str) -> Any:
        # Only identity and metadata fields reach here; __slots__ covers the rest.
        if name in _CALL_FIELDS:
            return getattr(self.digested_call, name)
        raise AttributeError(name)

    @property
    def arguments(self) -> Mapping[str, Any]:
        return self._arguments

    @property
    def result(self) -> Any:
        if self._result is _UNSET:
            self._result = self._values.load(self.digested_call.result)
        return self._result

    def key(self) -> Digest:
        return self.digested_call.key()

    def digested(self) -> DigestedCall:
        return self.digested_call

    def load(self) -> Call:
        """Every value loaded: a plain :class:`Call`."""
        d = self.digested_call
        return Call(
            name=d.name,
            module=d.module,
            arguments=dict(self.arguments),
            result=self.result,
            metadata=d.metadata,
            version=d.version,
            code=d.code,
            unkeyed=d.unkeyed,
            created=d.created,
        )

    def __repr__(self) -> str:
        d = self.digested_call
        return f"LazyCall({d.qualified_name}({self._arguments!r}) -> <{d.result[:8]}>)"


_UNSET = object()
_CALL_FIELDS = frozenset(f.name for f in dataclasses.fields(Call)) | {"qualified_name"}


class PreparedCall:
    """A call whose arguments are stored and whose key is sealed before it runs.

    Made by :meth:`fleche.caches.Cache.prepare`; ``record`` holds the argument
    digests.  While a prepared call is open its argument values are pinned
    against garbage collection.  Finish it with :meth:`commit` (stores the
    result and the record) or :meth:`abandon`; as a context manager it
    abandons itself on exit if it was not committed.
    """

    __slots__ = ("record", "key", "_finish", "_release", "committed")

    def __init__(
        self,
        record: DigestedCall,
        key: Digest,
        finish: Callable[[DigestedCall, Any, Mapping[str, Any]], Digest],
        release: Callable[[], None],
    ) -> None:
        self.record = record
        self.key = key
        self._finish = finish
        self._release = release
        self.committed = False

    def commit(
        self, result: Any, metadata: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Digest:
        """Store ``result`` and the call record (with extra ``metadata``); returns the call key."""
        try:
            key = self._finish(self.record, result, metadata or {})
        finally:
            self.abandon()
        self.committed = True
        return key

    def abandon(self) -> None:
        """Release the pinned arguments without storing anything more."""
        release, self._release = self._release, _noop
        release()

    def __enter__(self) -> PreparedCall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()


def _noop() -> None:
    pass


@dataclasses.dataclass(frozen=True)
class Exactly:
    """Template value that must match as given, even ``None``.

    ``QueryCall(result=Exactly(None))`` finds calls that returned ``None``,
    where a bare ``None`` is a wildcard.
    """

    value: Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueryCall:
    """A template for stored calls: every field left ``None`` is a wildcard.

    ``arguments`` lists only the arguments to match (a present key matches
    its value, ``None`` included); values may be given as they are or as
    their :class:`Digest`.  ``metadata`` maps a namespace to the entries that
    must be equal; an empty mapping asks only that the namespace is present.
    Wrap a field in :class:`Exactly` to match ``None`` itself.
    """

    name: str | None = None
    module: str | None = None
    arguments: Mapping[str, Any] | None = None
    result: Any = None
    metadata: Mapping[str, Mapping[str, Any]] | None = None
    version: str | None | Exactly = None
    code: Digest | None | Exactly = None

    @classmethod
    def from_template(cls, template: QueryCall | Call) -> QueryCall:
        """The query a template stands for: a :class:`QueryCall` as is, a :class:`Call` field by field.

        A call used as a template (``Call`` or ``DigestedCall``) matches on
        every field that is not ``None`` (its metadata when not empty); its
        arguments match as given.  Every backend's ``query`` goes through
        this, so both kinds of template mean the same everywhere.
        """
        if isinstance(template, QueryCall):
            return template
        if not isinstance(template, Call):
            raise TypeError(
                f"a query template is a QueryCall or a Call, not {type(template).__name__}"
            )
        return cls(
            name=template.name,
            module=template.module,
            arguments=template.arguments,
            result=template.result,
            metadata=template.metadata or None,
            version=template.version,
            code=template.code,
        )

    def digested(self) -> QueryCall:
        """The template with argument and result values replaced by their digests."""
        arguments = None
        if self.arguments is not None:
            arguments = {
                n: Digest.from_raw(argument_raw(n, _unwrap(v))) for n, v in self.arguments.items()
            }
        result = self.result if self.result is None else Exactly(digest(_unwrap(self.result)))
        return dataclasses.replace(self, arguments=arguments, result=result)

    def matches(self, call: DigestedCall) -> bool:
        """Whether a stored record fits this template (digest it first with :meth:`digested`)."""
        for field in ("name", "module", "version", "code"):
            want = getattr(self, field)
            if want is not None and _unwrap(want) != getattr(call, field):
                return False
        if self.result is not None and _unwrap(self.result) != call.result:
            return False
        if self.arguments is not None:
            stored = call.arguments
            for name, value in self.arguments.items():
                if stored.get(name) != value:
                    return False
        return self.metadata is None or metadata_matches(self.metadata, call.metadata)


def metadata_matches(
    template: Mapping[str, Mapping[str, Any]], metadata: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether every namespace of ``template`` is present and its entries equal."""
    for namespace, entries in template.items():
        stored = metadata.get(namespace)
        if stored is None:
            return False
        for name, value in entries.items():
            if name not in stored or stored[name] != _unwrap(value):
                return False
    return True


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, Exactly) else value
