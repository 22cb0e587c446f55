"""Metadata in SQL: a queryable JSON document, plus typed JSON for what JSON cannot carry.

A record's metadata is split in two columns.  ``meta`` holds every entry
that comes back from JSON (and PostgreSQL's JSONB) equal and of the same
type: text, ``int``, ordinary ``float``, ``bool``, ``None`` and lists and
text-keyed dicts of those; templates are matched against it in SQL.
``meta_typed`` holds the rest in the typed encoding below, as plain ASCII
JSON text, and is only ever decoded by :func:`decode` — never unpickled:
nothing read from a call store can run code (see ``docs/security.rst``).

The typed encoding: ``null``, booleans, integers, finite floats, strings
and lists stand for themselves; every JSON object is a tag
``{"t": <type>, "v": <payload>}``:

=============  ==========================================================
``dict``       ``[[key, value], ...]`` (keys of any supported type)
``tuple``      ``[item, ...]``; also ``set``, ``frozenset``
``float``      ``"inf"``, ``"-inf"`` or ``"nan"``
``complex``    ``[real, imag]``
``bytes``      hex text; also ``bytearray``
``digest``     a :class:`~fleche.digest.Digest` as its hex text
``datetime``   ISO 8601 text; also ``date``, ``time``
``timedelta``  ``[days, seconds, microseconds]``
``decimal``    its text; also ``fraction``, ``uuid``
``path``       ``[class name, text]`` for the four :mod:`pathlib` classes
``numpy``      ``[dtype, value]``: a numpy bool, number or text scalar
``ndarray``    ``[dtype, shape, hex of the bytes]``: a numeric numpy array
=============  ==========================================================

Values of any other type are refused when the record is saved, with a
:class:`~fleche.errors.SaveError` naming the entry and its type, rather
than stored as something that would load back different (convert them to
text or numbers in the metadata class that records them).
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import json
import math
import pathlib
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ..digest import Digest
from ..errors import SaveError

__all__ = [
    "decode",
    "encode",
    "join_metadata",
    "merge_metadata",
    "metadata_columns",
    "plain_chunks",
    "plain_key",
    "split_metadata",
    "text_ok",
    "to_json",
]

_PATHS = {
    cls.__name__: cls
    for cls in (
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        pathlib.PosixPath,
        pathlib.WindowsPath,
    )
}
#: numpy dtype kinds kept exactly: bool, signed, unsigned, float, complex, text.
_SCALAR_KINDS = frozenset("biufcU")
_ARRAY_KINDS = frozenset("biufc")
_to_text = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode
#: JSON of the queryable columns: UTF-8 as is (not \u escapes), so SQLite's JSON paths
#: see names as written.
to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def plain_key(name: str) -> bool:
    """Whether a metadata name is written verbatim in stored JSON (so a JSON path finds it)."""
    return '"' not in name and "\\" not in name and not any(c < " " for c in name)


def text_ok(text: str) -> bool:
    """Whether text can be stored as JSON text on every server (PostgreSQL refuses NUL and lone surrogates)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_exact(value: Any) -> bool:
    """Whether ``value`` comes back from JSON (and JSONB) equal and of the same types."""
    kind = type(value)
    if kind is str:
        return text_ok(value)
    if value is None or kind is bool or kind is int:
        return True
    if kind is float:
        # JSONB re-renders 1e+16 as 10000000000000000, which would load as an int.
        return (
            math.isfinite(value)
            and abs(value) < 1e16
            and not (value == 0 and math.copysign(1.0, value) < 0)
        )
    if kind is list:
        return all(_json_exact(v) for v in value)
    if kind is dict:
        return all(type(k) is str and text_ok(k) and _json_exact(v) for k, v in value.items())
    return False


_float_text = float.__repr__  # what the JSON encoder writes for a finite float
_int_text = int.__repr__
_copysign = math.copysign


#: (namespace, entry names) -> their JSON member, a ``%s`` per value, or "" if a name is not
#: plain: the runtime recorder's entries are new every call, their names the same.
_FRAMES: dict[tuple[str, tuple[Any, ...]], str] = {}


def _frame(namespace: str, names: tuple[Any, ...]) -> str:
    """The member ``"namespace":{"name":%s,...}`` (``%`` doubled), remembered; "" if a name is not plain."""
    frame = ""
    if all(type(n) is str and n.isascii() and "\x00" not in n for n in (namespace, *names)):
        members = ",".join(_name_json(n).replace("%", "%%") + ":%s" for n in names)
        frame = _name_json(namespace).replace("%", "%%") + ":{" + members + "}"
    if len(_FRAMES) >= _KNOWN_MAX:
        _FRAMES.clear()
    _FRAMES[namespace, names] = frame
    return frame


