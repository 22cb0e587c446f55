"""One registry of storages by name and kind: what configuration tables and ``to_config`` name.

A name and a kind (``"value"`` or ``"call"``) give a constructor.  Built-in
entries are ``"module:Class"`` strings imported on first use, so naming a
store never imports h5py or SQLAlchemy; a missing package raises an
``ImportError`` that says which extra to install.  Each class is known by
its own name (``ValuePickleFile``) and the 0.22 names are kept beside
(``{type = "pickle"}`` is a ``ValuePickleFile`` under ``values`` and a
``CallPickleFile`` under ``calls``).  Third-party storages register with
:func:`register_storage` or through the entry-point group
``fleche.storages`` (``name = "module:Class"``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from .redaction import redact_url

__all__ = [
    "EXTRAS",
    "KINDS",
    "get_storage_constructor",
    "import_target",
    "is_registered_storage",
    "plain",
    "register_storage",
    "storage_config",
    "storage_name",
    "storage_names",
    "spelled_out",
]

Kind = Literal["value", "call"]
KINDS: tuple[str, ...] = ("value", "call")
#: Storage modules that need an optional package -> the pip extra that provides it.
EXTRAS: dict[str, str] = {"sql": "sql", "bagofholding_file": "hdf5", "object_store": "s3"}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A constructor, or where to import it from, and the options a 0.22 name presets."""

    target: str | Callable[..., Any]
    extra: str | None = None
    preset: tuple[tuple[str, Any], ...] = ()


def _builtin() -> dict[tuple[str, str], _Entry]:
    table: dict[tuple[str, str], _Entry] = {}
    modules = {
        "Memory": "memory",
        "Void": "void",
        "PickleFile": "pickle_file",
        "BagOfHoldingH5File": "bagofholding_file",
    }
    for suffix, module in modules.items():
        for kind in KINDS:
            cls = f"{kind.title()}{suffix}"
            table[cls, kind] = _Entry(f"fleche.storage.{module}:{cls}", EXTRAS.get(module))
    table["Sql", "call"] = _Entry("fleche.storage.sql:Sql", EXTRAS["sql"])
    table["ValueObjectStore", "value"] = _Entry(
        "fleche.storage.object_store:ValueObjectStore", EXTRAS["object_store"]
    )
    # the 0.22 names
    for kind in KINDS:
        title = kind.title()
        table["memory", kind] = table[f"{title}Memory", kind]
        table["void", kind] = table[f"{title}Void", kind]
        table["pickle", kind] = table[f"{title}PickleFile", kind]
        for serializer in ("cloudpickle", "dill"):
            table[serializer, kind] = dataclasses.replace(
                table["pickle", kind], preset=(("serializer", serializer),)
            )
        table["bagofholding_hdf", kind] = table[f"{title}BagOfHoldingH5File", kind]
    table["sql", "call"] = table["Sql", "call"]
    return table


_STORAGES: dict[tuple[str, str], _Entry] = _builtin()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"a storage kind is 'value' or 'call', not {kind!r}")


def register_storage(
    name: str,
    kind: Kind,
    *,
    factory: Callable[..., Any] | str | None = None,
    replace: bool = False,
    extra: str | None = None,
) -> Any:
    """Make a storage usable as ``{type = name}`` for values or calls (``kind``).

    ``factory`` is the constructor (a class, a function, or a lazy
    ``"module:Class"``); without it this is a class decorator::

        @register_storage("mine", "value")
        @dataclasses.dataclass(frozen=True)
        class ValueMine(ValueMixin, MineBackend): ...

    Registering a taken name raises unless ``replace=True``; ``extra``
    names the pip extra that provides a lazy target's dependencies.
    """
    _check_kind(kind)

    def register(target: Any) -> Any:
        taken = _STORAGES.get((name, kind))
        if taken is not None and not replace and taken.target is not target:
            raise ConfigError(
                f"a {kind} storage named {name!r} is registered already ({taken.target}); "
                "pass replace=True"
            )
        _STORAGES[name, kind] = _Entry(target, extra)
        return target

    return register if factory is None else register(factory)


def storage_names(kind: Kind | None = None) -> list[str]:
    """The registered names (of one kind), sorted."""
    return sorted({name for name, k in _STORAGES if kind is None or k == kind})


def _entry(name: str, kind: str) -> _Entry:
    entry = _STORAGES.get((name, kind))
    if entry is not None:
        return entry
    from importlib.metadata import entry_points

    for point in entry_points(group="fleche.storages"):
        if point.name == name:
            entry = _STORAGES[name, kind] = _Entry(point.value)
            return entry
    other = next((k for k in KINDS if k != kind and (name, k) in _STORAGES), None)
    if other is not None:
        raise ConfigError(f"type = {name!r} is a {other} storage only; it cannot hold {kind}s")
    raise ConfigError(
        f"unknown storage type {name!r} for {kind}s; known types: {', '.join(storage_names(kind))}"
    )


