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
file and the key.

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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config_forms import (
    CACHE_TYPES,
    CONFIGURABLE,
    configurable,
    in_022_shapes,
    metadata_names,
    normalize,
    normalize_storage,
    register_cache_type,
)
from ._config_tables import (
    TEMPLATES,
    Where,
    build,
    build_storage,
    describe,
    register_storage,
    storage_table,
    validate,
)
from .caches import CacheBase, memory_cache, void_cache
from .caches.base import install_config_reader
from .errors import ConfigError
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

FILE_NAME = "fleche.toml"
ENV_CACHE = "FLECHE_CACHE"
ENV_CONFIG = "FLECHE_CONFIG"
#: Cache names every process knows without a configuration file.
RESERVED = {"memory": memory_cache, "void": void_cache}
#: Where the embedded default store lives, under the working directory.
EMBEDDED_ROOT = ".fleche"

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_OPENED: dict[str, CacheBase] = {}
_OPENED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Configuration:
    """What the configuration files say, merged (closest first in ``files``)."""

    files: tuple[Path, ...]
    caches: Mapping[str, tuple[Mapping[str, Any], Path]]
    default: tuple[Any, Path] | None
    #: ``[default] metadata``: recorder class names, and the file naming them.
    metadata: tuple[tuple[str, ...], Path] | None = None

    def names(self) -> list[str]:
        """Every cache name known: the reserved ones and the configured ones."""
        return sorted({*RESERVED, *self.caches})

    def _stamp(self) -> str:
        stats = []
        for file in self.files:
            info = file.stat()
            stats.append((str(file), info.st_mtime_ns, info.st_size))
        return json.dumps(stats)


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}", file=str(path)) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err}", file=str(path)) from None


def _user_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("fleche")) / FILE_NAME


