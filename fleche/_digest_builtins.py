"""Encoders for built-in and standard-library types, registered in the dispatch table.

Numbers are exact and tagged by type; NaN floats are canonical; dicts and sets
are order-insensitive (children sorted by digest), ``OrderedDict`` keeps its
order and ``defaultdict`` its factory, as their equality and behaviour do; aware datetimes are their
wall-clock fields plus their UTC offset. See :mod:`fleche.digest` for the list
of decisions.
"""

from __future__ import annotations

import datetime
import pathlib
import struct
import sys
import uuid
from collections import OrderedDict, defaultdict, deque
from decimal import Decimal
from fractions import Fraction
from typing import Any

import xxhash

from fleche._digest_scheme import (
    BUILTIN,
    ONE_SHOT_MAX,
    Encoder,
    Tag,
    composite,
    encode,
    fallback,
    header,
    leaf,
    lookup,
    pack_head,
    qualname,
    relocate,
    reset,
    stream,
)
from fleche.errors import Indigestible

_xxh = xxhash.xxh3_128_digest

# --------------------------------------------------------------------------- scalars

_H_INT = header(Tag.INT)
_pack_small_int = struct.Struct("<10sq").pack
_INT8 = pack_head(_H_INT, 8)
_H_FLOAT = header(Tag.FLOAT)
_pack_float = struct.Struct("<10sd").pack
_FLOAT8 = pack_head(_H_FLOAT, 8)
_pack_double = struct.Struct("<d").pack
_pack_q = struct.Struct("<q").pack
_NAN = float("nan")


def _enc_int(value: int) -> bytes:
    # Signed little-endian two's complement, max(8, minimal) bytes: one length per
    # value, so the fast struct path for int64 and the big-int path never overlap.
    try:
        return _xxh(_pack_small_int(_INT8, value))
    except struct.error:
        size = (value.bit_length() + 8) // 8
        return leaf(_H_INT, int.to_bytes(value, size, "little", signed=True))


def _enc_float(value: float) -> bytes:
    # Exact IEEE-754 bits; every NaN is mapped to the one quiet NaN.
    if value != value:
        value = _NAN
    return _xxh(_pack_float(_FLOAT8, value))


def _float_bits(value: float) -> bytes:
    return _pack_double(_NAN if value != value else value)


_H_COMPLEX = header(Tag.COMPLEX)


def _enc_complex(value: complex) -> bytes:
    return leaf(_H_COMPLEX, _float_bits(value.real) + _float_bits(value.imag))


_H_DECIMAL = header(Tag.DECIMAL)


def _enc_decimal(value: Decimal) -> bytes:
    # Exact: sign, coefficient digits and exponent, so Decimal("1.0") != Decimal("1.00").
    sign, digits, exponent = value.as_tuple()
    if exponent == "n":  # every quiet NaN is one value
        return leaf(_H_DECIMAL, b"n")
    if exponent == "N":
        return leaf(_H_DECIMAL, b"N")
    if exponent == "F":
        return leaf(_H_DECIMAL, b"F" + bytes((sign,)))
    return leaf(_H_DECIMAL, b"f" + bytes((sign,)) + _pack_q(exponent) + bytes(digits))


_H_FRACTION = header(Tag.FRACTION)


def _enc_fraction(value: Fraction) -> bytes:
    return composite(_H_FRACTION, [_enc_int(value.numerator), _enc_int(value.denominator)])


_H_STR = header(Tag.STR)
_STR_HEADS = tuple(pack_head(_H_STR, n) for n in range(256))  # skips a pack per short str
_utf8 = str.encode  # unbound: a str subclass's own encode() must not change the digest


def _enc_str(value: str) -> bytes:
    try:
        data = _utf8(value)
    except UnicodeEncodeError:  # lone surrogates: keep them encodable (and distinct)
        data = _utf8(value, "utf-8", "surrogatepass")
    n = len(data)
    if n < 256:
        return _xxh(_STR_HEADS[n] + data)
    return leaf(_H_STR, data)


_H_BYTES = header(Tag.BYTES)
_H_BYTEARRAY = header(Tag.BYTEARRAY)
_H_MEMORYVIEW = header(Tag.MEMORYVIEW)


def _enc_memoryview(view: memoryview) -> bytes:
    data = view if view.c_contiguous else view.tobytes()
    content = stream(_H_BYTES, view.nbytes, [data] if view.nbytes else [])
    return composite(_H_MEMORYVIEW, [_enc_str(view.format), encode(view.shape), content])


def _constant(tag: Tag, payload: bytes = b"") -> bytes:
    return leaf(header(tag), payload)


_NONE = _constant(Tag.NONE)
_TRUE = _constant(Tag.BOOL, b"\x01")
_FALSE = _constant(Tag.BOOL, b"\x00")
_ELLIPSIS = _constant(Tag.ELLIPSIS)
_NOTIMPLEMENTED = _constant(Tag.NOTIMPLEMENTED)

