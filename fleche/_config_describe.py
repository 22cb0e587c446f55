"""Cache objects back to configuration tables: what ``to_config`` writes.

:func:`describe` is the inverse of :func:`fleche._config_tables.build`: a
cache made of registered storages and the compositions of
:mod:`fleche.caches` becomes the table (a template where one fits) that
builds an equal cache.  A cache holding code or live state has none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ._config_tables import LIMITS, SIZE_INDEX
from .caches import Cache, CacheBase, CachePool, CacheStack, ReadOnlyCache, SizeLimitedCache
from .errors import ConfigError
from .registry import FILE_OPTIONS
from .storage.registry import plain
from .storage.registry import storage_config as storage_table
from .storage.small_values import INLINE_LIMIT
from .store_layout import inline_limit_of

__all__ = ["describe", "storage_table"]


def describe(cache: CacheBase, relative_to: Path | None = None) -> dict[str, Any]:
    """The table :func:`build` turns back into an equal cache; ``ConfigError`` if there is none."""
    kind = type(cache)
    if kind is ReadOnlyCache:
        table = describe(cache.cache, relative_to)
        if "read_only" in table:
            raise ConfigError(
                "a read-only cache inside a read-only cache cannot be written to a configuration"
            )
        return {**table, "read_only": True}
    if kind in (CacheStack, CachePool):
        _default_clock(cache)
        key, members = ("layers", cache.layers) if kind is CacheStack else ("caches", cache.caches)
        table: dict[str, Any] = {"template": "stack" if kind is CacheStack else "pool"}
        table[key] = [describe(member, relative_to) for member in members]
        if cache.retry_after != 60.0:
            table["retry_after"] = cache.retry_after
        return table
    if kind is SizeLimitedCache:
        _default_clock(cache)
        table = describe(cache.cache, relative_to)
        if "read_only" in table:
            raise ConfigError(
                "a size limit around a read-only cache cannot be written to a configuration"
            )
        table.update({k: getattr(cache, k) for k in LIMITS if getattr(cache, k) is not None})
        if cache.policy != "lru":
            table["policy"] = cache.policy
        root = table.get("root")
        default = None if root is None else _absolute(root, relative_to) / SIZE_INDEX
        if cache.index != default:
            if cache.index is None:
                raise ConfigError(
                    "a file store with a size index in memory cannot be written to a configuration"
                )
            table["index"] = plain(cache.index, relative_to)
        return table
    if kind is Cache:
        _default_clock(cache)
        table = _shape(cache.values, cache.calls, relative_to)
        if cache.ttl is not None:
            table["ttl"] = cache.ttl
        return table
    own = getattr(cache, "to_config", None)  # a registered cache type (e.g. ssh) describes itself
    if callable(own):
        return own()
    raise ConfigError(
        f"a {kind.__name__} cannot be written to a configuration (it holds code or live state)"
    )


def _default_clock(cache: Any) -> None:
    if cache.clock is not time.time:
        raise ConfigError(
            f"a {type(cache).__name__} with a custom clock cannot be written to a configuration"
        )


def _absolute(path: str, relative_to: Path | None) -> Path:
    return Path(path) if relative_to is None else relative_to / path


def _shape(values: Any, calls: Any, relative_to: Path | None) -> dict[str, Any]:
    """The template a pair of storages fits, else the explicit form."""
    v, c = storage_table(values, relative_to), storage_table(calls, relative_to)
    if getattr(values, "database", None) == calls:  # the templates keep small values so
        v.pop("database")
    kinds = (v.pop("type"), c.pop("type"))
    if kinds == ("ValueMemory", "CallMemory") and not v and not c:
        return {"template": "memory"}
    if kinds == ("ValueVoid", "CallVoid") and not v and not c:
        return {"template": "void"}
    if kinds == ("ValueObjectStore", "Sql") and set(c) <= {"url"}:
        calls = c.get("url", "sqlite:///:memory:")
        limit = v.pop("inline_limit", 0)  # the template's default, unless it says otherwise
        if limit != INLINE_LIMIT:
            v["inline_limit"] = limit
        return {
            "template": "s3",
            **v,
            **({"calls": calls} if calls != "sqlite:///:memory:" else {}),
        }
    shaped = _file_shape(kinds, dict(v), dict(c), values, relative_to)
    if shaped is not None:
        return shaped
    return {"values": {"type": kinds[0], **v}, "calls": {"type": kinds[1], **c}}


def _file_shape(
    kinds: tuple[str, str], v: dict, c: dict, values: Any, relative_to: Path | None
) -> dict | None:
    if kinds[0] not in ("ValuePickleFile", "ValueBagOfHoldingH5File"):
        return None
    root_path = Path(values.root).parent
    if Path(values.root).name != "values":
        return None
    root = plain(root_path, relative_to)
    v.pop("root")
    table: dict[str, Any] = {"root": root}
    if kinds[1] == "Sql":
        url = c.pop("url", None)
        if c or url is None:
            return None
        if url != plain(root_path / "calls.db", relative_to):
            table["url"] = url
        template = "sql" if kinds[0] == "ValuePickleFile" else "hdf5"
    elif kinds[1] == "CallPickleFile" and Path(c.pop("root")) == Path(
        plain(root_path / "calls", relative_to)
    ):
        template = "pickle" if kinds[0] == "ValuePickleFile" else "hdf5"
        if template == "pickle" and c != v:
            return None
        if template == "hdf5":
            if c:
                return None
            table["calls"] = "pickle"
        c = {}
    else:
        return None
    limit = v.pop("inline_limit", 0)
    if c or not set(v) <= (FILE_OPTIONS if template != "hdf5" else set()):
        return None
    if template == "sql" and limit != inline_limit_of(root_path):
        v["inline_limit"] = limit  # not what opening the store would choose
    elif limit and template != "sql":
        return None
    return {"template": template, **table, **v}
