"""Call records: a call with its values, with their digests, or loading them on access.

A :class:`Call` holds values; a :class:`DigestedCall` holds the digests of
those values and is what call storages keep; a :class:`LazyCall` loads the
values of a digested call on access.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

from .call_key import argument_raw, function_prefix, lookup_key
from .digest import Digest, digest
from .prepared import LazyArguments
from .profile import bind

__all__ = [
    "Call",
    "DigestedCall",
    "LazyCall",
    "UNSTORED",
    "ValueSaver",
    "unstored_arguments",
]


class ValueSaver(Protocol):
    """What :meth:`Call.stash` stores values into: a value storage, or anything that saves like one."""

    def save(self, value: Any, key: Digest | None = None) -> Digest:
        """Store ``value`` under ``key`` (its digest); returns the key."""


#: Metadata namespace naming the arguments a record keys by digest only.
UNSTORED = "unstored"


def unstored_arguments(metadata: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """Names of the arguments whose values a call record does not keep (see ``Unstored``)."""
    entry = metadata.get(UNSTORED)
    return frozenset(entry.get("arguments", ())) if entry else frozenset()


_set = object.__setattr__
_new_digest = str.__new__
#: The fields of a pickled call, in their pickled order.
_PICKLED = ("name", "module", "arguments", "result", "metadata", "version", "code", "unkeyed",
            "created")  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True, init=False, eq=False)
class Call:
    """One call of a function: its identity, arguments, result and metadata.

    ``arguments`` maps parameter names to values, with defaults applied and
    ignored parameters left out.  ``metadata`` maps a namespace (``"runtime"``,
    ``"tags"``…) to a mapping of plain values.  ``unkeyed`` names the identity
    fields left out of the lookup key.  Records are shared, not copied: treat
    the mappings as read-only.

    The positional order is the 0.22 release's (``Call(name, arguments,
    metadata, module, version, code_digest, result)``); ``code_digest=`` is
    accepted for ``code``.  Calls equal by content are equal whatever their
    kind (a :class:`DigestedCall` equals the call with the same digests) and
    ``created``; they digest alike too.
    """

    name: str
    arguments: Mapping[str, Any]
    metadata: Mapping[str, Mapping[str, Any]]
    module: str | None
    version: str | None
    code: Digest | None
    result: Any
    unkeyed: frozenset[str]
    created: float

    # Written out (not generated) to take the 0.22 keyword ``code_digest``; it
    # costs what the generated __init__ did (1.6 µs for a record, timed on the
    # miss path beside the previous version; benchmarks/bench_core.py).
    def __init__(
        self,
        name: str,
        arguments: Mapping[str, Any],
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        module: str | None = None,
        version: str | None = None,
        code: Digest | None = None,
        result: Any = None,
        unkeyed: frozenset[str] = frozenset(),
        created: float | None = None,
        *,
        code_digest: Digest | None = None,
    ) -> None:
        _set(self, "name", name)
        _set(self, "arguments", arguments)
        _set(self, "metadata", {} if metadata is None else metadata)
        _set(self, "module", module)
        _set(self, "version", version)
        _set(self, "code", code if code_digest is None else code_digest)
        _set(self, "result", result)
        _set(self, "unkeyed", unkeyed)
        _set(self, "created", time.time() if created is None else created)

    @classmethod
    def from_call(cls, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Call:
        """The call ``func(*args, **kwargs)`` (not run): arguments bound, defaults applied.

        For a decorated function it is the call the decorator keys (its
        version, ignored arguments and code digest included), so its
        :meth:`key` is the function's lookup key.
        """
        describe = getattr(func, "call", None)
        if hasattr(func, "__wrapped__") and callable(describe):  # a @fleche function
            return describe(*args, **kwargs)
        return cls(
            func.__qualname__, bind(func, args, kwargs, apply_defaults=True), module=func.__module__
        )

    @property
    def code_digest(self) -> Digest | None:
        """The 0.22 name of :attr:`code`."""
        return self.code

    def prefix(self) -> bytes:
        """The raw digest of this call's function identity."""
        return function_prefix(self.name, self.module, self.version, self.code, self.unkeyed)

    def key(self) -> Digest:
        """The lookup key of this call (independent of its result and metadata)."""
        return lookup_key(self.prefix(), self.arguments)

    def to_lookup_key(self) -> Digest:
        """The 0.22 name of :meth:`key`."""
        return self.key()

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

    def digest(self) -> DigestedCall:
        """The 0.22 name of :meth:`digested` (digests only; nothing is stored)."""
        return self.digested()

    def stash(self, values: ValueSaver) -> DigestedCall:
        """Save the arguments and the result into ``values``; the digested call.

        A :class:`Digest` given for a value stands for a value stored
        already, so it is not saved (it would replace that value).
        """
        record = self.digested()
        for name, value in self.arguments.items():
            if type(value) is not Digest:
                values.save(value, record.arguments[name])
        if type(self.result) is not Digest:
            values.save(self.result, record.result)
        return record

    def replace(self, **changes: Any) -> Call:
        """A copy with some fields changed (e.g. for :meth:`CallStorage.transform`)."""
        return dataclasses.replace(self, **changes)

    @property
    def qualified_name(self) -> str:
        """``module.name``, the way a person names the function."""
        return f"{self.module}.{self.name}"

    def _content(self) -> tuple[Any, ...]:
        return (self.name, self.module, self.version, self.code, self.unkeyed,
                self.arguments, self.result, self.metadata)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return self._content() == other._content()

    __hash__ = None  # type: ignore[assignment]  # the mappings inside are mutable

    # Pickled as the field values in the order this class had before it took
    # the 0.22 positional order, so records pickled by earlier versions load.
    def __getstate__(self) -> list[Any]:
        return [getattr(self, name) for name in _PICKLED]

    def __setstate__(self, state: list[Any]) -> None:
        for name, value in zip(_PICKLED, state, strict=True):
            _set(self, name, value)

    def __digest__(self) -> Digest:
        # A Digest, not a tuple: the digest names no class, so a record digests
        # like the call it was made from (a digest stands for its value).
        return digest(("fleche.call.Call", *self._content()))


