"""Reading objects that name classes of the fleche 0.22 release, without that release.

A 0.22 store pickles its call records as ``fleche.call.DigestedCall``, its
digests as ``fleche.digest.Digest`` and the containers it split into parts
as ``fleche.storage.destructuring.Digested…``.  Our own package is also
called ``fleche``, so those names must never be imported: they are mapped
to the small stand-ins here, and any other class of the old package is
refused by name.  :func:`mend` puts a split container back together.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "LegacyDigest",
    "LegacyObject",
    "LegacyRecord",
    "is_legacy_name",
    "legacy_class",
    "legacy_keys",
    "loads",
    "mend",
    "plain",
]


class LegacyDigest(str):
    """A 0.22 digest (64 hexadecimal characters of SHA-256): a key of the old store only."""

    __slots__ = ()


class LegacyObject:
    """A 0.22 object read back as its plain attributes (a call record, a split container)."""

    kind = "object"

    def __repr__(self) -> str:
        return f"<0.22 {self.kind} {vars(self)!r}>"


class LegacyRecord(LegacyObject):
    kind = "call record"


class LegacyIterable(LegacyObject):
    kind = "split list"


class LegacyDict(LegacyObject):
    kind = "split dict"


class LegacyFields(LegacyObject):
    kind = "split record"


_CLASSES: dict[tuple[str, str], type] = {
    ("fleche.digest", "Digest"): LegacyDigest,
    ("fleche.call", "DigestedCall"): LegacyRecord,
    ("fleche.call", "Call"): LegacyRecord,
    ("fleche.storage.destructuring", "DigestedIterable"): LegacyIterable,
    ("fleche.storage.destructuring", "DigestedDict"): LegacyDict,
    ("fleche.storage.destructuring", "DigestedFields"): LegacyFields,
    ("fleche.storage.destructuring", "DigestedDataclass"): LegacyFields,
    ("fleche.storage.destructuring", "DigestedAttrs"): LegacyFields,
}


def is_legacy_name(module: str) -> bool:
    """Whether ``module`` belongs to the 0.22 package (which shares our package's name)."""
    return module == "fleche" or module.startswith("fleche.")


def legacy_class(module: str, name: str) -> type:
    """The stand-in for a class of the 0.22 package; ``UnpicklingError`` for any other of its names."""
    try:
        return _CLASSES[module, name]
    except KeyError:
        raise pickle.UnpicklingError(
            f"the entry refers to {module}.{name} of the fleche 0.22 release, "
            "which an import cannot rebuild"
        ) from None


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if is_legacy_name(module):
            return legacy_class(module, name)
        return super().find_class(module, name)


def legacy_keys(secret_key: str | bytes | Sequence[str | bytes] | None) -> tuple[bytes, ...]:
    """The signing keys of a 0.22 store, written as it took them: hexadecimal, ``:`` between keys."""
    if secret_key is None:
        return ()
    given = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
    keys = []
    for key in given:
        try:
            keys += [bytes.fromhex(k) for k in key.split(":")] if isinstance(key, str) else [key]
        except ValueError:
            raise ValueError(
                f"{key!r} is not a 0.22 secret key: write hexadecimal, with ':' between keys"
            ) from None
    return tuple(keys)


def loads(data: bytes, keys: Sequence[bytes] = ()) -> Any:
    """The object in a 0.22 pickle-family file (pickle, cloudpickle or dill; gzip or not).

    With ``keys``, the HMAC-SHA256 signature the 0.22 release appended after
    the pickle (``FLECHE_SECRET_KEY``) must match one of them, else
    :class:`ValueError`; without, it is not read.  Objects of cloudpickle
    and dill need those packages installed, as they did when written.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if keys:
        end = data.rfind(pickle.STOP) + 1
        body, tag = data[:end], data[end:]
        if not end or not any(
            hmac.compare_digest(hmac.new(k, body, hashlib.sha256).hexdigest().encode(), tag)
            for k in keys
        ):
            raise ValueError("the entry's 0.22 signature does not match the secret key given")
    return _Unpickler(io.BytesIO(data)).load()


def mend(raw: Any, load: Callable[[str], Any]) -> Any:
    """The value a 0.22 entry stands for: a split container is rebuilt, its parts read by ``load``."""
    if isinstance(raw, LegacyIterable):
        items = raw.items
        return type(items)(_part(v, load) for v in items)
    if isinstance(raw, LegacyDict):
        return {_part(k, load): _part(v, load) for k, v in raw.items.items()}
    if isinstance(raw, LegacyFields):
        obj = object.__new__(raw.cls)
        for name, value in raw.fields.items():
            object.__setattr__(obj, name, _part(value, load))
        return obj
    if isinstance(raw, LegacyObject):
        raise TypeError(f"a {raw.kind} is not a value")
    return raw


def _part(value: Any, load: Callable[[str], Any]) -> Any:
    return load(str(value)) if isinstance(value, LegacyDigest) else value


def plain(metadata: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Metadata as plain dictionaries (0.22 kept it in a ``defaultdict``)."""
    return {str(ns): dict(entries) for ns, entries in (metadata or {}).items()}