def _plain_json(namespace: Any, entries: Any) -> str | None:
    """The JSON member ``"namespace":{...}`` of a plain namespace (see :func:`split_metadata`), else ``None``.

    Tested and written in one pass, without a call per entry: the text
    :data:`to_json` writes for it, its names from a remembered frame.
    """
    if type(namespace) is not str or type(entries) is not dict:
        return None
    names = tuple(entries)
    frame = _FRAMES.get((namespace, names))
    if frame is None:
        frame = _frame(namespace, names)
    if not frame:
        return None
    texts = []
    for value in entries.values():
        kind = type(value)
        if kind is float:
            # As _json_exact: finite, below 1e16 (JSONB would make it an int), not -0.0.
            if not -1e16 < value < 1e16 or (not value and _copysign(1.0, value) < 0):
                return None
            texts.append(_float_text(value))
        elif kind is str:
            if not value.isascii() or "\x00" in value:
                return None
            texts.append(_name_json(value))
        elif kind is int:
            texts.append(_int_text(value))
        elif kind is bool:
            texts.append("true" if value else "false")
        elif value is None:
            texts.append("null")
        else:
            return None
    return frame % tuple(texts)


def _chunk_encoder() -> Callable[[Any, int], Any]:
    """The C encoder :data:`to_json` sets up on every call (costlier than a small document), set up once.

    It checks for no circular reference: it is given flat dicts of scalars.
    """
    make = json.encoder.c_make_encoder
    if make is None:  # no C accelerator: the plain encoder does the same
        return lambda document, _: (to_json(document),)
    return make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True)


#: ``"".join(plain_chunks(document, 0))`` is the JSON text of a plain namespace or a
#: dict of digests, exactly as :data:`to_json` writes it.
plain_chunks = _chunk_encoder()
_name_json = json.encoder.encode_basestring

#: id of a namespace's entries -> (the entries, the namespace, a copy, their types, the
#: namespace's JSON member ``"name":{...}``): a recorder that hands every call the same
#: mapping (the environment, the git state) has it encoded once, as long as it does not change.
_KNOWN: dict[int, tuple[dict[str, Any], Any, dict[str, Any], tuple[type, ...], str]] = {}
_KNOWN_MAX = 64


def metadata_columns(metadata: Mapping[Any, Any]) -> tuple[str, str | None]:
    """The ``meta`` JSON text of a record's metadata and its typed JSON text (or ``None``).

    What ``to_json`` of the document of :func:`split_metadata` and its typed
    text are, made without walking and encoding again the namespaces that
    come back unchanged call after call.
    """
    if type(metadata) is dict:
        parts = []
        for namespace, entries in metadata.items():
            known = _KNOWN.get(id(entries))
            if (
                known is not None
                and known[0] is entries
                and known[1] == namespace  # checked plain when it was encoded
                and entries == known[2]  # not changed in place…
                and tuple(map(type, entries.values())) == known[3]  # …not even from 0 to False
            ):
                parts.append(known[4])
                continue
            member = _plain_json(namespace, entries)
            if member is None:
                break
            kinds = tuple(map(type, entries.values()))
            if float not in kinds:  # 0.0 == -0.0, yet they are written apart: never reused
                if len(_KNOWN) >= _KNOWN_MAX:
                    _KNOWN.clear()
                _KNOWN[id(entries)] = (entries, namespace, dict(entries), kinds, member)
            parts.append(member)
        else:
            return "{" + ",".join(parts) + "}", None
    document, typed = split_metadata(metadata)
    return to_json(document), typed