# --------------------------------------------------------------------------- containers

_H_LIST = header(Tag.LIST)
_H_TUPLE = header(Tag.TUPLE)
_H_DICT = header(Tag.DICT)
_H_SET = header(Tag.SET)
_H_FROZENSET = header(Tag.FROZENSET)
_H_DEQUE = header(Tag.DEQUE)
_H_ORDERED_DICT = header(Tag.ORDERED_DICT)
_H_DEFAULT_DICT = header(Tag.DEFAULT_DICT)


BULK_MIN = 512
"""Lists and tuples this long go through :mod:`fleche._digest_mixed` (numpy)."""
DICT_BULK_MIN = 1024
"""Dicts this long go through :mod:`fleche._digest_items`: shorter ones digest faster
one item at a time (measured with str keys, ``benchmarks/bench_digest.py``)."""
IMPORT_MIN = 1 << 16
"""Below this many elements, numpy is used only if the program imported it already."""
_bulk: Any = None  # that module once loaded; False if numpy is not installed


def _bulk_module(size: int) -> Any:
    global _bulk
    if _bulk is None and (size >= IMPORT_MIN or "numpy" in sys.modules):
        try:
            from fleche import _digest_items as module
        except ImportError:
            module = False
        _bulk = module
    return _bulk


def _bulk_sequence(head: bytes, obj: Any) -> bytes | None:
    """The digest of a long list or tuple of exact ints, floats or strs; else None."""
    bulk = _bulk_module(len(obj))
    found = bulk.element_digests(obj) if bulk else None
    return None if found is None else stream(head, 16 * len(obj), found)


def _sequence_encoder(head: bytes) -> Encoder:
    def encode_sequence(obj: Any) -> bytes:
        if len(obj) >= BULK_MIN:
            done = _bulk_sequence(head, obj)
            if done is not None:
                return done
        # A plain loop, not a comprehension: in 3.11 that saves a frame, ~25% on
        # the 3-argument tuple case of benchmarks/bench_digest.py.
        get = lookup
        parts: list[bytes] = []
        append = parts.append
        try:
            for x in obj:
                append(get(type(x), fallback)(x))
        except Indigestible:
            relocate((f"[{i}]", x) for i, x in enumerate(obj))
            raise
        payload = b"".join(parts)
        if len(payload) <= ONE_SHOT_MAX:  # leaf() inlined: small tuples are the common key
            return _xxh(pack_head(head, len(payload)) + payload)
        return leaf(head, payload)

    return encode_sequence


def _dict_items(obj: dict) -> list[bytes]:
    """Each item as its key digest followed by its value digest, in the dict's order."""
    get = lookup
    try:
        return [get(type(k), fallback)(k) + get(type(v), fallback)(v) for k, v in obj.items()]
    except Indigestible:
        relocate(pair for k, v in obj.items() for pair in ((f"<key {k!r}>", k), (f"[{k!r}]", v)))
        raise


def _plain(cls: type) -> bool:
    """Whether a dict class reads its items as dict does (the bulk path reads keys and values)."""
    return cls.__iter__ is dict.__iter__ and cls.values is dict.values and cls.items is dict.items


def _enc_dict(obj: dict) -> bytes:
    # Order-insensitive: items sorted by key digest (32-byte key+value strings sort
    # by key first), so equal dicts built in any order share a digest.
    bulk = _bulk_module(len(obj)) if len(obj) >= DICT_BULK_MIN and _plain(type(obj)) else None
    if bulk:
        try:
            flat = bulk.sorted_items(list(obj), list(obj.values()))
        except Indigestible:
            _dict_items(obj)  # raises the failure with its place in the dict
            raise
        return stream(_H_DICT, flat.nbytes, [flat])
    items = _dict_items(obj)
    items.sort()
    return leaf(_H_DICT, b"".join(items))


def _enc_ordered_dict(obj: OrderedDict) -> bytes:
    # Two OrderedDicts with the same items in another order compare unequal: keep the order.
    return leaf(_H_ORDERED_DICT, b"".join(_dict_items(obj)))


def _enc_default_dict(obj: defaultdict) -> bytes:
    # The factory decides what a missing key reads as: part of what the value does.
    try:
        factory = encode(obj.default_factory)
    except Indigestible as err:
        raise err.located(".default_factory") from None
    return composite(_H_DEFAULT_DICT, [factory, _enc_dict(obj)])


def _set_encoder(head: bytes) -> Encoder:
    def encode_set(obj: Any) -> bytes:
        get = lookup
        try:
            parts = [get(type(x), fallback)(x) for x in obj]
        except Indigestible:
            relocate((f"{{{x!r}}}", x) for x in obj)
            raise
        parts.sort()
        return leaf(head, b"".join(parts))

    return encode_set


_enc_list = _sequence_encoder(_H_LIST)


