"""Serializers: how an object becomes bytes, as small strategy objects.

A backend takes one :class:`Serializer` (or its registered name) as a field
instead of there being a class per combination: ``pickle``,
``cloudpickle`` and ``dill`` produce the bytes, :class:`Compressed` wraps
any of them, and :class:`fleche.security.Signed` signs any of them.
cloudpickle and dill are optional and imported on first use.

pickle and cloudpickle keep large buffers (numpy arrays, ``bytearray``,
anything pickled as a :class:`pickle.PickleBuffer`) out of the pickle
stream (protocol 5 out-of-band buffers): the bytes are a short frame, the
stream, then each buffer aligned to :data:`BUFFER_ALIGNMENT`.  Loading from
a writable buffer builds the arrays on those bytes, not on copies, so a
large result is copied once, from the file into memory.  Bytes without the
frame are a plain pickle stream, as every entry written before.
"""

from __future__ import annotations

import bz2
import dataclasses
import importlib
import lzma
import pickle
import struct
import sys
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, Protocol, runtime_checkable

from .errors import ConfigError

__all__ = [
    "BUFFER_ALIGNMENT",
    "CODECS",
    "OUT_OF_BAND",
    "CloudpickleSerializer",
    "Compressed",
    "DillSerializer",
    "ModuleSerializer",
    "PickleSerializer",
    "Serializer",
    "compress",
    "decompress",
    "get_serializer",
    "register_serializer",
    "uninitialized",
    "writable_copy",
]

Buffer = bytes | bytearray | memoryview


@runtime_checkable
class Serializer(Protocol):
    """Turns objects into bytes and back; ``name`` is recorded with the bytes."""

    name: str

    def dumps(self, obj: Any) -> bytes:
        """The bytes of ``obj``."""
        ...

    def loads(self, data: Buffer) -> Any:
        """The object whose bytes are ``data``."""
        ...


def _optional(module: str) -> ModuleType:
    """Import an optional serializer package, or say which extra provides it."""
    found = sys.modules.get(module)
    if found is not None:
        return found
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the {module!r} serializer needs the {module} package; "
            f"install it with: pip install 'fleche[{module}]'",
            name=module,
        ) from err


# -- out-of-band buffers -----------------------------------------------------------

#: Buffers at least this large are kept out of the pickle stream.
OUT_OF_BAND = 1 << 16
#: Where each out-of-band buffer starts, counted from the first byte of the frame.
BUFFER_ALIGNMENT = 64
#: No pickle stream starts with 0xff (no opcode has it): the frame cannot be mistaken for one.
_FRAMED = b"\xffFLB"
_FRAME_VERSION = 1
#: marker, frame version, buffer count, stream length; then one u64 length per buffer.
_FRAME = struct.Struct("<4sB3xIQ")


def _dumps_framed(dumps: Callable[..., bytes], obj: Any, protocol: int) -> bytes:
    """``dumps(obj)`` with its large buffers after the stream, or the plain stream if none."""
    if protocol < 5:
        return dumps(obj, protocol=protocol)
    large: list[memoryview] = []

    def keep_in_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: only the stream can hold it
            return True
        if view.nbytes < OUT_OF_BAND:
            return True
        large.append(view)
        return False

    stream = dumps(obj, protocol=protocol, buffer_callback=keep_in_band)
    if not large:
        return stream
    lengths = [view.nbytes for view in large]
    parts: list[Buffer] = [
        _FRAME.pack(_FRAMED, _FRAME_VERSION, len(large), len(stream)),
        struct.pack(f"<{len(large)}Q", *lengths),
        stream,
    ]
    offset = _FRAME.size + 8 * len(large) + len(stream)
    for view in large:
        pad = -offset % BUFFER_ALIGNMENT
        parts += [bytes(pad), view]
        offset += pad + view.nbytes
    return b"".join(parts)


def uninitialized(size: int) -> Any:
    """A writable, 16-byte aligned buffer of ``size`` bytes for a value to keep, its content undefined.

    Not a zero-filled ``bytearray`` when numpy is loaded (a store of arrays
    imported it; fleche never does for this): filling it first is one more
    pass over every page, as costly as the read (benchmarks/bench_big_values.py).
    """
    numpy = sys.modules.get("numpy")
    return bytearray(size) if numpy is None else numpy.empty(size, numpy.uint8)


def writable_copy(data: Buffer) -> memoryview:
    """A writable copy of the bytes of ``data``."""
    source = memoryview(data).cast("B")
    copy = memoryview(uninitialized(source.nbytes))
    copy[:] = source
    return copy


def _loads_framed(loads: Callable[..., Any], data: Buffer) -> Any:
    """The object in bytes :func:`_dumps_framed` wrote (their first byte is 0xff).

    The buffers handed to the unpickler are slices of ``data`` when it is
    writable (the caller's buffer becomes the arrays' memory), else copies.
    """
    view = memoryview(data).cast("B")
    marker, version, count, length = _FRAME.unpack_from(view)
    if marker != _FRAMED:
        raise ValueError("neither a pickle stream nor a fleche pickle frame")
    if version != _FRAME_VERSION:
        raise ValueError(f"pickle frame version {version}; this fleche reads {_FRAME_VERSION}")
    offset = _FRAME.size + 8 * count
    lengths = struct.unpack_from(f"<{count}Q", view, _FRAME.size)
    stream = view[offset : offset + length]
    offset += length
    buffers: list[Buffer] = []
    for size in lengths:
        offset += -offset % BUFFER_ALIGNMENT
        part = view[offset : offset + size]
        if len(part) != size:
            raise ValueError("the pickle frame is truncated")
        buffers.append(writable_copy(part) if view.readonly else part)
        offset += size
    return loads(stream, buffers=buffers)


