"""Opening the store decorated calls use, never at the cost of a call.

:func:`fleche.config.open_cache` raises when a store cannot be opened, as
a tool asking for a store should hear.  A decorated call must return its
result anyway: :func:`open_for_calls` gives a stand-in
(:class:`~fleche.caches.unavailable.UnavailableCache`) with one warning
instead, serving from the store opened read-only when that works (a
read-only mount, no write permission), else storing nothing (a corrupt
database, a full disk, an unreachable server), and trying again every
30 seconds.  Mistakes in the configuration (an unknown name, a bad key)
still raise: they are the user's to fix, not a store's state.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .caches import CacheBase, void_cache
from .caches.unavailable import UnavailableCache
from .config import (
    EMBEDDED_ROOT,
    ENV_CACHE,
    FILE_NAME,
    Configuration,
    default_cache,
    from_config,
    load_configuration,
    open_cache,
)
from .errors import ConfigError
from .registry import RESERVED
from .store_layout import FILE_TEMPLATES, layout_of

__all__ = ["default_spec", "open_for_calls", "store_location", "store_table"]

_STAND_INS: dict[str, UnavailableCache] = {}
_STAND_INS_LOCK = threading.Lock()


def default_spec(configuration: Configuration) -> tuple[Any, Path, str]:
    """What the default store is: its spec, the directory it resolves against, and why."""
    spec = os.environ.get(ENV_CACHE)
    if spec:
        return spec, Path.cwd(), f"the store {ENV_CACHE} names"
    if configuration.default is not None:
        spec, file = configuration.default
        return spec, file.parent, f"the [default] cache of {file}"
    why = f"the embedded default: no --cache, no {ENV_CACHE}, no [default] in {FILE_NAME}"
    return EMBEDDED_ROOT, Path.cwd(), why


def store_location(
    spec: Any, base: Path, configuration: Configuration
) -> tuple[Path, dict[str, Any] | None, Path] | None:
    """Where the store ``spec`` names is kept, when that is one directory.

    Its directory, the template table it opens with (``None`` while the
    directory holds no store) and what that table's paths resolve against;
    ``None`` for anything else (a URL, memory, a composition, a SQLite
    file, a configuration file).  :class:`ConfigError` if the directory's
    content contradicts itself.
    """
    if isinstance(spec, Mapping):
        root = spec.get("root")
        if spec.get("template") not in FILE_TEMPLATES or not isinstance(root, str):
            return None
        return base / Path(root).expanduser(), dict(spec), base
    if not isinstance(spec, str | os.PathLike) or "://" in str(spec) or spec in RESERVED:
        return None
    if spec in configuration.caches:
        table, file = configuration.caches[spec]
        return store_location(table, file.parent, configuration)
    path = base / Path(spec).expanduser()
    if path.is_file() or (path / FILE_NAME).is_file():
        return None
    layout = layout_of(path) if path.is_dir() else None
    return path, None if layout is None else {**layout, "root": str(path)}, base


def store_table(
    spec: Any, base: Path, configuration: Configuration
) -> tuple[dict[str, Any], Path] | None:
    """The template table of a store kept in one directory, and what its paths resolve against.

    ``None`` for anything else (a URL, memory, a composition, a
    configuration file) and for a directory that holds no store.
    """
    try:
        location = store_location(spec, base, configuration)
    except ConfigError:
        return None
    if location is None or location[1] is None:
        return None
    return location[1], location[2]


def _writable(cache: CacheBase, table: tuple[dict[str, Any], Path] | None) -> CacheBase:
    """``cache``, or ``PermissionError`` if its directory exists and cannot be written."""
    if table is not None and not table[0].get("read_only", False):
        root = table[1] / Path(table[0]["root"]).expanduser()
        if root.is_dir() and not os.access(root, os.W_OK):
            raise PermissionError(errno.EACCES, "cannot write to the store's directory", str(root))
    return cache


def open_for_calls(spec: Any = None) -> CacheBase:
    """The cache ``spec`` names (the default one for ``None``), for decorated calls.

    A store that cannot be opened, or not written, gives an
    :class:`UnavailableCache` with one warning; it is the same object for
    every later call with the same ``spec`` here, so the warning is not
    repeated and opening is retried at most every 30 seconds.
    """
    if isinstance(spec, str) and spec in RESERVED:
        return open_cache(spec)
    key = json.dumps([spec, os.getcwd(), os.environ.get(ENV_CACHE)], default=str)
    with _STAND_INS_LOCK:
        stand_in = _STAND_INS.get(key)
    if stand_in is not None:
        return stand_in.current() if stand_in.available else stand_in
    configuration = load_configuration()
    if spec is None:
        found, base, _ = default_spec(configuration)
        table = store_table(found, base, configuration)
    else:
        table = store_table(spec, Path.cwd(), configuration)

    def attempt() -> CacheBase:
        opened = default_cache() if spec is None else open_cache(spec)
        return _writable(opened, table)

    try:
        return attempt()
    except (ConfigError, ImportError, TypeError):
        raise
    except Exception as err:
        fallback = _read_only(table)
        name = str(spec if spec is not None else "(the default store)")
        stand_in = UnavailableCache(name, attempt, err, fallback)
        with _STAND_INS_LOCK:
            return _STAND_INS.setdefault(key, stand_in)


def _read_only(table: tuple[dict[str, Any], Path] | None) -> CacheBase:
    """The store opened for reading only, when it can be; else a cache that stores nothing."""
    if table is not None:
        try:
            cache = from_config({**table[0], "read_only": True}, base=table[1])
            cache.contains("0" * 32)  # one read: a corrupt database opens, but fails here
            return cache
        except Exception:  # noqa: BLE001 - not even readable: the calls run without it
            pass
    return void_cache()
