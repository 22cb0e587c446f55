"""Templates: stored calls selected by the fields given, every other field a wildcard."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .call_key import argument_raw
from .call_record import Call, DigestedCall, LazyCall
from .digest import Digest, digest
from .profile import bind

__all__ = [
    "AnyCall",
    "AnyQueryType",
    "Exactly",
    "QueryCall",
    "StrQueryType",
    "metadata_matches",
    "unwrap",
]


@dataclasses.dataclass(frozen=True)
class Exactly:
    """Template value that must match as given, even ``None``.

    ``QueryCall(result=Exactly(None))`` finds calls that returned ``None``,
    where a bare ``None`` is a wildcard.
    """

    value: Any


@dataclasses.dataclass(frozen=True)
class QueryCall:
    """A template for stored calls: every field left ``None`` is a wildcard.

    ``arguments`` lists only the arguments to match (a present key matches
    its value, ``None`` included); values may be given as they are or as
    their :class:`Digest`.  ``metadata`` maps a namespace to the entries that
    must be equal; an empty mapping asks only that the namespace is present.
    Wrap a field in :class:`Exactly` to match ``None`` itself.  The
    positional order is the 0.22 release's (``QueryCall(name, arguments,
    metadata, module, version, code_digest, result)``); ``code_digest=`` is
    accepted for ``code``.
    """

    name: str | None = None
    arguments: Mapping[str, Any] | None = None
    metadata: Mapping[str, Mapping[str, Any]] | None = None
    module: str | None = None
    version: str | None | Exactly = None
    code: Digest | None | Exactly = None
    result: Any = None
    code_digest: dataclasses.InitVar[Digest | None | Exactly] = dataclasses.field(
        default=None, kw_only=True
    )

    def __post_init__(self, code_digest: Digest | None | Exactly) -> None:
        if code_digest is not None:
            object.__setattr__(self, "code", code_digest)

    @classmethod
    def from_call(cls, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> QueryCall:
        """The template of the calls of ``func`` with the arguments given; the others are wildcards."""
        arguments = bind(func, args, kwargs, partial=True)
        return cls(func.__qualname__, arguments or None, module=func.__module__)

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
        if self.arguments is None and self.result is None:
            return self  # nothing to digest (a count of every call or of a function's)
        arguments = None
        if self.arguments is not None:
            arguments = {
                n: Digest.from_raw(argument_raw(n, unwrap(v))) for n, v in self.arguments.items()
            }
        result = self.result if self.result is None else Exactly(digest(unwrap(self.result)))
        return dataclasses.replace(self, arguments=arguments, result=result)

    def matches(self, call: DigestedCall) -> bool:
        """Whether a stored record fits this template (digest it first with :meth:`digested`)."""
        for field in ("name", "module", "version", "code"):
            want = getattr(self, field)
            if want is not None and unwrap(want) != getattr(call, field):
                return False
        if self.result is not None and unwrap(self.result) != call.result:
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
            if name not in stored or stored[name] != unwrap(value):
                return False
    return True


def unwrap(value: Any) -> Any:
    """The value a template field stands for: inside :class:`Exactly`, or as it is."""
    return value.value if isinstance(value, Exactly) else value


#: Any of the call kinds a cache hands out or takes.
AnyCall = Call | DigestedCall | LazyCall
#: What selects calls: a template, or a predicate over stored calls.
AnyQueryType = QueryCall | Callable[[LazyCall], bool]
#: A text field of a template: a value, a wildcard (``None``) or :class:`Exactly`.
StrQueryType = str | None | Exactly

# Pickled (and documented) under the path users import them from.
for _public in (Exactly, QueryCall):
    _public.__module__ = "fleche.call"
