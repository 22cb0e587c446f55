"""The configuration files in force: finding, reading and checking ``fleche.toml``.

Files are read from the working directory upward, then from the user
configuration directory; ``FLECHE_CONFIG`` names one read before all of
them (see :mod:`fleche.config`).  Every file is checked whole when it is
read, without opening any store.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config_forms import normalize
from ._config_tables import Where, validate
from .errors import ConfigError
from .registry import CONFIGURABLE, RESERVED

__all__ = [
    "DEFAULT_METADATA",
    "ENV_CONFIG",
    "FILE_NAME",
    "Configuration",
    "file_configuration",
    "load_configuration",
    "load_default_metadata",
    "metadata_names",
    "named_table",
]

FILE_NAME = "fleche.toml"
ENV_CONFIG = "FLECHE_CONFIG"
#: The recorders used when ``[default] metadata`` names none.
DEFAULT_METADATA = ("Runtime", "Environment", "Git", "Tags")


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

    def stamp(self) -> str:
        """What changes when a file in force changes: a key for caches opened from it."""
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
    table, at = named_table(name, where, configuration, chain)
    _check(table, at, configuration, (*chain, name))


def named_table(
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


def file_configuration(path: Path) -> Configuration:
    """The configuration of one file alone (a ``fleche.toml`` opened by its path), checked."""
    data = _read(path)
    caches = {
        k: (v, path) for k, v in data.items() if isinstance(v, Mapping | list) and k != "default"
    }
    default = _default_table(path, data.get("default", {}))
    metadata = metadata_names(path, data.get("default", {}))
    configuration = Configuration((path,), caches, default, metadata)
    for name, (table, _) in caches.items():
        _check(table, Where(str(path), f"[{name}]", path.parent), configuration, (name,))
    return configuration


def metadata_names(path: Path, value: Mapping[str, Any]) -> tuple[tuple[str, ...], Path] | None:
    """``[default] metadata``: a list of recorder class names (checked when they are built)."""
    if "metadata" not in value:
        return None
    names = value["metadata"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f'{path}: [default].metadata: expected a list of recorder names, e.g. ["Runtime"]',
            file=str(path),
            key="[default].metadata",
        )
    return tuple(names), path


def load_default_metadata() -> tuple[Any, ...]:
    """New recorders of the classes ``[default] metadata`` names (else :data:`DEFAULT_METADATA`).

    A name must be registered with :func:`~fleche.registry.configurable` (the built-in
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
