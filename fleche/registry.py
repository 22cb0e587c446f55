"""Every name a configuration may use, in one place: caches, templates, cache types, recorders.

``fleche.toml``, :func:`fleche.cache` and ``--cache`` name things; this
module says what each name means.  Reserved cache names (``memory``,
``void``), templates (``pickle``, ``sql``, ``hdf5``, ``s3``, ...) and the keys
each takes, cache types that are not built from storages (``type =
"ssh"``), and the metadata recorders ``[default] metadata`` may name are
registered here; storage types (``{type = "ValuePickleFile"}`` and their
0.22 names) in :mod:`fleche.storage.registry`, which this module extends
for configuration tables.

A registered entry may be a ``"module:qualname"`` string, imported on
first use: ``type = "ssh"`` is one, so ``import fleche`` does not import
:mod:`fleche.remote`.  A missing optional package is reported by
:func:`fleche.storage.registry.import_target`, with the extra to install.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .caches import memory_cache, void_cache
from .errors import ConfigError
from .storage.registry import KINDS, import_target
from .storage.registry import register_storage as register_storage_kind

__all__ = [
    "CACHE_TYPES",
    "CONFIGURABLE",
    "FILE_OPTIONS",
    "LEGACY_TEMPLATES",
    "RESERVED",
    "TEMPLATES",
    "cache_type",
    "configurable",
    "register_cache_type",
    "register_storage",
]

#: Cache names every process knows without a configuration file.
RESERVED: dict[str, Callable[[], Any]] = {"memory": memory_cache, "void": void_cache}

#: Options of the pickle files a file template writes.
FILE_OPTIONS = frozenset({"serializer", "compression", "compression_level"})

#: Template -> the keys it takes besides ``template``, ``read_only`` and the cache keys.
TEMPLATES: dict[str, frozenset[str]] = {
    "memory": frozenset(),
    "void": frozenset(),
    "pickle": frozenset({"root"}) | FILE_OPTIONS,
    "sql": frozenset({"root", "url", "inline_limit"}) | FILE_OPTIONS,
    "hdf5": frozenset({"root", "url", "calls"}),
    "s3": frozenset({"url", "endpoint", "region", "profile", "calls", "inline_limit"})
    | FILE_OPTIONS,
    "stack": frozenset({"layers", "retry_after"}),
    "pool": frozenset({"caches", "retry_after"}),
}

#: Templates of the 0.22 release: one storage type (of that name) for values and calls.
LEGACY_TEMPLATES = ("cloudpickle", "dill", "bagofholding_hdf")

Builder = Callable[[Mapping[str, Any], Any], Any]

#: Cache ``type`` -> ``build(table, base_directory)``, or where to import it from.
CACHE_TYPES: dict[str, Builder | str] = {"ssh": "fleche.remote:from_table"}

#: Recorder classes ``[default] metadata`` may name, by class name (see ``fleche.metadata``).
CONFIGURABLE: dict[str, type] = {}

_Class = TypeVar("_Class", bound=type)


def configurable(cls: _Class) -> _Class:
    """Register a metadata recorder class under its name, so ``fleche.toml`` can name it.

    A decorator; the class must be constructible without arguments.
    """
    CONFIGURABLE[cls.__name__] = cls
    return cls


def register_cache_type(name: str, build: Builder | str, *, replace: bool = False) -> None:
    """Let a table with ``type = name`` build a cache: ``build(table, base_directory)``.

    ``build`` may be a ``"module:function"`` string, imported when a table
    first uses the type.
    """
    if name in CACHE_TYPES and not replace:
        raise ConfigError(f"a cache type named {name!r} is registered already; pass replace=True")
    CACHE_TYPES[name] = build


def cache_type(name: str) -> Builder:
    """The builder of cache type ``name`` (imported if registered lazily); :class:`ConfigError` if unknown."""
    build = CACHE_TYPES.get(name)
    if build is None:
        known = ", ".join(sorted(CACHE_TYPES)) or "none"
        raise ConfigError(f"unknown cache type {name!r}; known types: {known}")
    if isinstance(build, str):
        build = CACHE_TYPES[name] = import_target(build, f"the cache type {name!r}")
    return build


def register_storage(
    name: str, target: str, extra: str | None = None, *, replace: bool = False
) -> None:
    """Make a storage class usable in tables as ``{type = name, ...}``; ``target`` is ``"module:Class"``.

    Registers it for values and calls alike;
    :func:`fleche.storage.register_storage` names the kind.
    """
    for kind in KINDS:
        register_storage_kind(name, kind, factory=target, replace=replace, extra=extra)
