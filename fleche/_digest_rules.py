"""Digest rules for classes that have no exact-type encoder and no hook.

In order: metaclass instances (classes), enums, dataclasses, attrs classes,
numpy and pandas objects (their modules are imported only here, on first use),
``zoneinfo.ZoneInfo``, subclasses of built-in types, and instances of plain
Python classes (by class and ``__getstate__()``). Classes without a rule
are refused with a reason (generators, files, locks, iterators, subclasses of
numpy/pandas types defined elsewhere, ...) once plugins had their chance.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import types
from typing import Any

from fleche._digest_scheme import (
    BUILTIN,
    Encoder,
    Tag,
    composite,
    encode,
    header,
    qualname,
    relocate,
    subclass_encoder,
)
from fleche.errors import Indigestible


def class_rule(cls: type) -> Encoder | None:
    """The encoder for ``cls`` by the rules above, or None if no rule applies."""
    if issubclass(cls, type):  # metaclasses: an Enum or ABC class is still a class
        return BUILTIN[type]
    if issubclass(cls, enum.Enum):
        return _enum_encoder(cls)
    if dataclasses.is_dataclass(cls):
        return _fields_encoder(cls, [f.name for f in dataclasses.fields(cls) if f.compare])
    if getattr(cls, "__attrs_attrs__", None) is not None:
        import attrs

        return _fields_encoder(cls, [a.name for a in attrs.fields(cls) if a.eq])
    for package in ("numpy", "pandas"):
        if _is_from(cls, package):  # subclasses from elsewhere are refused, see below
            if package == "numpy":
                from fleche import _digest_numpy as rules
            else:
                from fleche import _digest_pandas as rules
            return rules.resolve(cls)
        if _origin(cls, package) is not None:
            return None
    if cls.__module__ == "zoneinfo" and cls.__name__ == "ZoneInfo":
        return _encode_zoneinfo
    for klass in cls.__mro__[1:]:
        if klass in BUILTIN:
            return subclass_encoder(cls, BUILTIN[klass])
    return None


def instance_rule(cls: type) -> Encoder | None:
    """The last resort, after hooks and plugins: a plain class by its state, else None."""
    if _is_plain_class(cls) and not refusal_reason(cls):
        return _instance_encoder(cls)
    return None


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: the class was made by a class statement


def _is_plain_class(cls: type) -> bool:
    """Whether every class ``cls`` derives from (but ``object``) is written in Python.

    Only then is ``__getstate__`` the whole state: an extension type keeps its
    state in C fields that the default ``__getstate__`` does not see.  A bare
    ``object()`` is a sentinel whose identity is all it has, so it is refused.
    """
    return cls is not object and all(k.__flags__ & _HEAP_TYPE for k in cls.__mro__[:-1])


def _is_from(cls: type, package: str) -> bool:
    module = cls.__module__ or ""
    return module == package or module.startswith(package + ".")


def _origin(cls: type, package: str) -> type | None:
    return next((k for k in cls.__mro__ if _is_from(k, package)), None)


def refusal_reason(cls: type) -> str:
    """Why ``cls`` has no digest, when there is more to say than "no rule"."""
    for package in ("numpy", "pandas"):
        origin = _origin(cls, package)
        if origin is not None and origin is not cls:
            return (
                f"a subclass of {qualname(origin)} may carry state (units, metadata) that "
                f"the {package} rule would drop; register a hook for it"
            )
    if issubclass(cls, (types.GeneratorType, types.AsyncGeneratorType)):
        return "generators are consumed by reading; pass a list"
    if issubclass(cls, types.CoroutineType):
        return "coroutines are not values; await them and pass the result"
    if issubclass(cls, io.IOBase):
        return "file objects stand for external state; pass the path or the data"
    if issubclass(cls, types.ModuleType):
        return "modules are not values; pass the values you use from them"
    if cls.__module__ in {"_thread", "threading", "multiprocessing.synchronize", "asyncio.locks"}:
        return "locks and other synchronisation primitives carry no value"
    if hasattr(cls, "__next__"):
        return "iterators are consumed by reading; pass a list"
    return ""


def refuser(cls: type, reason: str) -> Encoder:
    def refuse(obj: Any) -> bytes:
        raise Indigestible(cls, reason=reason, value=obj)

    return refuse


def _enum_encoder(cls: type) -> Encoder:
    name = encode(qualname(cls))
    head = header(Tag.ENUM)

    def encode_member(member: enum.Enum) -> bytes:
        label = member.name  # None for some unnamed Flag combinations: use the value
        return composite(head, [name, encode(member.value if label is None else label)])

    return encode_member


def _fields_encoder(cls: type, fields: list[str]) -> Encoder:
    name = encode(qualname(cls))
    labels = [encode(field) for field in fields]
    head = header(Tag.OBJECT)

    def encode_fields(obj: Any) -> bytes:
        try:
            values = [encode(getattr(obj, field)) for field in fields]
        except Indigestible:
            relocate((f".{field}", getattr(obj, field)) for field in fields)
            raise
        parts = [name]
        for label, value in zip(labels, values, strict=True):
            parts += (label, value)
        return composite(head, parts)

    return encode_fields


def _instance_encoder(cls: type) -> Encoder:
    # An instance of a plain class is its class and its state, as pickle sees it:
    # ``__getstate__()`` (by default the ``__dict__`` and the ``__slots__`` values).
    name = encode(qualname(cls))
    head = header(Tag.INSTANCE)

    def encode_instance(obj: Any) -> bytes:
        state = obj.__getstate__()
        try:
            return composite(head, [name, encode(state)])
        except Indigestible as err:
            where = ".__dict__" if state is getattr(obj, "__dict__", None) else ".__getstate__()"
            raise err.located(where) from None

    return encode_instance


def _encode_zoneinfo(zone: Any) -> bytes:
    if zone.key is None:
        raise Indigestible(
            type(zone), reason="a ZoneInfo read from a file has no key", value=zone
        )
    return composite(header(Tag.ZONEINFO), [encode(zone.key)])
