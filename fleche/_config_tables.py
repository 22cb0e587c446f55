"""The one translator between configuration tables and cache objects.

A table is what a ``fleche.toml`` section holds (a ``dict``): a
``template`` naming a common shape, or explicit ``values``/``calls``
storage tables, plus modifiers.  :func:`build` turns a table into exactly
the constructors of :mod:`fleche.caches` and :mod:`fleche.storage`;
:func:`describe` turns such an object back into a table.  Every unknown
key, template or storage is a :class:`~fleche.errors.ConfigError` saying
which file and which key.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._config_forms import normalize
from .caches import Cache, CacheBase, CachePool, CacheStack, ReadOnlyCache, SizeLimitedCache
from .errors import ConfigError
from .expiry import parse_duration, seconds
from .registry import CACHE_TYPES, FILE_OPTIONS, TEMPLATES, cache_type
from .storage.registry import get_storage_constructor, storage_names
from .storage.small_values import INLINE_LIMIT, beside
from .store_layout import check_layout, inline_limit_of, record_layout

__all__ = ["LIMITS", "SIZE_INDEX", "Where", "build", "build_storage", "duration", "validate"]

_CACHE_KEYS = frozenset({"ttl", "max_bytes", "max_calls", "policy", "index"})
#: The keys that put a size limit on a cache.
LIMITS = ("max_bytes", "max_calls")
_EXPLICIT = frozenset({"values", "calls"})
#: Size index of a size-limited file store, under its root.
SIZE_INDEX = "size-index.db"


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a table comes from: a file (or other source), a key path, the directory paths resolve against."""

    file: str
    key: str
    base: Path

    def at(self, key: str) -> Where:
        sep = "" if key.startswith("[") else "."
        return Where(self.file, f"{self.key}{sep}{key}" if self.key else key, self.base)

    def error(self, message: str) -> ConfigError:
        where = f"{self.file}: {self.key}: " if self.key else f"{self.file}: "
        return ConfigError(where + message, file=self.file, key=self.key or None)

    def path(self, value: Any) -> Path:
        if not isinstance(value, str | os.PathLike) or not str(value):
            raise self.error(f"expected a path (a string), got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path


def duration(value: Any, where: Where) -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"12h"``, ``"7d"``, ``"2w"``."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            raise where.error(
                f"expected seconds or a duration such as '12h' or '7d', got {value!r}"
            ) from None
    try:
        return seconds(value, "a duration")
    except (TypeError, ValueError) as err:
        raise where.error(str(err)) from None


def _get(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: Where,
    default: Any = None,
) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise where.at(key).error(f"expected {names}, got {value!r}")
    return value


# -- tables to objects -------------------------------------------------------------


def validate(table: Any, where: Where) -> str | None:
    """Check a table's template, keys and modifiers (nothing is opened); returns the template.

    ``table`` is in our shapes (see :func:`fleche._config_forms.normalize`).
    """
    if not isinstance(table, Mapping):
        raise where.error(f"a cache is described by a table, got {table!r}")
    if "type" in table:
        if table["type"] in CACHE_TYPES:
            return None
        raise where.at("type").error(
            f"unknown cache type {table['type']!r}; known types: {', '.join(sorted(CACHE_TYPES)) or 'none'}"
        )
    template = table.get("template")
    if template is None and not _EXPLICIT & table.keys():
        raise where.error(
            f"no 'template' (one of {', '.join(TEMPLATES)}) and no explicit 'values'/'calls' storages"
        )
    if template is not None and template not in TEMPLATES:
        raise where.at("template").error(
            f"unknown template {template!r}; known templates: {', '.join(TEMPLATES)}"
        )
    allowed = {"template", "read_only"} | (TEMPLATES[template] if template else _EXPLICIT)
    if template not in ("stack", "pool"):
        allowed |= _CACHE_KEYS
    for key in table:
        if key not in allowed:
            kind = f"a {template}" if template else "an explicit"
            raise where.at(key).error(
                f"unknown key for {kind} cache; allowed: {', '.join(sorted(allowed))}"
            )
    _get(table, "read_only", bool, where)
    if template in ("stack", "pool"):
        key = "layers" if template == "stack" else "caches"
        if not _get(table, key, list, where):
            raise where.at(key).error(
                f"a {template} needs a non-empty list of caches (tables or names)"
            )
    if "ttl" in table:
        duration(table["ttl"], where.at("ttl"))
    if "retry_after" in table:
        duration(table["retry_after"], where.at("retry_after"))
    _get(table, "max_bytes", int, where)
    _get(table, "max_calls", int, where)
    _get(table, "policy", str, where)
    if not any(k in table for k in LIMITS) and ("policy" in table or "index" in table):
        raise where.at("policy" if "policy" in table else "index").error(
            "only meaningful with max_bytes or max_calls (max_size)"
        )
    return template