def import_target(target: str, what: str, extra: str | None = None) -> Any:
    """The object ``"module:qualname"`` names, imported now.

    The one place that turns a missing optional package into advice: the
    ``ImportError`` says that ``what`` needs it and which extra installs it.
    """
    module, _, qualname = target.partition(":")
    try:
        found: Any = importlib.import_module(module)
    except ImportError as err:
        if (err.name or "").split(".")[0] == "fleche":
            raise  # a fault of fleche itself, not a missing optional package
        hint = f"; install it with: pip install 'fleche[{extra}]'" if extra else ""
        raise ImportError(f"{what} needs {err.name or 'a missing package'}{hint}") from err
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _resolve(entry: _Entry, name: str) -> Callable[..., Any]:
    if not isinstance(entry.target, str):
        return entry.target
    return import_target(entry.target, f"the storage {name}", entry.extra)


def get_storage_constructor(name: str, kind: Kind) -> Callable[..., Any]:
    """The constructor registered as ``name`` for ``kind``; ``ConfigError`` listing the known names."""
    _check_kind(kind)
    entry = _entry(name, kind)
    constructor = _resolve(entry, name)
    return functools.partial(constructor, **dict(entry.preset)) if entry.preset else constructor


def _name_of(target: str | Callable[..., Any]) -> str | None:
    """The name ``target`` is registered under with no preset options; ``None`` if none."""
    text = target if isinstance(target, str) else _target_of(target)
    for (name, _), entry in _STORAGES.items():
        if not entry.preset and (entry.target is target or entry.target == text):
            return name
    return None


def _target_of(target: Any) -> str:
    return f"{getattr(target, '__module__', '')}:{getattr(target, '__qualname__', '')}"


def storage_name(cls: type) -> str | None:
    """The name a storage class is registered under with no preset options; ``None`` if none."""
    return _name_of(cls)


def spelled_out(name: str, kind: Kind) -> dict[str, Any] | None:
    """``{type = <class name>, <options>}`` for a second name of a storage (``"dill"``); else ``None``.

    The 0.22 names (``pickle``, ``cloudpickle``, ``dill``, ``memory``,
    ``void``, ``bagofholding_hdf``, ``sql``) are such names: a table using
    one is rewritten into the class's own name and the options it implies.
    """
    entry = _STORAGES.get((name, kind))
    canonical = None if entry is None else _name_of(entry.target)
    if entry is None or canonical in (None, name):
        return None
    return {"type": canonical, **dict(entry.preset)}


def is_registered_storage(cls: type) -> bool:
    """Whether the storage class ``cls`` is registered (so ``to_config`` can name it)."""
    return storage_name(cls) is not None


# -- storages to tables ------------------------------------------------------------


def plain(value: Any, relative_to: Path | None = None) -> Any:
    """``value`` as a configuration holds it: paths as strings (relative to ``relative_to``)."""
    if isinstance(value, os.PathLike):
        path = Path(value)
        return (
            os.path.relpath(path, relative_to)
            if relative_to is not None and path.is_absolute()
            else str(path)
        )
    if isinstance(value, tuple | list):
        return [plain(v, relative_to) for v in value]
    if isinstance(value, bool | int | float | str):
        return value
    if callable(getattr(value, "to_config", None)):  # a storage (the database of small values)
        return storage_config(value, relative_to)
    name = getattr(value, "name", None)  # a Serializer: by its registered name
    if isinstance(name, str) and hasattr(value, "dumps"):
        return name
    raise ConfigError(f"{value!r} cannot be written to a configuration")


def storage_config(storage: Any, relative_to: Path | None = None) -> dict[str, Any]:
    """``{type = ..., <settings that differ from their defaults>}`` of a storage.

    What :meth:`~fleche.storage.base.KeyManagement.to_config` returns and
    ``fleche.config`` builds the storage again from.
    """
    kind = type(storage)
    name = storage_name(kind)
    if name is None:
        raise ConfigError(
            f"the storage class {kind.__qualname__} is not registered; see register_storage()"
        )
    table: dict[str, Any] = {"type": name}
    for field in dataclasses.fields(storage):
        if not field.init or field.name == "storage":
            continue
        value = getattr(storage, field.name)
        if field.default is not dataclasses.MISSING and value == field.default:
            continue
        if field.name == "secret_key":
            if value is None or value == ():
                continue
            raise ConfigError(
                "secret keys are never written to a configuration; set FLECHE_SECRET_KEY instead"
            )
        if field.name == "url" and isinstance(value, str):
            value = Path(value) if "://" not in value else redact_url(value)
        table[field.name] = plain(value, relative_to)
    return table