def _enc_deque(obj: deque) -> bytes:
    # Its elements as a list's: the bulk paths slice, which a deque cannot.
    return composite(_H_DEQUE, [encode(obj.maxlen), _enc_list(list(obj))])


# --------------------------------------------------------------------------- stdlib values

_H_TYPE = header(Tag.TYPE)
_H_PATH = header(Tag.PATH)
_H_UUID = header(Tag.UUID)
_H_SLICE = header(Tag.SLICE)
_H_RANGE = header(Tag.RANGE)


def _enc_type(cls: type) -> bytes:
    return leaf(_H_TYPE, qualname(cls).encode("utf-8", "surrogatepass"))


def _path_encoder(cls: type) -> Encoder:
    # The bare class name, not module.qualname: pathlib moved modules between versions.
    name = _enc_str(cls.__name__)
    return lambda path: composite(_H_PATH, [name, _enc_str(str(path))])


def _enc_slice(obj: slice) -> bytes:
    parts = (("start", obj.start), ("stop", obj.stop), ("step", obj.step))
    try:
        return composite(_H_SLICE, [encode(value) for _, value in parts])
    except Indigestible:
        relocate((f".{name}", value) for name, value in parts)
        raise


def _enc_range(obj: range) -> bytes:
    return composite(_H_RANGE, [_enc_int(obj.start), _enc_int(obj.stop), _enc_int(obj.step)])


_pack_date = struct.Struct("<iBB").pack
_pack_clock = struct.Struct("<BBBI").pack
_pack_timedelta = struct.Struct("<iii").pack
_H_DATETIME = header(Tag.DATETIME)
_H_DATE = header(Tag.DATE)
_H_TIME = header(Tag.TIME)
_H_TIMEDELTA = header(Tag.TIMEDELTA)
_H_TIMEZONE = header(Tag.TIMEZONE)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _offset(value: datetime.datetime | datetime.time) -> bytes:
    # Aware values are their wall-clock fields plus their UTC offset (not the zone
    # name): 12:00+01:00 and 11:00+00:00 are the same instant but distinct values.
    offset = value.utcoffset()
    if offset is not None:
        return b"a" + _pack_q(offset // _MICROSECOND)
    if value.tzinfo is not None:  # e.g. a time with a zone whose offset needs a date
        return b"z" + encode(value.tzinfo)
    return b"n"


def _enc_datetime(obj: datetime.datetime) -> bytes:
    fields = _pack_date(obj.year, obj.month, obj.day)
    clock = _pack_clock(obj.hour, obj.minute, obj.second, obj.microsecond)
    return leaf(_H_DATETIME, fields + clock + _offset(obj))


def _enc_date(obj: datetime.date) -> bytes:
    return leaf(_H_DATE, _pack_date(obj.year, obj.month, obj.day))


def _enc_time(obj: datetime.time) -> bytes:
    return leaf(
        _H_TIME, _pack_clock(obj.hour, obj.minute, obj.second, obj.microsecond) + _offset(obj)
    )


def _enc_timedelta(obj: datetime.timedelta) -> bytes:
    return leaf(_H_TIMEDELTA, _pack_timedelta(obj.days, obj.seconds, obj.microseconds))


def _enc_timezone(obj: datetime.timezone) -> bytes:
    return leaf(_H_TIMEZONE, _pack_q(obj.utcoffset(None) // _MICROSECOND))


BUILTIN.update(
    {
        type(None): lambda _: _NONE,
        bool: lambda value: _TRUE if value else _FALSE,
        int: _enc_int,
        float: _enc_float,
        complex: _enc_complex,
        Decimal: _enc_decimal,
        Fraction: _enc_fraction,
        str: _enc_str,
        bytes: lambda value: leaf(_H_BYTES, value),
        bytearray: lambda value: leaf(_H_BYTEARRAY, value),
        memoryview: _enc_memoryview,
        list: _enc_list,
        tuple: _sequence_encoder(_H_TUPLE),
        dict: _enc_dict,
        OrderedDict: _enc_ordered_dict,
        defaultdict: _enc_default_dict,
        set: _set_encoder(_H_SET),
        frozenset: _set_encoder(_H_FROZENSET),
        deque: _enc_deque,
        type(...): lambda _: _ELLIPSIS,
        type(NotImplemented): lambda _: _NOTIMPLEMENTED,
        type: _enc_type,
        uuid.UUID: lambda value: leaf(_H_UUID, value.bytes),
        slice: _enc_slice,
        range: _enc_range,
        datetime.datetime: _enc_datetime,
        datetime.date: _enc_date,
        datetime.time: _enc_time,
        datetime.timedelta: _enc_timedelta,
        datetime.timezone: _enc_timezone,
    }
)
for _path_class in (
    pathlib.PurePath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    pathlib.Path,
    pathlib.PosixPath,
    pathlib.WindowsPath,
):
    BUILTIN[_path_class] = _path_encoder(_path_class)
reset()