def build(table: Any, where: Where, named: Callable[[str, Where], CacheBase]) -> CacheBase:
    """The cache a table describes; ``named(name, where)`` opens a cache named in ``layers``/``caches``."""
    table = normalize(table)
    template = validate(table, where)
    if table.get("type") in CACHE_TYPES:
        cache = cache_type(table["type"])(table, where.base)
    elif template in ("stack", "pool"):
        cache = _layered(table, template, where, named)
    else:
        cache = _cache(table, template, where)
    if _get(table, "read_only", bool, where, False):
        cache = ReadOnlyCache(cache)
    return cache


def _layered(
    table: Mapping[str, Any], template: str, where: Where, named: Callable[[str, Where], CacheBase]
) -> CacheBase:
    key = "layers" if template == "stack" else "caches"
    items = table[key]
    members = []
    for i, item in enumerate(items):
        at = where.at(f"{key}[{i}]")
        members.append(named(item, at) if isinstance(item, str) else build(item, at, named))
    options = {}
    if "retry_after" in table:
        options["retry_after"] = duration(table["retry_after"], where.at("retry_after"))
    return (CacheStack if template == "stack" else CachePool)(members, **options)


def _construct(cls: Callable[..., Any], where: Where, **fields: Any) -> Any:
    try:
        return cls(**fields)
    except ConfigError as err:
        raise where.error(str(err)) from err
    except (TypeError, ValueError) as err:
        raise where.error(f"{getattr(cls, '__name__', cls)}: {err}") from err


def build_storage(table: Any, where: Where, kind: str) -> Any:
    """The ``kind`` (value or call) storage a ``{type = ..., <settings>}`` table describes."""
    if not isinstance(table, Mapping) or "type" not in table:
        raise where.error(
            f"a storage is a table with a 'type' (one of {', '.join(storage_names(kind))}), "
            f"got {table!r}"
        )
    try:
        cls = get_storage_constructor(table["type"], kind)
    except ConfigError as err:
        raise where.at("type").error(str(err)) from None
    fields = inspect.signature(cls).parameters  # a class, a preset (partial) or a factory
    anything = any(p.kind is p.VAR_KEYWORD for p in fields.values())
    arguments = {}
    for key, value in table.items():
        if key == "type":
            continue
        if (key not in fields and not anything) or key == "storage":
            raise where.at(key).error(
                f"{table['type']} has no setting {key!r}; settings: {', '.join(sorted(fields))}"
            )
        if key == "root":
            value = where.at(key).path(value)
        elif key == "url" and isinstance(value, str):
            value = _url(value, where.at(key))
        elif key == "database" and isinstance(value, Mapping):  # where small values are kept
            value = build_storage(value, where.at(key), "call")
        arguments[key] = tuple(value) if isinstance(value, list) else value
    return _construct(cls, where, **arguments)


def _url(value: str, where: Where) -> str:
    """A URL with a relative (or ``~``) SQLite path made absolute against the file naming it."""
    if "://" not in value:
        return str(where.path(value))
    scheme, _, rest = value.partition(":///")
    if scheme.startswith("sqlite") and rest and not rest.startswith(("/", ":memory:", "file:")):
        return f"{scheme}:///{where.path(rest)}"
    return value


def _cache(table: Mapping[str, Any], template: str | None, where: Where) -> CacheBase:
    storages = _file_storages if template in ("pickle", "sql", "hdf5") else _plain_storages
    if template == "s3":
        storages = _object_storages
    values, calls, root = storages(table, template, where)
    ttl = duration(table["ttl"], where.at("ttl")) if "ttl" in table else None
    cache: CacheBase = Cache(values, calls, ttl=ttl)
    if any(k in table for k in LIMITS):
        index = table.get("index")
        if index is not None:
            index = where.at("index").path(index)
        elif root is not None:
            index = root / SIZE_INDEX
        cache = _construct(
            SizeLimitedCache,
            where,
            cache=cache,
            max_bytes=_get(table, "max_bytes", int, where),
            max_calls=_get(table, "max_calls", int, where),
            policy=_get(table, "policy", str, where, "lru"),
            index=index,
        )
    return cache


