"""The wire format of :mod:`fleche.remote`: frames, messages and what may be unpickled.

Both ends exchange *messages* over a pair of byte streams.  A message is a
sequence of *blobs*; a blob is sent as frames of at most :data:`CHUNK` bytes
(a 5-byte header: a flag saying whether more frames of the blob follow, and
the frame length), so a large value never has to fit one read or one write.

The first blob of a message is its control part: a dict pickled with plain
data only and read back by :func:`loads_control`, which refuses every class
but the records of :mod:`fleche.call` and a few standard data types.  The
other blobs are stored values, pickled; they are unpickled only when the
user reads that value, exactly as reading a pickle store would.

An exception raised on one end travels as its kind and message
(:func:`encode_error`) and is raised again as the same kind on the other
(:func:`decode_error`); kinds not on a short list arrive as
:class:`~fleche.errors.FlecheError`.

The server speaks first: :data:`MAGIC` lets the client skip anything a login
shell prints before the server starts.  The handshake is one JSON blob each
way, so that ends of different protocol versions can still tell each other so.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from .errors import (
    AmbiguousDigestError,
    ConfigError,
    FlecheError,
    ReadOnlyError,
    SaveError,
    SignatureError,
)

__all__ = [
    "CHUNK",
    "MAGIC",
    "PROTOCOL",
    "ProtocolError",
    "decode_error",
    "dumps_value",
    "encode_error",
    "loads_control",
    "read_blob",
    "read_json",
    "read_message",
    "skip_to_magic",
    "write_json",
    "write_message",
]

#: Version of the message format; both ends must speak the same one.
PROTOCOL = 1
#: Largest frame, in bytes: values move in pieces of this size.
CHUNK = 1 << 20
#: What the server writes first, before any frame.
MAGIC = b"\x00fleche-remote\n"

#: How much a login shell may print before the server starts.
_JUNK = 1 << 16
#: Exceptions a server may report that are raised here as themselves (anything else: FlecheError).
_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        KeyError,
        LookupError,
        ValueError,
        TypeError,
        PermissionError,
        FileNotFoundError,
        NotImplementedError,
        ReadOnlyError,
        ConfigError,
        SaveError,
        SignatureError,
    )
}
_HEADER = struct.Struct(">BI")
_MORE, _LAST = 0, 1

#: The classes a control message may contain, besides the built-in containers and scalars.
_ALLOWED = frozenset(
    {
        ("fleche.call", "DigestedCall"),
        ("fleche.call", "QueryCall"),
        ("fleche.call", "Exactly"),
        ("fleche.digest", "Digest"),
        ("builtins", "frozenset"),
        ("builtins", "set"),
        ("builtins", "complex"),
        ("builtins", "range"),
        ("builtins", "slice"),
        ("collections", "OrderedDict"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "PosixPath"),
        ("numpy", "dtype"),  # numpy scalars in metadata: a dtype and its bytes
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
    }
)


class ProtocolError(OSError):
    """The other end sent something that is not a well-formed message."""


class _ControlUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"a fleche remote control message may not contain {module}.{name}; "
                "only call records and plain data travel outside of stored values"
            )
        return super().find_class(module, name)


def loads_control(data: bytes) -> Any:
    """A control message from its bytes, refusing every class not on the allow-list."""
    return _ControlUnpickler(io.BytesIO(data)).load()


def dumps_value(value: Any) -> bytes:
    """A value as bytes for the wire (pickle protocol 5)."""
    return pickle.dumps(value, protocol=5)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) < size:  # a short read from a buffered stream means the end
        raise EOFError("the other end closed the connection")
    return data


def _write_blob(stream: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    start = 0
    while True:
        piece = view[start : start + CHUNK]
        start += len(piece)
        stream.write(_HEADER.pack(_LAST if start >= len(view) else _MORE, len(piece)))
        stream.write(piece)
        if start >= len(view):
            return


def read_blob(stream: BinaryIO) -> bytes:
    """One blob: frames read until the last one; ``EOFError`` if the stream ends."""
    parts = []
    while True:
        flag, size = _HEADER.unpack(_read_exact(stream, _HEADER.size))
        if flag not in (_MORE, _LAST) or size > CHUNK:
            raise ProtocolError(f"malformed frame header (flag {flag}, {size} bytes)")
        parts.append(_read_exact(stream, size))
        if flag == _LAST:
            return b"".join(parts)


def write_message(stream: BinaryIO, control: dict[str, Any], values: Sequence[bytes] = ()) -> None:
    """Send ``control`` and the pickled ``values`` after it, then flush."""
    _write_blob(stream, pickle.dumps({**control, "values": len(values)}, protocol=5))
    for value in values:
        _write_blob(stream, value)
    stream.flush()


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], list[bytes]]:
    """The control part of the next message and its value blobs (still pickled)."""
    control = loads_control(read_blob(stream))
    if not isinstance(control, dict):
        raise ProtocolError(f"a control message is a dict, not {type(control).__name__}")
    return control, [read_blob(stream) for _ in range(control.pop("values", 0))]


def skip_to_magic(reader: BinaryIO) -> None:
    """Read past whatever a login shell printed before the server's :data:`MAGIC`."""
    seen = b""
    while len(seen) < _JUNK:
        line = reader.readline(_JUNK)
        if not line:
            raise EOFError(
                "the server ended before it started"
                + (f" (it printed {seen.decode(errors='replace').strip()!r})" if seen else "")
            )
        if line.endswith(MAGIC):
            return
        seen += line
    raise EOFError(f"no fleche server answered; got {seen[:200]!r}…")


def encode_error(err: Exception) -> dict[str, Any]:
    """An exception as a reply the client turns back into the same kind of exception."""
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    reply: dict[str, Any] = {"error": type(err).__name__, "message": message}
    if isinstance(err, AmbiguousDigestError):
        reply["ambiguous"] = (err.prefix, err.candidates, err.needed)
    return reply


def decode_error(reply: Mapping[str, Any], where: str) -> Exception:
    """The exception a reply of :func:`encode_error` reports, as the same kind of exception here."""
    if "ambiguous" in reply:
        return AmbiguousDigestError(*reply["ambiguous"])
    cls = _ERRORS.get(reply["error"])
    if cls is None:
        return FlecheError(f"{where} raised {reply['error']}: {reply['message']}")
    return cls(reply["message"])


def write_json(stream: BinaryIO, data: dict[str, Any]) -> None:
    """A handshake blob: JSON, readable by every protocol version."""
    _write_blob(stream, json.dumps(data).encode())
    stream.flush()


def read_json(stream: BinaryIO) -> dict[str, Any]:
    """A handshake blob written by :func:`write_json`."""
    try:
        data = json.loads(read_blob(stream))
    except ValueError as err:
        raise ProtocolError(f"malformed handshake: {err}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"malformed handshake: {data!r}")
    return data
