"""Signing serialized data so that a shared store cannot make fleche unpickle foreign bytes.

Unpickling runs code, so a store that others can write to is only as safe
as the bytes in it.  With a secret key every entry carries an HMAC-SHA256
tag; data without a valid tag is refused before it is deserialized.  Keys
rotate: the first key signs, every key verifies, so entries signed with an
old key stay readable while it is listed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, SignatureError
from .serializers import Buffer, Serializer

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "TAG_SIZE",
    "SecretKey",
    "SignatureError",
    "Signed",
    "SignedBytes",
    "Signer",
    "get_secret_key",
    "normalize_secret_key",
    "secret_keys",
]

#: Comma-separated secret keys, first one signing, used when none are given explicitly.
ENVIRONMENT_VARIABLE = "FLECHE_SECRET_KEY"
#: Bytes of an HMAC-SHA256 tag.
TAG_SIZE = 32

SecretKey = str | bytes | Sequence[str | bytes]


def secret_keys(secret_key: SecretKey | None = None) -> tuple[bytes, ...]:
    """The keys to sign and verify with; empty means "do not sign".

    Precedence: ``secret_key`` when given (a key, or a sequence whose first
    key signs; an empty sequence switches signing off), else the
    comma-separated :data:`ENVIRONMENT_VARIABLE`, else none.
    """
    if secret_key is None:
        secret_key = [k for k in os.environ.get(ENVIRONMENT_VARIABLE, "").split(",") if k.strip()]
        secret_key = [k.strip() for k in secret_key]
    if isinstance(secret_key, str | bytes):
        secret_key = [secret_key]
    keys = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in secret_key)
    if any(not k for k in keys):
        raise ConfigError("an empty secret key signs nothing; give a non-empty key or none at all")
    return keys


@dataclasses.dataclass(frozen=True)
class Signer:
    """HMAC-SHA256 with key rotation: ``keys[0]`` signs, every key verifies.

    ``context`` parts (e.g. the storage key of an entry) are signed with the
    data, so a validly signed entry copied under another name is refused.
    """

    keys: tuple[bytes, ...]
    _macs: tuple[Any, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("a Signer needs at least one secret key")
        # Keyed HMAC states are prepared once and copied per use.
        object.__setattr__(
            self, "_macs", tuple(hmac.new(k, digestmod=hashlib.sha256) for k in self.keys)
        )

    def __repr__(self) -> str:
        return f"Signer(<{len(self.keys)} key(s)>)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Signer, (self.keys,))

    @staticmethod
    def _tag(mac: Any, parts: tuple[Buffer, ...]) -> bytes:
        mac = mac.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()

    def sign(self, *parts: Buffer) -> bytes:
        """The tag of ``parts`` under the signing key (:data:`TAG_SIZE` bytes)."""
        return self._tag(self._macs[0], parts)

    def verify(self, tag: Buffer, *parts: Buffer) -> bool:
        """Whether ``tag`` is the tag of ``parts`` under any of the keys (constant-time compare)."""
        return any(hmac.compare_digest(self._tag(mac, parts), tag) for mac in self._macs)


def _unsigned(signer: Signer, data: Buffer) -> memoryview:
    """The data behind a valid tag; :class:`SignatureError` before anything is deserialized."""
    view = memoryview(data)
    if len(view) < TAG_SIZE or not signer.verify(view[:TAG_SIZE], view[TAG_SIZE:]):
        raise SignatureError(
            f"refusing {len(view)} bytes that are unsigned, tampered or signed with an unknown key"
        )
    return view[TAG_SIZE:]


@dataclasses.dataclass(frozen=True)
class Signed:
    """Any serializer's bytes, prefixed by their HMAC tag: ``Signed(PickleSerializer(), "key")``.

    ``loads`` raises :class:`~fleche.errors.SignatureError` for data that is
    unsigned, tampered or signed with an unlisted key, and never hands such
    data to the inner serializer.  ``keys=None`` takes them from
    :data:`ENVIRONMENT_VARIABLE`.
    """

    inner: Serializer
    keys: SecretKey | None = dataclasses.field(default=None, repr=False)
    _signer: Signer = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = secret_keys(self.keys)
        if not keys:
            raise ConfigError(
                f"Signed needs a secret key: pass keys= or set {ENVIRONMENT_VARIABLE}"
            )
        object.__setattr__(self, "_signer", Signer(keys))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Signed, (self.inner, self.keys))

    @property
    def name(self) -> str:
        return f"hmac+{self.inner.name}"

    def dumps(self, obj: Any) -> bytes:
        # docstring inherited
        data = self.inner.dumps(obj)
        return self._signer.sign(data) + data

    def loads(self, data: Buffer) -> Any:
        # docstring inherited
        return self.inner.loads(_unsigned(self._signer, data))


# -- the 0.22 forms ------------------------------------------------------------------


def normalize_secret_key(key: bytes | str | Sequence[bytes | str]) -> list[bytes]:
    """Secret keys as the 0.22 release reads them: bytes as they are, strings as hex.

    In a string, ``:`` separates several keys (``"a1b2:c3d4"``); a sequence
    may mix bytes and hex strings.  The first key signs, every key verifies.
    Our own :func:`secret_keys` takes strings as text instead.
    """
    if isinstance(key, bytes | bytearray):
        return [bytes(key)]
    items = key.split(":") if isinstance(key, str) else list(key)
    keys: list[bytes] = []
    for item in items:
        if isinstance(item, str):
            keys.extend(_hex(part) for part in item.split(":") if part.strip())
        else:
            keys.append(bytes(item))
    if any(not k for k in keys):
        raise ConfigError("an empty secret key signs nothing; give a non-empty key or none at all")
    return keys


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(
            f"a secret key given as a string is hexadecimal (e.g. from secrets.token_hex()); "
            f"got {len(text)} characters that are not"
        ) from None


def get_secret_key() -> list[bytes]:
    """The keys in :data:`ENVIRONMENT_VARIABLE` read the 0.22 way (hex, ``:``-separated); ``[]`` if unset."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    return normalize_secret_key(value) if value.strip() else []


class SignedBytes:
    """Bytes signed with HMAC-SHA256 and checked on the way back (the 0.22 helper).

    ``dumps(data)`` prefixes ``data`` with its tag; ``loads(signed)`` returns
    the data or raises :class:`~fleche.errors.SignatureError` if the tag is
    missing, wrong or made with an unlisted key.  ``keys`` as in
    :func:`normalize_secret_key`; the first signs, every one verifies.
    """

    def __init__(self, keys: bytes | str | Sequence[bytes | str]) -> None:
        normalized = normalize_secret_key(keys)
        if not normalized:
            raise ConfigError("SignedBytes needs at least one secret key")
        self._signer = Signer(tuple(normalized))

    def __repr__(self) -> str:
        return "SignedBytes(<keys hidden>)"

    def dumps(self, data: Buffer) -> bytes:
        """``data`` with its tag in front."""
        return self._signer.sign(data) + bytes(data)

    def loads(self, data: Buffer) -> bytes:
        """The data under a valid tag; :class:`~fleche.errors.SignatureError` otherwise."""
        return bytes(_unsigned(self._signer, data))