@dataclasses.dataclass(frozen=True)
class PickleSerializer:
    """The standard library's pickle (protocol 5: large buffers out of band, see the module)."""

    protocol: int = 5
    name: ClassVar[str] = "pickle"

    def dumps(self, obj: Any) -> bytes:
        # docstring inherited
        return _dumps_framed(pickle.dumps, obj, self.protocol)

    def loads(self, data: Buffer) -> Any:
        # docstring inherited
        if data and data[0] == 0xFF:  # one index on a small value's hit, no call
            return _loads_framed(pickle.loads, data)
        return pickle.loads(data)


@dataclasses.dataclass(frozen=True)
class CloudpickleSerializer:
    """cloudpickle: also lambdas, closures and classes defined in ``__main__``."""

    protocol: int = 5
    name: ClassVar[str] = "cloudpickle"

    def __post_init__(self) -> None:
        _optional("cloudpickle")  # fail when configured, not at the first store

    def dumps(self, obj: Any) -> bytes:
        # docstring inherited
        return _dumps_framed(_optional("cloudpickle").dumps, obj, self.protocol)

    def loads(self, data: Buffer) -> Any:
        # docstring inherited
        if data and data[0] == 0xFF:
            return _loads_framed(_optional("cloudpickle").loads, data)
        return _optional("cloudpickle").loads(data)


@dataclasses.dataclass(frozen=True)
class DillSerializer:
    """dill: most objects pickle refuses (nested functions, generators' code, …)."""

    protocol: int = 5
    name: ClassVar[str] = "dill"

    def __post_init__(self) -> None:
        _optional("dill")

    def dumps(self, obj: Any) -> bytes:
        # docstring inherited
        return _optional("dill").dumps(obj, protocol=self.protocol)

    def loads(self, data: Buffer) -> Any:
        # docstring inherited
        return _optional("dill").loads(data)


# -- compression -------------------------------------------------------------------

#: Codec name -> (compress(data, level), decompress(data)); ``level=None`` is the codec default.
CODECS: dict[str, tuple[Callable[[Buffer, int | None], bytes], Callable[[Buffer], bytes]]] = {
    "zlib": (
        lambda data, level: zlib.compress(data, 6 if level is None else level),
        zlib.decompress,
    ),
    "bz2": (
        lambda data, level: bz2.compress(data, 9 if level is None else level),
        bz2.decompress,
    ),
    "lzma": (
        lambda data, level: lzma.compress(data, preset=level),
        lzma.decompress,
    ),
}


def _codec(name: str) -> tuple[Callable[[Buffer, int | None], bytes], Callable[[Buffer], bytes]]:
    try:
        return CODECS[name]
    except KeyError:
        raise ConfigError(f"unknown compression {name!r}; choose one of {sorted(CODECS)}") from None


def compress(codec: str, data: Buffer, level: int | None = None) -> bytes:
    """``data`` compressed with ``codec`` (``"zlib"``, ``"bz2"`` or ``"lzma"``)."""
    return _codec(codec)[0](data, level)


def decompress(codec: str, data: Buffer) -> bytes:
    """The bytes ``compress(codec, …)`` was given."""
    return _codec(codec)[1](data)


@dataclasses.dataclass(frozen=True)
class Compressed:
    """Any serializer's bytes, compressed: ``Compressed(PickleSerializer(), "lzma")``."""

    inner: Serializer
    codec: str = "zlib"
    level: int | None = None

    def __post_init__(self) -> None:
        _codec(self.codec)

    @property
    def name(self) -> str:
        return f"{self.codec}+{self.inner.name}"

    def dumps(self, obj: Any) -> bytes:
        # docstring inherited
        return compress(self.codec, self.inner.dumps(obj), self.level)

    def loads(self, data: Buffer) -> Any:
        # docstring inherited
        return self.inner.loads(decompress(self.codec, data))


@dataclasses.dataclass(frozen=True)
class ModuleSerializer:
    """A serializer made of anything with ``dumps``/``loads`` (a module such as ``dill``)."""

    name: str
    module: Any

    def dumps(self, obj: Any) -> bytes:
        # docstring inherited
        return self.module.dumps(obj)

    def loads(self, data: Buffer) -> Any:
        # docstring inherited
        return self.module.loads(data)


# -- registry ----------------------------------------------------------------------

_REGISTRY: dict[str, Callable[[], Serializer]] = {
    "pickle": PickleSerializer,
    "cloudpickle": CloudpickleSerializer,
    "dill": DillSerializer,
}


def register_serializer(
    name: str, factory: Callable[[], Serializer], *, replace: bool = False
) -> None:
    """Make ``factory()`` available as ``serializer=name`` (and for reading files that name it)."""
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"a serializer named {name!r} is already registered; pass replace=True to replace it"
        )
    _REGISTRY[name] = factory


def get_serializer(spec: str | Serializer) -> Serializer:
    """The serializer a name stands for (a :class:`Serializer` is returned as is).

    An unknown name raises :class:`~fleche.errors.ConfigError` listing the
    known ones; a known one whose package is missing raises ``ImportError``
    naming the extra to install.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, Serializer):
            raise TypeError(f"a serializer needs name, dumps and loads; got {type(spec).__name__}")
        return spec
    try:
        factory = _REGISTRY[spec]
    except KeyError:
        raise ConfigError(
            f"unknown serializer {spec!r}; choose one of {sorted(_REGISTRY)}"
        ) from None
    return factory()