#: Each field's slot setter, in :data:`_PICKLED` order: a record made field by field (a miss
#: makes two) sets them directly, ~0.08 us a field less than ``object.__setattr__`` (CPython 3.11).
_SETTERS = tuple(getattr(Call, name).__set__ for name in _PICKLED)


@dataclasses.dataclass(frozen=True, slots=True, init=False, eq=False)
class DigestedCall(Call):
    """A call whose arguments and result are the digests of the values.

    This is the record call storages keep: small, and queryable without
    touching the values.  Its positional order is the 0.22 release's:
    ``DigestedCall(name, arguments, result, metadata, module, version, code_digest)``.
    """

    #: The key a record read from a store in bulk is filed under (as text), ``None`` if
    #: not known (see :class:`~fleche.storage.record_page.StoredCall`).
    stored_as: ClassVar[str | None] = None

    def __init__(
        self,
        name: str,
        arguments: Mapping[str, Digest],
        result: Digest | None = None,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        module: str | None = None,
        version: str | None = None,
        code: Digest | None = None,
        unkeyed: frozenset[str] = frozenset(),
        created: float | None = None,
        *,
        code_digest: Digest | None = None,
    ) -> None:
        Call.__init__(
            self, name, arguments, metadata, module, version, code, result, unkeyed, created,
            code_digest=code_digest,
        )  # fmt: skip

    __getstate__ = Call.__getstate__  # kept: a dataclass would give the subclass its own
    __setstate__ = Call.__setstate__

    def digested(self) -> DigestedCall:
        return self

    @classmethod
    def draft(
        cls,
        name: str,
        module: str | None,
        arguments: Mapping[str, Digest],
        version: str | None,
        code: Digest | None,
        unkeyed: frozenset[str],
        metadata: Mapping[str, Mapping[str, Any]],
    ) -> DigestedCall:
        """The record of a call about to run, made now, without its result (one call on a miss)."""
        draft = object.__new__(cls)
        fields = (name, module, arguments, None, metadata, version, code, unkeyed, time.time())
        # Here: no __init__ chain.  Without strict=, zip takes no keyword (a slower call).
        for set_field, value in zip(_SETTERS, fields):  # noqa: B905 - both as long as _PICKLED
            set_field(draft, value)
        return draft

    def completed(self, result: Digest, metadata: Mapping[str, Mapping[str, Any]]) -> DigestedCall:
        """This record with a result digest and metadata: a prepared call's, once it has run."""
        done = object.__new__(DigestedCall)
        fields = (self.name, self.module, self.arguments, result, metadata, self.version,
                  self.code, self.unkeyed, self.created)  # fmt: skip
        for set_field, value in zip(_SETTERS, fields):  # noqa: B905 - as in draft
            set_field(done, value)
        return done

    def values(self) -> Iterator[Digest]:
        """Every value digest this record references: arguments, then result."""
        yield from self.arguments.values()
        yield self.result

    def fetch(self, cache: Any) -> LazyCall:
        """This record with its values read from ``cache`` on access."""
        return LazyCall(self, _CacheValues(cache))


