"""The configuration shapes of the 0.22 release, rewritten into ours.

``fleche.toml`` files written for the 0.22 release use shapes of their own:
an array of tables (a list) for a stack, a ``pool`` list for a pool,
``max_size`` for a limit on the number of calls, storage types named in
lower case with the kind implied by the slot (``values.type = "pickle"``)
and the templates ``cloudpickle``, ``dill`` and ``bagofholding_hdf``.
:func:`normalize` rewrites such a table into the equivalent table of ours
(see :mod:`fleche.config`), so one translator builds both; a table that is
ours already comes back unchanged.  Cache types that are not storages
(``type = "ssh"``) are looked up in :data:`fleche.registry.CACHE_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from .errors import ConfigError
from .registry import CACHE_TYPES, LEGACY_TEMPLATES
from .security import normalize_secret_key
from .storage.registry import spelled_out

__all__ = ["in_022_shapes", "normalize", "normalize_storage"]

_KINDS = {"value": "value", "values": "value", "call": "call", "calls": "call"}


def normalize(table: Any) -> Any:
    """``table`` in our shapes; the 0.22 shapes are rewritten, anything else is left as it is."""
    if isinstance(table, list):
        return {"template": "stack", "layers": [normalize(layer) for layer in table]}
    if not isinstance(table, Mapping) or table.get("type") in CACHE_TYPES:
        return table
    table = dict(table)
    if "pool" in table:
        table["template"] = "pool"
        table["caches"] = [normalize(member) for member in table.pop("pool")]
    if "max_size" in table:
        table["max_calls"] = table.pop("max_size")
    template = table.get("template")
    if template in LEGACY_TEMPLATES:
        table = _symmetric(table, template)
    elif template == "sql" and isinstance(table.get("values"), str):
        table = _sql(table, table.pop("values"))
    for slot in ("values", "calls"):
        if isinstance(table.get(slot), Mapping):
            table[slot] = normalize_storage(table[slot], slot)
    return table


def _joined(root: Any, name: str) -> str:
    return str(PurePath(str(root)) / name)


def _symmetric(table: dict[str, Any], template: str) -> dict[str, Any]:
    """``template = "cloudpickle"`` etc.: one storage type for both, under ``root``."""
    if "root" not in table:
        return table  # our validation names the missing key
    root = table.pop("root")
    del table["template"]
    table["values"] = {"type": template, "root": _joined(root, "values")}
    table["calls"] = {"type": template, "root": _joined(root, "calls")}
    return table


def _sql(table: dict[str, Any], values: str) -> dict[str, Any]:
    """``template = "sql"`` with ``values = <type>``: that value storage, calls in SQL."""
    if values == "bagofholding_hdf":
        table["template"] = "hdf5"
    elif values in ("cloudpickle", "dill"):
        table["serializer"] = values
    elif values != "pickle":
        raise ConfigError(
            f"values = {values!r}: the sql template keeps values as pickle, cloudpickle, "
            "dill or bagofholding_hdf files"
        )
    return table


def normalize_storage(table: Any, kind: str) -> Any:
    """A storage table in our names; ``kind`` is ``"value"`` or ``"call"`` (or the slot name)."""
    if kind not in _KINDS:
        raise ConfigError(f"a storage kind is 'value' or 'call', not {kind!r}")
    if not isinstance(table, Mapping) or not isinstance(table.get("type"), str):
        return table
    spelled = spelled_out(table["type"], _KINDS[kind])
    if spelled is None:
        return table
    settings = {**table, **spelled}
    if "compress" in settings:
        settings["compression"] = "zlib" if settings.pop("compress") else None
    if "secret_key" in settings:
        settings["secret_key"] = tuple(normalize_secret_key(settings["secret_key"]))
    return settings


def in_022_shapes(table: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """A table of ours in the 0.22 shapes where they fit: stacks as lists, pools as ``pool``."""
    template = table.get("template")
    if template == "stack" and table.keys() == {"template", "layers"}:
        return [in_022_shapes(layer) for layer in table["layers"]]
    if template == "pool" and table.keys() <= {"template", "caches", "read_only"}:
        rest = {k: v for k, v in table.items() if k not in ("template", "caches")}
        return {"pool": [in_022_shapes(member) for member in table["caches"]], **rest}
    if "max_calls" in table:
        table["max_size"] = table.pop("max_calls")
    return table
