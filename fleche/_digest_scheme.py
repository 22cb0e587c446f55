"""The digest encoding scheme: node framing, type dispatch, and built-in encoders.

Every value becomes one *node*: ``version (1 byte) | tag (1 byte) | payload
length (u64, little-endian) | payload``, hashed with xxh3-128 by its own hasher. Composite values put their children's raw 16-byte
digests in the payload (a Merkle tree), so a child can be replaced by its digest.
Tags and framing are frozen for ``SCHEME_VERSION``; changing either is a new
scheme version, and the golden vectors in ``tests/golden_digests.json`` catch
accidental changes.

This module holds the framing and the exact-type dispatch table (the hot path).
Encoders register in ``BUILTIN`` (:mod:`fleche._digest_builtins`,
:mod:`fleche._digest_code`); other types are resolved once per type by
:mod:`fleche.digest`, which installs itself with :func:`install_resolver`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from typing import Any

import xxhash

from fleche.errors import Indigestible

SCHEME_VERSION = 1
"""Version of the encoding; it is the first byte of every hashed node."""

Encoder = Callable[[Any], bytes]


class Tag(enum.IntEnum):
    """One byte naming the kind of a node. Values are frozen for the scheme version."""

    NONE = 0x01
    BOOL = 0x02
    INT = 0x03
    FLOAT = 0x04
    COMPLEX = 0x05
    DECIMAL = 0x06
    FRACTION = 0x07
    STR = 0x08
    BYTES = 0x09
    BYTEARRAY = 0x0A
    MEMORYVIEW = 0x0B
    LIST = 0x10
    TUPLE = 0x11
    DICT = 0x12
    SET = 0x13
    FROZENSET = 0x14
    DEQUE = 0x15
    ORDERED_DICT = 0x16
    DEFAULT_DICT = 0x17
    ELLIPSIS = 0x18
    NOTIMPLEMENTED = 0x19
    OBJECT = 0x20
    ENUM = 0x21
    REDUCTION = 0x22
    SUBCLASS = 0x23
    TYPE = 0x24
    INSTANCE = 0x25
    PATH = 0x28
    UUID = 0x29
    DATETIME = 0x2A
    DATE = 0x2B
    TIME = 0x2C
    TIMEDELTA = 0x2D
    TIMEZONE = 0x2E
    ZONEINFO = 0x2F
    SLICE = 0x30
    RANGE = 0x31
    FUNCTION = 0x38
    CODE = 0x39
    NAMED_CALLABLE = 0x3A
    METHOD = 0x3B
    PARTIAL = 0x3C
    EMPTY_CELL = 0x3D
    FUNCTION_BACKREF = 0x3E
    NDARRAY = 0x40
    NDARRAY_STRUCT = 0x41
    NDARRAY_OBJECT = 0x42
    NPSCALAR = 0x43
    DTYPE = 0x44
    MASKED = 0x45
    DATAFRAME = 0x50
    SERIES = 0x51
    INDEX = 0x52
    RANGEINDEX = 0x53
    MULTIINDEX = 0x54
    CATEGORICAL = 0x55
    EXTARRAY = 0x56
    PD_TIMESTAMP = 0x57
    PD_TIMEDELTA = 0x58
    PD_NAT = 0x59
    PD_NA = 0x5A
    PD_PERIOD = 0x5B
    PD_INTERVAL = 0x5C
    PD_DTYPE = 0x5D


# --------------------------------------------------------------------------- framing

_xxh = xxhash.xxh3_128_digest
pack_head = struct.Struct("<2sQ").pack
"""``pack_head(header, n)``: the node header followed by the payload length (u64)."""
ONE_SHOT_MAX = 1 << 16
"""Payloads above this many bytes are streamed rather than concatenated (a copy)."""


def header(tag: Tag) -> bytes:
    """The two leading bytes of every node with ``tag``: scheme version, tag."""
    return bytes((SCHEME_VERSION, tag))


def leaf(head: bytes, payload: bytes | bytearray) -> bytes:
    """Digest of the node ``head | len(payload) | payload``."""
    n = len(payload)
    if n <= ONE_SHOT_MAX:
        return _xxh(pack_head(head, n) + payload)
    hasher = xxhash.xxh3_128(pack_head(head, n))
    hasher.update(payload)
    return hasher.digest()


def composite(head: bytes, children: list[bytes]) -> bytes:
    """Digest of a node whose payload is its children's raw digests, in order."""
    return leaf(head, b"".join(children))


def stream(head: bytes, length: int, pieces: Iterable[Any]) -> bytes:
    """Digest of a node whose payload of ``length`` bytes arrives as buffers.

    The buffers are fed to the hasher as they come, so large arrays are never
    copied whole; the result equals ``leaf(head, b"".join(pieces))``.
    """
    hasher = xxhash.xxh3_128(pack_head(head, length))
    seen = 0
    for piece in pieces:
        hasher.update(piece)
        seen += memoryview(piece).nbytes
    if seen != length:  # an encoder bug would silently break canonicity
        raise RuntimeError(f"digest stream announced {length} bytes but fed {seen}")
    return hasher.digest()


def qualname(cls: type) -> str:
    """``module.qualname`` of a class or function: its identity in the scheme."""
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- dispatch

BUILTIN: dict[type, Encoder] = {}
"""Encoders for exact built-in types; hooks may not replace these."""

ENCODERS: dict[type, Encoder] = {}
"""The dispatch table: ``BUILTIN`` plus every type resolved so far (a cache)."""

lookup = ENCODERS.get
"""``lookup(type(obj), fallback)(obj)`` is the whole hot path; see :func:`encode`."""


def _resolve_builtin_only(cls: type) -> Encoder:
    def refuse(obj: Any) -> bytes:
        raise Indigestible(cls, value=obj)

    return BUILTIN.get(cls, refuse)


_resolve: Callable[[type], Encoder] = _resolve_builtin_only


def install_resolver(resolve: Callable[[type], Encoder]) -> None:
    """Set the slow path that finds (and caches) an encoder for an unknown type."""
    global _resolve
    _resolve = resolve


def reset() -> None:
    """Forget every resolved type, e.g. after a hook was added or removed."""
    ENCODERS.clear()
    ENCODERS.update(BUILTIN)


def fallback(obj: Any) -> bytes:
    """Encode ``obj`` whose type is not in the dispatch table yet (the slow path)."""
    return _resolve(type(obj))(obj)


def encode(obj: Any) -> bytes:
    """The raw 16-byte digest of ``obj``: one dict lookup on the exact type."""
    return lookup(type(obj), fallback)(obj)


def relocate(children: Iterable[tuple[str, Any]]) -> None:
    """Re-encode ``(path suffix, value)`` pairs; raise the first failure located.

    Called only after a container's encoding failed, so the hot path never
    builds paths. Returns normally if no child fails this time.
    """
    for suffix, value in children:
        try:
            encode(value)
        except Indigestible as err:
            raise err.located(suffix) from None


def subclass_encoder(cls: type, base: Encoder) -> Encoder:
    """Encoder for a subclass of a supported type: the class name + the base encoding."""
    name = encode(qualname(cls))
    head = header(Tag.SUBCLASS)
    return lambda obj: composite(head, [name, base(obj)])


def named_callable(name: str) -> bytes:
    """Digest of a callable known only by its dotted name (builtins, ufuncs)."""
    return leaf(header(Tag.NAMED_CALLABLE), name.encode("utf-8", "surrogatepass"))