class _CacheValues:
    """A cache seen as the value storage a :class:`LazyCall` reads from."""

    __slots__ = ("load",)

    def __init__(self, cache: Any) -> None:
        self.load = cache.load_value


class LazyCall:
    """A stored call whose argument and result values load on first access."""

    __slots__ = ("digested_call", "_values", "_arguments", "_result")

    def __init__(self, digested_call: DigestedCall | str, values: Any, *fields: Any, **more: Any):
        """``LazyCall(record, value_storage)``; or, as in 0.22,
        ``LazyCall(name, _arguments, _result, _cache, metadata={}, module=None,
        version=None, code_digest=None)`` with digests and a cache."""
        if isinstance(digested_call, str):  # the 0.22 form: the record's fields and a cache
            _result, cache, *rest = fields
            digested_call = DigestedCall(digested_call, values, _result, *rest, **more)
            values = _CacheValues(cache)
        self.digested_call = digested_call
        self._values = values  # not values.load: a bound method per call of a listing
        self._arguments: LazyArguments | None = None  # made when first read: a listing never does
        self._result: Any = _UNSET

    def __getattr__(self, name: str) -> Any:
        # Only identity and metadata fields reach here; __slots__ covers the rest.
        if name in _CALL_FIELDS:
            return getattr(self.digested_call, name)
        raise AttributeError(name)

    @property
    def arguments(self) -> Mapping[str, Any]:
        if self._arguments is None:
            self._arguments = LazyArguments(self.digested_call.arguments, self._values.load)
        return self._arguments

    @property
    def result(self) -> Any:
        if self._result is _UNSET:
            self._result = self._values.load(self.digested_call.result)
        return self._result

    def key(self) -> Digest:
        """The key the call is stored under (its lookup key, unless it was filed under another)."""
        record = self.digested_call
        stored = record.stored_as
        return record.key() if stored is None else _new_digest(Digest, stored)

    def to_lookup_key(self) -> Digest:
        """The 0.22 name of :meth:`key`."""
        return self.key()

    def digested(self) -> DigestedCall:
        return self.digested_call

    def detach(self) -> DigestedCall:
        """The 0.22 name of :meth:`digested`: the record, without its values."""
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

    def fetch(self) -> Call:
        """The 0.22 name of :meth:`load`."""
        return self.load()

    def __repr__(self) -> str:
        d = self.digested_call
        return f"LazyCall({d.qualified_name}({self.arguments!r}) -> <{d.result[:8]}>)"


_UNSET = object()
_CALL_FIELDS = frozenset(f.name for f in dataclasses.fields(Call)) | {
    "qualified_name",
    "code_digest",
}

# Pickled (and documented) under the path users import them from.
for _public in (Call, DigestedCall, LazyCall):
    _public.__module__ = "fleche.call"