def split_metadata(metadata: Mapping[Any, Any]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Metadata as a JSON document, and the typed JSON text of what that cannot carry exactly.

    A namespace that is not a mapping under a text name goes to the typed
    part whole; otherwise its inexact entries go there one by one and the
    namespace stays in the document (so its presence can be queried).
    Raises :class:`~fleche.errors.SaveError` for a value of a type the
    typed encoding does not know.
    """
    # The usual case: every namespace a dict of ASCII names and plain scalars JSON keeps
    # exactly, as the recorders fleche ships write (non-ASCII text takes the general path).
    if type(metadata) is dict and all(_plain_json(n, e) is not None for n, e in metadata.items()):
        return metadata, None
    document: dict[str, dict[str, Any]] = {}
    extra: dict[Any, Any] = {}
    for namespace, entries in metadata.items():
        if type(namespace) is not str or not text_ok(namespace) or not isinstance(entries, Mapping):
            extra[namespace] = entries
            continue
        exact: dict[str, Any] = {}
        for name, value in entries.items():
            if type(name) is str and text_ok(name) and _json_exact(value):
                exact[name] = value
            else:
                extra.setdefault(namespace, {})[name] = value
        document[namespace] = exact
    if not extra:
        return document, None
    try:
        return document, _to_text(encode(extra))
    except TypeError as err:
        raise SaveError(
            f"the call's metadata holds {err}, which the SQL store cannot keep exactly; "
            "record it as text or numbers instead (see fleche.storage.sql_metadata)"
        ) from None


def join_metadata(document: dict[str, Any], typed: str | None) -> dict[Any, Any]:
    """The inverse of :func:`split_metadata`; ``ValueError`` for damaged typed text."""
    if typed is None:
        return document
    extra = decode(json.loads(typed))
    if type(extra) is not dict:
        raise ValueError("the typed metadata is not a mapping")
    return merge_metadata(document, extra)


def merge_metadata(document: dict[str, Any], extra: dict[Any, Any]) -> dict[Any, Any]:
    """``document`` with the entries of ``extra`` put back (whole namespaces or single entries)."""
    for namespace, entries in extra.items():
        if namespace in document and isinstance(entries, Mapping):
            document[namespace].update(entries)
        else:
            document[namespace] = entries
    return document


# -- the typed encoding -------------------------------------------------------------


def encode(value: Any, where: str = "metadata") -> Any:
    """``value`` as typed JSON data; ``TypeError`` naming ``where`` for an unsupported type."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
    if kind is list:
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        return {
            "t": "dict",
            "v": [[encode(k, where), encode(v, f"{where}[{k!r}]")] for k, v in value.items()],
        }
    if kind in (tuple, set, frozenset):
        items = value if kind is tuple else sorted(value, key=repr)
        return {"t": kind.__name__, "v": [encode(v, where) for v in items]}
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return {"t": encoder[0], "v": encoder[1](value)}
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and value.dtype.kind in _SCALAR_KINDS:
        return {"t": "numpy", "v": [value.dtype.str, encode(value.item(), where)]}
    if numpy is not None and kind is numpy.ndarray and value.dtype.kind in _ARRAY_KINDS:
        data = numpy.ascontiguousarray(value).tobytes()
        return {"t": "ndarray", "v": [value.dtype.str, list(value.shape), data.hex()]}
    raise TypeError(f"a value of type {kind.__module__}.{kind.__qualname__} at {where}")


_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    complex: ("complex", lambda z: [encode(z.real), encode(z.imag)]),
    bytes: ("bytes", bytes.hex),
    bytearray: ("bytearray", bytearray.hex),
    Digest: ("digest", str),
    datetime.datetime: ("datetime", datetime.datetime.isoformat),
    datetime.date: ("date", datetime.date.isoformat),
    datetime.time: ("time", datetime.time.isoformat),
    datetime.timedelta: ("timedelta", lambda d: [d.days, d.seconds, d.microseconds]),
    decimal.Decimal: ("decimal", str),
    fractions.Fraction: ("fraction", str),
    uuid.UUID: ("uuid", str),
    **{cls: ("path", lambda p: [type(p).__name__, str(p)]) for cls in _PATHS.values()},
}


def _numpy_scalar(payload: list[Any]) -> Any:
    import numpy

    dtype, item = payload
    return _dtype(numpy, dtype, _SCALAR_KINDS).type(decode(item))


def _numpy_array(payload: list[Any]) -> Any:
    import numpy

    dtype, shape, data = payload
    array = numpy.frombuffer(bytes.fromhex(data), dtype=_dtype(numpy, dtype, _ARRAY_KINDS))
    return array.reshape(shape).copy()


def _dtype(numpy: Any, name: str, kinds: frozenset[str]) -> Any:
    dtype = numpy.dtype(name)
    if dtype.kind not in kinds:
        raise ValueError(f"typed metadata names the numpy dtype {name!r}, which it never stores")
    return dtype


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "dict": lambda v: {decode(k): decode(item) for k, item in v},
    "tuple": lambda v: tuple(decode(i) for i in v),
    "set": lambda v: {decode(i) for i in v},
    "frozenset": lambda v: frozenset(decode(i) for i in v),
    "float": float,
    "complex": lambda v: complex(decode(v[0]), decode(v[1])),
    "bytes": bytes.fromhex,
    "bytearray": bytearray.fromhex,
    "digest": Digest,
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "timedelta": lambda v: datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": decimal.Decimal,
    "fraction": fractions.Fraction,
    "uuid": uuid.UUID,
    "path": lambda v: _PATHS[v[0]](v[1]),
    "numpy": _numpy_scalar,
    "ndarray": _numpy_array,
}


def decode(data: Any) -> Any:
    """The value typed JSON data stands for; ``ValueError`` for an unknown tag or bad payload."""
    if type(data) is list:
        return [decode(v) for v in data]
    if type(data) is not dict:
        return data
    try:
        return _DECODERS[data["t"]](data["v"])
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"damaged typed metadata {str(data)[:80]!r}: {err!r}") from None