def _plain_storages(
    table: Mapping[str, Any], template: str | None, where: Where
) -> tuple[Any, Any, None]:
    if template == "memory":
        from .storage.memory import CallMemory, ValueMemory

        return ValueMemory(), CallMemory(), None
    if template == "void":
        from .storage.void import CallVoid, ValueVoid

        return ValueVoid(), CallVoid(), None
    for key in _EXPLICIT:
        if key not in table:
            raise where.error(
                f"an explicit cache needs both 'values' and 'calls' storages; '{key}' is missing"
            )
    calls = build_storage(table["calls"], where.at("calls"), "call")
    return beside(build_storage(table["values"], where.at("values"), "value"), calls), calls, None


def _object_storages(
    table: Mapping[str, Any], template: str | None, where: Where
) -> tuple[Any, Any, None]:
    """Values in an object store (``url = "s3://bucket/prefix"``), calls in SQL (``calls``)."""
    if "url" not in table:
        raise where.error("the s3 template needs a 'url' (s3://bucket/prefix) for its values")
    keys = ("url", "endpoint", "region", "profile", *sorted(FILE_OPTIONS))
    values = {"type": "ValueObjectStore", **{k: table[k] for k in keys if k in table}}
    calls = {"type": "Sql", "url": _get(table, "calls", str, where, "sqlite:///:memory:")}
    opened_calls = build_storage(calls, where, "call")
    values["database"] = opened_calls  # small values beside the records: no PUT for them
    values["inline_limit"] = _get(table, "inline_limit", int, where, INLINE_LIMIT)
    return build_storage(values, where, "value"), opened_calls, None


def _file_storages(
    table: Mapping[str, Any], template: str | None, where: Where
) -> tuple[Any, Any, Path]:
    if "root" not in table:
        raise where.error(f"the {template} template needs a 'root' directory")
    root = where.at("root").path(table["root"])
    options = {k: table[k] for k in FILE_OPTIONS if k in table}
    sql = {"type": "Sql", "url": _get(table, "url", str, where, str(root / "calls.db"))}
    if template == "pickle":
        values = {"type": "ValuePickleFile", "root": str(root / "values"), **options}
        calls = {"type": "CallPickleFile", "root": str(root / "calls"), **options}
    elif template == "sql":
        values = {"type": "ValuePickleFile", "root": str(root / "values"), **options}
        calls = sql
    else:
        values = {"type": "ValueBagOfHoldingH5File", "root": str(root / "values")}
        kind = _get(table, "calls", str, where, "sql")
        if kind not in ("sql", "pickle"):
            raise where.at("calls").error(
                f"the hdf5 template keeps calls in 'sql' or 'pickle', not {kind!r}"
            )
        if kind == "pickle" and "url" in table:
            raise where.at("url").error("a url is only used with calls = 'sql'")
        calls = sql if kind == "sql" else {"type": "CallPickleFile", "root": str(root / "calls")}
    layout = {"template": template, **{k: table[k] for k in ("calls", *options) if k in table}}
    if calls is sql:
        layout["url"] = _url(sql["url"], where)
    if template == "sql":
        layout["inline_limit"] = _get(table, "inline_limit", int, where, inline_limit_of(root))
    check_layout(root, layout)
    read_only = table.get("read_only", False)
    opened_calls = (
        _read_only_calls(calls, where) if read_only else build_storage(calls, where, "call")
    )
    if template == "sql":  # small values beside the records (storage/small_values.py)
        values = {**values, "database": opened_calls, "inline_limit": layout["inline_limit"]}
    opened = build_storage(values, where, "value"), opened_calls, root
    if not read_only:
        record_layout(root, layout)
    return opened


def _read_only_calls(calls: dict[str, Any], where: Where) -> Any:
    """The call storage of a read-only store: opened as usual if it can be, else without writing.

    A SQLite file that cannot be opened as usual (no write permission, a
    read-only file system) is opened with ``mode=ro``, which still reads
    what others write; failing that (SQLite cannot even share its lock
    memory) with ``immutable=1``: the database must not change while it is
    read, as with a finished store on a read-only mount or a snapshot.
    """
    try:
        return build_storage(calls, where, "call")
    except ConfigError:
        raise
    except Exception:
        url = calls.get("url")
        if calls["type"] != "Sql" or not isinstance(url, str):
            raise
        url = _url(url, where)
        path = url.partition(":///")[2] if url.startswith("sqlite") else url
        if "://" in path or path.startswith("file:") or path in ("", ":memory:"):
            raise
    try:
        return build_storage(
            {**calls, "url": f"sqlite:///file:{path}?mode=ro&uri=true"}, where, "call"
        )
    except Exception:  # noqa: BLE001 - e.g. a read-only file system: no lock memory to share
        return build_storage(
            {**calls, "url": f"sqlite:///file:{path}?immutable=1&uri=true"}, where, "call"
        )
