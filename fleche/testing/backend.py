"""How the conformance suite builds a backend's storages, and the checks its test classes share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..digest import Digest
from ..errors import ConfigError
from ..storage.base import CallStorage, ValueStorage

__all__ = ["Backend", "calls_of", "check_to_config", "require", "storage_from_table", "values_of"]


@dataclasses.dataclass(frozen=True)
class Backend:
    """How the suite builds one storage composition.

    ``values``/``calls`` build a storage rooted in a directory (``None`` when
    the backend has no such half).  ``corrupt(storage, key)`` damages the
    entry under ``key`` directly on the medium (torn or tampered bytes).
    ``processes`` says whether several processes may share one store.
    """

    name: str
    values: Callable[[Path], ValueStorage] | None = None
    calls: Callable[[Path], CallStorage] | None = None
    corrupt: Callable[[Any, Digest], None] | None = None
    processes: bool = False

    def __str__(self) -> str:
        return self.name


def require(backend: Backend, capability: str) -> None:
    """Skip the test, saying why, when ``backend`` lacks ``capability``."""
    if not getattr(backend, capability, None):
        pytest.skip(f"{backend.name} has no {capability}")


def values_of(backend: Backend, root: Path) -> ValueStorage:
    """The backend's value storage rooted in ``root`` (the test is skipped if it has none)."""
    require(backend, "values")
    return backend.values(root)


def calls_of(backend: Backend, root: Path) -> CallStorage:
    """The backend's call storage rooted in ``root`` (the test is skipped if it has none)."""
    require(backend, "calls")
    return backend.calls(root)


def check_to_config(storage: Any, kind: str, key: Digest) -> None:
    """``storage.to_config()`` rebuilds an equal storage (reading the same entries, if persistent)."""
    if getattr(storage, "secret_key", None):
        with pytest.raises(ConfigError, match="secret keys are never written"):
            storage.to_config()
        return
    table = storage.to_config()
    rebuilt = storage_from_table(table, kind)
    assert type(rebuilt) is type(storage) and rebuilt.to_config() == table
    if type(storage).persistent:
        assert rebuilt.load(key) == storage.load(key)


def storage_from_table(table: dict[str, Any], kind: str) -> Any:
    """The storage a ``to_config`` table describes, built as ``fleche.config`` builds it."""
    from ..config import from_config

    cache = from_config(
        {kind + "s": table, ("calls" if kind == "value" else "values"): {"type": "memory"}}
    )
    return cache.values if kind == "value" else cache.calls
