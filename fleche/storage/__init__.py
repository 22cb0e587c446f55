"""Storage layer: primitive backends, behaviour mixins and their compositions.

Backends that need optional packages (SQLAlchemy, h5py, bagofholding, obstore) are
imported on first use of their name, so ``import fleche`` stays light; a
missing package raises an ``ImportError`` that says which extra to install.
"""

from __future__ import annotations

from typing import Any

from ..errors import AmbiguousDigestError, SaveError
from .base import (
    CallMixin,
    CallStorage,
    Intent,
    KeyManagement,
    OperationContext,
    StorageBackend,
    ValueMixin,
    ValueStorage,
)
from .destructuring import DestructuringMixin, register_destructurer
from .file import FileStorage
from .memory import CallMemory, MemoryBackend, ValueMemory
from .pickle_file import CallPickleFile, PickleFileBackend, ValuePickleFile
from .registry import (
    EXTRAS,
    get_storage_constructor,
    import_target,
    is_registered_storage,
    register_storage,
)
from .sized import SizedValues
from .thread_safe import PerKeyLockMixin, SerializingMixin
from .usage import UsageIndex
from .void import CallVoid, ValueVoid, VoidBackend

#: Public name -> its module, which needs an optional package (see ``registry.EXTRAS``).
_LAZY: dict[str, str] = {
    "Sql": "sql",
    "BagOfHoldingH5FileBackend": "bagofholding_file",
    "ValueBagOfHoldingH5File": "bagofholding_file",
    "CallBagOfHoldingH5File": "bagofholding_file",
    "ObjectStoreBackend": "object_store",
    "ValueObjectStore": "object_store",
}

__all__ = [
    "AmbiguousDigestError",
    "CallMemory",
    "CallMixin",
    "CallPickleFile",
    "CallStorage",
    "CallVoid",
    "DestructuringMixin",
    "FileStorage",
    "Intent",
    "KeyManagement",
    "MemoryBackend",
    "OperationContext",
    "PerKeyLockMixin",
    "PickleFileBackend",
    "SaveError",
    "SerializingMixin",
    "SizedValues",
    "StorageBackend",
    "UsageIndex",
    "ValueMemory",
    "ValueMixin",
    "ValuePickleFile",
    "ValueStorage",
    "ValueVoid",
    "VoidBackend",
    "get_storage_constructor",
    "is_registered_storage",
    "register_destructurer",
    "register_storage",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fleche.storage' has no attribute {name!r}") from None
    return import_target(f"{__name__}.{module}:{name}", f"fleche.storage.{name}", EXTRAS[module])
