"""Which cache a name, a path, a URL or a table means: ``fleche.toml`` and the defaults.

Where the active cache comes from, first match wins:

1. an explicit argument: ``fleche.cache(...)`` or ``@fleche(cache=...)``;
2. the environment variable ``FLECHE_CACHE`` (a name, a path or a URL);
3. ``cache`` in the ``[default]`` table of the configuration files;
4. the embedded default: values as pickle files under ``./.fleche/values``
   and calls in SQLite at ``./.fleche/calls.db``, in the working directory.

Configuration files are named ``fleche.toml``.  They are read from the
working directory upward, then from the user configuration directory
(``platformdirs.user_config_dir("fleche")``); ``FLECHE_CONFIG`` names a
file read before all of them.  A closer file wins: a cache defined in
two files is the closer one's, whole.  ``root = true`` at the top of a
file stops the search there (the user configuration is not read either).
Relative paths resolve against the directory of the file naming them::

    [default]
    cache = "project"

    [project]                 # values as pickle files under store/values,
    template = "sql"          # calls in SQLite at store/calls.db
    root = "store"            # (or on a server: url = "postgresql+psycopg://...")
    ttl = "30d"               # optional: calls expire after 30 days

    [fast]
    template = "stack"        # memory in front of the project store
    layers = [{ template = "memory", max_bytes = 1_000_000_000 }, "project"]

Templates: ``memory``, ``void``, ``pickle`` (values and calls as pickle
files), ``sql`` (values as pickle files, calls in SQL at ``root/calls.db``
or ``url``), ``hdf5`` (values in HDF5, calls in SQL or, with
``calls = "pickle"``, pickle files), ``stack`` (``layers``) and ``pool``
(``caches``), each layer a table or the name of another cache.  Any cache
may add ``read_only = true``; a storage cache may add ``ttl``,
``max_bytes`` and ``max_calls`` (with ``policy`` and ``index``).  Explicit
storages are written as ``values = { type = "ValuePickleFile", root = "v" }``
and ``calls = { type = "Sql", url = "c.db" }``.  Unknown keys, templates,
storages and cache names are :class:`~fleche.errors.ConfigError` naming the
file and the key.  Every name is registered in :mod:`fleche.registry`, and
:func:`open_cache` is the one resolver every other way of opening calls.

The shapes of the 0.22 release are read too (:mod:`fleche._config_forms`):
an array of tables ``[[name]]`` is a stack, ``[[name.pool]]`` a pool,
``max_size`` is ``max_calls``, storage types may be named ``memory``,
``void``, ``pickle``, ``cloudpickle``, ``dill``, ``bagofholding_hdf`` and
``sql``, and ``[default]`` may say ``metadata = ["Runtime", ...]`` and
``root = true``.  :func:`cache_from_config`, :func:`cache_to_config`,
:func:`storage_from_config`, :func:`storage_to_config`,
:func:`load_cache_config` and :func:`load_default_metadata` are that
release's functions.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config_describe import describe, storage_table
from ._config_files import (
    DEFAULT_METADATA,
    ENV_CONFIG,
    FILE_NAME,
    Configuration,
    file_configuration,
    load_configuration,
    load_default_metadata,
    named_table,
)
from ._config_forms import in_022_shapes, normalize_storage
from ._config_tables import Where, build, build_storage
from .caches import CacheBase
from .caches.base import install_config_reader
from .errors import ConfigError
from .registry import (
    CACHE_TYPES,
    CONFIGURABLE,
    RESERVED,
    TEMPLATES,
    configurable,
    register_cache_type,
    register_storage,
)
from .storage.redaction import redact_url
from .store_layout import MANIFEST, layout_of

__all__ = [
    "CACHE_TYPES",
    "CONFIGURABLE",
    "DEFAULT_METADATA",
    "ENV_CACHE",
    "ENV_CONFIG",
    "FILE_NAME",
    "TEMPLATES",
    "Configuration",
    "cache_from_config",
    "cache_to_config",
    "configurable",
    "default_cache",
    "embedded_default",
    "from_config",
    "load_cache_config",
    "load_configuration",
    "load_default_metadata",
    "named_cache",
    "open_cache",
    "register_cache_type",
    "register_storage",
    "storage_from_config",
    "storage_to_config",
    "to_config",
]

ENV_CACHE = "FLECHE_CACHE"
#: Where the embedded default store lives, under the working directory.
EMBEDDED_ROOT = ".fleche"

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_OPENED: dict[str, CacheBase] = {}
_OPENED_LOCK = threading.Lock()


# -- the resolver -------------------------------------------------------------------


def open_cache(
    spec: CacheBase | str | os.PathLike[str] | Mapping[str, Any] | list[Any],
    *,
    source: str | Where = "<argument>",
    base: str | os.PathLike[str] | None = None,
    configuration: Configuration | None = None,
    new: bool = False,
) -> CacheBase:
    """The one way to open a store: a cache, a name, a path, a URL or a table.

    A name is a reserved one (``"memory"``, ``"void"``) or one configured in
    ``fleche.toml``.  A path is a store directory (its layout is the one
    recorded in its ``fleche-store.json``, else recognised from its
    content: ``calls.db`` or ``calls/``, pickle or HDF5 values; a new or
    empty directory gets the ``sql`` layout; a directory holding a
    ``fleche.toml`` opens that file's default cache), a SQLite file, or a
    ``fleche.toml`` file (its default cache).  A ``sqlite:///`` URL opens
    that database with its values beside it.  A table (or a list: a stack)
    is as in ``fleche.toml``, in our shapes or the 0.22 ones.

    Errors name ``source``; relative paths resolve against ``base`` (the
    working directory by default); names are looked up in
    ``configuration`` (the one in force by default).  The same description
    opens the same object within a process, unless ``new`` is true.
    """
    where = (
        source
        if isinstance(source, Where)
        else Where(source, "", Path.cwd() if base is None else Path(base).absolute())
    )
    if isinstance(spec, Mapping | list):
        return _open_table(spec, configuration, where, new)
    if isinstance(spec, os.PathLike):
        return _open_path(where.path(spec), where)
    if isinstance(spec, str):
        return _open_name(spec, configuration, where)
    if callable(getattr(spec, "query", None)) and callable(getattr(spec, "save", None)):
        return spec  # any object with the cache interface, ours or not
    raise TypeError(
        f"open_cache() takes a cache, a name, a path, a URL or a table, not {type(spec).__name__}"
    )


def _memo(key: str, make: Any) -> CacheBase:
    """One cache object per description in a process (a named memory cache stays the same store)."""
    with _OPENED_LOCK:
        cache = _OPENED.get(key)
    if cache is None:
        cache = make()
        with _OPENED_LOCK:
            cache = _OPENED.setdefault(key, cache)
    return cache


def _opener(configuration: Configuration | None, chain: tuple[str, ...] = ()) -> Any:
    """``named(name, where)`` for the layers of a table: the caches of ``configuration``.

    Without a configuration, the one in force is read when a name is first used.
    """

    def named(name: str, where: Where) -> CacheBase:
        if name in RESERVED:
            return RESERVED[name]()
        known = configuration or load_configuration()
        table, at = named_table(name, where, known, chain)
        key = json.dumps(["named", name, known.stamp()])
        return _memo(key, lambda: build(table, at, _opener(known, (*chain, name))))

    return named


def _open_table(
    spec: Mapping[str, Any] | list[Any],
    configuration: Configuration | None,
    where: Where,
    new: bool,
) -> CacheBase:
    if new:
        return build(spec, where, _opener(configuration))
    key = json.dumps(["table", spec, str(where.base)], sort_keys=True, default=str)
    return _memo(key, lambda: build(spec, where, _opener(configuration)))


def _open_name(spec: str, configuration: Configuration | None, where: Where) -> CacheBase:
    if spec in RESERVED:
        return RESERVED[spec]()
    if "://" in spec:
        return _open_url(spec, where)
    configuration = configuration or load_configuration()
    if spec in configuration.caches:
        return _opener(configuration)(spec, where)
    if _looks_like_path(spec):
        return _open_path(where.path(spec), where)
    raise where.error(
        _unknown(spec, configuration) + " (a path must contain a '/' or start with '.')"
    )


def _unknown(name: str, configuration: Configuration) -> str:
    read = ", ".join(map(str, configuration.files)) or f"none (no {FILE_NAME} found)"
    return (
        f"unknown cache name {name!r}; known names: {', '.join(configuration.names())}; "
        f"configuration files read: {read}"
    )


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec
        or os.sep in spec
        or spec.startswith((".", "~"))
        or spec.endswith((*_SQLITE_SUFFIXES, ".toml"))
        or os.path.exists(spec)
    )


def _open_path(path: Path, where: Where) -> CacheBase:
    path = path.expanduser().absolute()
    if path.suffix == ".toml" or (path.is_dir() and (path / FILE_NAME).is_file()):
        return _open_file(path if path.suffix == ".toml" else path / FILE_NAME)
    if path.suffix in _SQLITE_SUFFIXES:
        table: dict[str, Any] = {"template": "sql", "root": str(path.parent), "url": str(path)}
        return _open_table(table, None, where, False)
    try:
        layout = layout_of(path)
    except ConfigError as err:
        raise where.error(str(err)) from None
    if layout is not None:
        table = {**layout, "root": str(path)}
    elif not path.exists() or (path.is_dir() and not any(path.iterdir())):
        table = {"template": "sql", "root": str(path)}
    else:
        raise where.error(
            f"{path} is not a fleche store (no {MANIFEST}, calls.db, calls/ or {FILE_NAME} in it); "
            "open it with a table naming its template"
        )
    return _open_table(table, None, where, False)


def _open_file(path: Path) -> CacheBase:
    """The default cache of one configuration file (and the caches it names)."""
    configuration = file_configuration(path)
    if configuration.default is None:
        raise ConfigError(
            f"{path}: has no [default] cache to open", file=str(path), key="[default].cache"
        )
    spec, _ = configuration.default
    return open_cache(
        spec, source=Where(str(path), "[default].cache", path.parent), configuration=configuration
    )


def _open_url(url: str, where: Where) -> CacheBase:
    scheme, _, rest = url.partition(":///")
    if scheme.startswith("sqlite") and rest and not rest.startswith(":memory:"):
        database = where.path(rest)
        table = {"template": "sql", "root": str(database.parent), "url": url}
        return _open_table(table, None, where, False)
    raise where.error(
        f"{redact_url(url)!r} holds call records only; give the values a home with a table, e.g. "
        "{'template': 'sql', 'url': ..., 'root': 'values directory'}, or name it in fleche.toml"
    )


# -- what calls the resolver ----------------------------------------------------------


def named_cache(name: str, configuration: Configuration | None = None) -> CacheBase:
    """The cache configured under ``name``; :class:`ConfigError` if there is none."""
    configuration = configuration or load_configuration()
    if name not in RESERVED and name not in configuration.caches:
        raise ConfigError(_unknown(name, configuration), key=name)
    return open_cache(name, source="<name>", configuration=configuration)


def from_config(
    table: Mapping[str, Any], *, base: str | os.PathLike[str] | None = None, source: str = "<table>"
) -> CacheBase:
    """A new cache from a configuration table (as in ``fleche.toml``).

    Relative paths resolve against ``base`` (the working directory by
    default); names in ``layers``/``caches`` are looked up in the
    configuration in force.  The inverse of :func:`to_config`.
    """
    if not isinstance(table, Mapping | list):
        raise ConfigError(f"{source}: a cache is described by a table, got {table!r}", file=source)
    return open_cache(table, source=source, base=base, new=True)


def to_config(
    cache: CacheBase, *, relative_to: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The configuration table of ``cache``: :func:`from_config` builds an equal one.

    Paths are absolute, or relative to ``relative_to``.  A cache holding
    code or live state (a filter's predicate, a custom clock, a secret key)
    raises :class:`ConfigError`.
    """
    return describe(cache, None if relative_to is None else Path(relative_to).absolute())


def embedded_default(directory: str | os.PathLike[str] | None = None) -> CacheBase:
    """The store used when nothing is configured: ``.fleche/`` in ``directory`` (the working one).

    Values are pickle files under ``.fleche/values`` and calls a SQLite
    database at ``.fleche/calls.db``; the directory is created when first used.
    """
    root = (Path.cwd() if directory is None else Path(directory).absolute()) / EMBEDDED_ROOT
    return open_cache({"template": "sql", "root": str(root)})


def default_cache() -> CacheBase:
    """The cache used when none is active: ``FLECHE_CACHE``, else ``[default]``, else the embedded store."""
    spec = os.environ.get(ENV_CACHE)
    if spec:
        return open_cache(spec, source=f"environment variable {ENV_CACHE}")
    configuration = load_configuration()
    if configuration.default is not None:
        spec, path = configuration.default
        where = Where(str(path), "[default].cache", path.parent)
        return open_cache(spec, source=where, configuration=configuration)
    return embedded_default()


# -- the functions of the 0.22 release --------------------------------------------------


def cache_from_config(config: Mapping[str, Any] | list[Any]) -> CacheBase:
    """A new cache from a table (or a list: a stack), in our shapes or the 0.22 ones.

    The 0.22 name of :func:`from_config`; ``BaseCache.from_config`` calls it.
    """
    return from_config(config)  # type: ignore[arg-type]


def cache_to_config(cache: CacheBase) -> dict[str, Any] | list[Any]:
    """The configuration of ``cache`` in the 0.22 shapes where they fit; the inverse of :func:`cache_from_config`.

    A stack is a list of its layers, a pool ``{"pool": [...]}`` and a
    limit on the number of calls ``max_size``; the rest is as :func:`to_config`.
    """
    return in_022_shapes(to_config(cache))


def storage_from_config(config: Mapping[str, Any], kind: str) -> Any:
    """A new storage from ``{type = ..., <settings>}``; ``kind`` is ``"value"`` or ``"call"``.

    Types are ours (``"ValuePickleFile"``) or the 0.22 ones (``"pickle"``,
    ``"cloudpickle"``, ``"dill"``, ``"memory"``, ``"void"``,
    ``"bagofholding_hdf"``, ``"sql"``); relative paths resolve against the
    working directory.
    """
    table = normalize_storage(config, kind)
    return build_storage(table, Where("<table>", "", Path.cwd()), kind.rstrip("s"))


def storage_to_config(storage: Any) -> dict[str, Any]:
    """The table :func:`storage_from_config` builds an equal storage from (secret keys never)."""
    return storage_table(storage)


def load_cache_config(name: str | None = None) -> CacheBase:
    """The cache configured under ``name``, or the default cache (the 0.22 function)."""
    return default_cache() if name is None else named_cache(name)


install_config_reader(cache_from_config)