def _candidates(start: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The configuration files in force, closest first, each with its content."""
    found: list[tuple[Path, dict[str, Any]]] = []
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        path = Path(explicit).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"{ENV_CONFIG}={explicit!r} does not name a file", file=ENV_CONFIG)
        found.append((path, _read(path)))
    seen = {path for path, _ in found}
    for directory in (start, *start.parents):
        path = directory / FILE_NAME
        if path in seen or not path.is_file():
            continue
        data = _read(path)
        found.append((path, data))
        if _is_root(path, data):
            return found
    user = _user_file()
    if user.is_file() and user not in seen and all(p != user for p, _ in found):
        found.append((user, _read(user)))
    return found


def _is_root(path: Path, data: Mapping[str, Any]) -> bool:
    """Whether the file says ``root = true``: at its top, or in ``[default]`` (the 0.22 place)."""
    flags = {"root": data.get("root", False)}
    default = data.get("default")
    if isinstance(default, Mapping):
        flags["[default].root"] = default.get("root", False)
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(
                f"{path}: {key}: expected true or false, got {value!r}", file=str(path), key=key
            )
    return any(flags.values())


def load_configuration(start: str | os.PathLike[str] | None = None) -> Configuration:
    """The configuration in force in ``start`` (the working directory by default).

    Every file is checked whole: a mistake in a cache nobody opens is still
    an error, never ignored.
    """
    start = Path.cwd() if start is None else Path(start).absolute()
    found = _candidates(start)
    caches: dict[str, tuple[Mapping[str, Any], Path]] = {}
    default: tuple[Any, Path] | None = None
    metadata: tuple[tuple[str, ...], Path] | None = None
    for path, data in reversed(found):  # farthest first: closer files overwrite
        for name, value in data.items():
            if name == "root":
                _is_root(path, data)
            elif name == "default":
                default = _default_table(path, value) or default
                metadata = metadata_names(path, value) or metadata
            elif name in RESERVED:
                raise ConfigError(
                    f"{path}: [{name}]: {name!r} is a reserved cache name; choose another",
                    file=str(path),
                    key=name,
                )
            elif isinstance(value, Mapping | list):  # a list: an array of tables, a stack
                caches[name] = (value, path)
            else:
                raise ConfigError(
                    f"{path}: {name}: unknown top-level key (expected 'root', [default] or a cache table)",
                    file=str(path),
                    key=name,
                )
    configuration = Configuration(tuple(p for p, _ in found), caches, default, metadata)
    for name, (table, path) in caches.items():
        _check(table, Where(str(path), f"[{name}]", path.parent), configuration, (name,))
    return configuration


def _default_table(path: Path, value: Any) -> tuple[Any, Path] | None:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{path}: default: expected a table [default]", file=str(path), key="default"
        )
    for key in value:
        if key not in ("cache", "metadata", "root"):
            raise ConfigError(
                f"{path}: [default].{key}: unknown key; [default] takes 'cache', 'metadata' and 'root'",
                file=str(path),
                key=f"[default].{key}",
            )
    if "cache" not in value:
        return None
    if not isinstance(value["cache"], str | Mapping):
        raise ConfigError(
            f"{path}: [default].cache: expected a cache name, a path or a table",
            file=str(path),
            key="[default].cache",
        )
    return value["cache"], path


def _check(table: Any, where: Where, configuration: Configuration, chain: tuple[str, ...]) -> None:
    """Validate a table and the names it uses, without opening anything."""
    table = normalize(table)
    template = validate(table, where)
    if template in ("stack", "pool"):
        key = "layers" if template == "stack" else "caches"
        for i, item in enumerate(table[key]):
            at = where.at(f"{key}[{i}]")
            if isinstance(item, str):
                _check_name(item, at, configuration, chain)
            else:
                _check(item, at, configuration, chain)


def _check_name(
    name: str, where: Where, configuration: Configuration, chain: tuple[str, ...]
) -> None:
    if name in RESERVED:
        return
    table, at = _named_table(name, where, configuration, chain)
    _check(table, at, configuration, (*chain, name))


def _named_table(
    name: str, where: Where, configuration: Configuration, chain: tuple[str, ...]
) -> tuple[dict[str, Any], Where]:
    """The table of cache ``name`` and where it is written; errors name ``where``."""
    if name in chain:
        raise where.error(
            f"the caches {' -> '.join((*chain, name))} refer to each other in a cycle"
        )
    if name not in configuration.caches:
        raise where.error(
            f"unknown cache name {name!r}; known names: {', '.join(configuration.names())}"
        )
    table, path = configuration.caches[name]
    return table, Where(str(path), f"[{name}]", path.parent)


# -- opening ------------------------------------------------------------------------


def _memo(key: str, make: Any) -> CacheBase:
    """One cache object per description in a process (a named memory cache stays the same store)."""
    with _OPENED_LOCK:
        cache = _OPENED.get(key)
    if cache is None:
        cache = make()
        with _OPENED_LOCK:
            cache = _OPENED.setdefault(key, cache)
    return cache


def _opener(configuration: Configuration, chain: tuple[str, ...] = ()) -> Any:
    def named(name: str, where: Where) -> CacheBase:
        if name in RESERVED:
            return RESERVED[name]()
        table, at = _named_table(name, where, configuration, chain)
        key = json.dumps(["named", name, configuration._stamp()])
        return _memo(key, lambda: build(table, at, _opener(configuration, (*chain, name))))

    return named


def named_cache(name: str, configuration: Configuration | None = None) -> CacheBase:
    """The cache configured under ``name``; :class:`ConfigError` if there is none."""
    configuration = configuration or load_configuration()
    if name not in RESERVED and name not in configuration.caches:
        read = ", ".join(map(str, configuration.files)) or f"none (no {FILE_NAME} found)"
        raise ConfigError(
            f"unknown cache name {name!r}; known names: {', '.join(configuration.names())}; "
            f"configuration files read: {read}",
            key=name,
        )
    return _opener(configuration)(name, Where("<name>", "", Path.cwd()))


def from_config(
    table: Mapping[str, Any], *, base: str | os.PathLike[str] | None = None, source: str = "<table>"
) -> CacheBase:
    """A new cache from a configuration table (as in ``fleche.toml``).

    Relative paths resolve against ``base`` (the working directory by
    default); names in ``layers``/``caches`` are looked up in the
    configuration in force.  The inverse of :func:`to_config`.
    """
    base_dir = Path.cwd() if base is None else Path(base).absolute()
    where = Where(source, "", base_dir)
    return build(table, where, _lazy_named)


def _lazy_named(name: str, where: Where) -> CacheBase:
    if name in RESERVED:
        return RESERVED[name]()
    configuration = load_configuration()
    if name not in configuration.caches:
        raise where.error(
            f"unknown cache name {name!r}; known names: {', '.join(configuration.names())}"
        )
    return _opener(configuration)(name, where)


def to_config(
    cache: CacheBase, *, relative_to: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The configuration table of ``cache``: :func:`from_config` builds an equal one.

    Paths are absolute, or relative to ``relative_to``.  A cache holding
    code or live state (a filter's predicate, a custom clock, a secret key)
    raises :class:`ConfigError`.
    """
    return describe(cache, None if relative_to is None else Path(relative_to).absolute())


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


#: The recorders used when ``[default] metadata`` names none.
DEFAULT_METADATA = ("Runtime", "Environment", "Git", "Tags")


def load_default_metadata() -> tuple[Any, ...]:
    """New recorders of the classes ``[default] metadata`` names (else :data:`DEFAULT_METADATA`).

    A name must be registered with :func:`configurable` (the built-in
    recorders are); an unknown one is a :class:`ConfigError`.
    """
    configured = load_configuration().metadata
    names, source = configured if configured else (DEFAULT_METADATA, None)
    unknown = [name for name in names if name not in CONFIGURABLE]
    if unknown:
        raise ConfigError(
            f"{source or '<defaults>'}: [default].metadata: unknown recorder {unknown[0]!r}; "
            f"known: {', '.join(sorted(CONFIGURABLE))} (register more with @configurable)",
            file=None if source is None else str(source),
            key="[default].metadata",
        )
    return tuple(CONFIGURABLE[name]() for name in names)


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
        return _open(spec, configuration, Where(str(path), "[default].cache", path.parent))
    return embedded_default()


def open_cache(
    spec: CacheBase | str | os.PathLike[str] | Mapping[str, Any], *, source: str = "<argument>"
) -> CacheBase:
    """The one way to open a store: a cache, a name, a path, a URL or a table.

    A name is a reserved one (``"memory"``, ``"void"``) or one configured in
    ``fleche.toml``.  A path is a store directory (its layout is recognised:
    ``calls.db`` for the ``sql`` template, ``calls/`` for ``pickle``, or a
    ``fleche.toml`` inside it; its layout is the one recorded in its
    ``fleche-store.json``, else recognised from its content: ``calls.db``
    or ``calls/``, pickle or HDF5 values; a new or empty directory gets
    the ``sql`` layout), a SQLite file, or a ``fleche.toml`` file (its default cache).
    A ``sqlite:///`` URL opens that database with its values beside it.
    The same description opens the same object within a process.
    """
    if isinstance(spec, Mapping | list):
        return _open(spec, None, Where(source, "", Path.cwd()))
    if isinstance(spec, os.PathLike):
        return _open_path(Path(spec), Where(source, "", Path.cwd()))
    if not isinstance(spec, str):
        if callable(getattr(spec, "query", None)) and callable(getattr(spec, "save", None)):
            return spec  # any object with the cache interface, ours or not
        raise TypeError(
            f"open_cache() takes a cache, a name, a path, a URL or a table, not {type(spec).__name__}"
        )
    return _open(spec, None, Where(source, "", Path.cwd()))


def _open(spec: Any, configuration: Configuration | None, where: Where) -> CacheBase:
    if isinstance(spec, Mapping | list):
        key = json.dumps(["table", spec, str(where.base)], sort_keys=True, default=str)
        return _memo(
            key,
            lambda: build(
                spec, where, _lazy_named if configuration is None else _opener(configuration)
            ),
        )
    if spec in RESERVED:
        return RESERVED[spec]()
    if "://" in spec:
        return _open_url(spec, where)
    configuration = configuration or load_configuration()
    if spec in configuration.caches:
        return _opener(configuration)(spec, where)
    if _looks_like_path(spec):
        return _open_path(where.path(spec), where)
    read = ", ".join(map(str, configuration.files)) or f"none (no {FILE_NAME} found)"
    raise where.error(
        f"unknown cache name {spec!r}; known names: {', '.join(configuration.names())}; "
        f"configuration files read: {read} (a path must contain a '/' or start with '.')"
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
        return _open(table, None, where)
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
    return _open(table, None, where)


def _open_file(path: Path) -> CacheBase:
    """The default cache of one configuration file (and the caches it names)."""
    data = _read(path)
    caches = {
        k: (v, path) for k, v in data.items() if isinstance(v, Mapping | list) and k != "default"
    }
    default = _default_table(path, data.get("default", {}))
    metadata = metadata_names(path, data.get("default", {}))
    configuration = Configuration((path,), caches, default, metadata)
    for name, (table, _) in caches.items():
        _check(table, Where(str(path), f"[{name}]", path.parent), configuration, (name,))
    if default is None:
        raise ConfigError(
            f"{path}: has no [default] cache to open", file=str(path), key="[default].cache"
        )
    return _open(default[0], configuration, Where(str(path), "[default].cache", path.parent))


def _open_url(url: str, where: Where) -> CacheBase:
    scheme, _, rest = url.partition(":///")
    if scheme.startswith("sqlite") and rest and not rest.startswith(":memory:"):
        database = where.path(rest)
        return _open({"template": "sql", "root": str(database.parent), "url": url}, None, where)
    raise where.error(
        f"{url!r} holds call records only; give the values a home with a table, e.g. "
        "{'template': 'sql', 'url': ..., 'root': 'values directory'}, or name it in fleche.toml"
    )


install_config_reader(cache_from_config)
