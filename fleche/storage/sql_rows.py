"""Call rows decoded a page at a time: one JSON parse per column per page, checks in bulk.

Listing a large store is bound by the Python work per row.  A page of rows
(``position, key, *ROW_COLUMNS``) has its argument documents parsed as one
JSON array, its metadata documents as another, every argument digest
checked by one regular expression and every seal compared, before any
record is built; a page that fails any of these checks (a damaged row) is
decoded row by row instead, so that each damaged row is named alone.

Why the joined parse is exact: each row's text is a JSON document fleche
wrote, so ``[doc,doc,...]`` parses to one element per row.  A row damaged
so that its text is no longer one document makes the array fail to parse,
hold another number of elements or an element of another type than the
others, and the page falls back to the per-row path; rows crafted in
concert could only produce records their author could have written as
valid rows anyway (the seal, which guards the result, is checked per row).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Sequence
from itertools import chain
from json.scanner import make_scanner
from typing import Any

from ..call_record import Call, StoredCall
from ..digest import Digest
from .sql_metadata import join_metadata
from .sql_seal import broken_seal, seal, seals

__all__ = ["decode", "decode_page"]

_scan = make_scanner(json.JSONDecoder())
_loads = json.loads
_HEX = re.compile("[0-9a-f]*")
_new = str.__new__
_make = object.__new__
_NO_UNKEYED: frozenset[str] = frozenset()
_DICT = {dict}
_DIGEST_LENGTH = {32}
_STR = {str}
_stored_key = StoredCall.stored_as.__set__  # type: ignore[attr-defined]
# The slots of a record, set directly: a record per row through its __init__
# costs more than the rest of its decoding.
_name, _arguments, _metadata, _module, _version, _code, _result, _unkeyed, _created = (
    getattr(Call, field).__set__
    for field in (
        "name", "arguments", "metadata", "module", "version", "code", "result", "unkeyed",
        "created",
    )
)  # fmt: skip


def _json(text: Any) -> Any:
    """JSON text decoded by the C scanner (psycopg hands over documents decoded already)."""
    if type(text) is not str:
        return text
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("empty JSON text") from None
    if end != len(text):
        raise ValueError("text after the JSON document")
    return value


def decode(key: str, row: Sequence[Any]) -> StoredCall:
    """The record of a ``calls`` row selected as ``ROW_COLUMNS``; ``ValueError`` if damaged.

    The same record :func:`~fleche.storage.sql_schema.decode_row` makes,
    with the argument digests checked together instead of one by one.
    """
    name, module, version, code, unkeyed, created, result, args, meta, typed, sealed = row
    if sealed != seal(key, result):
        raise broken_seal(result, sealed)
    given = _json(args)
    if type(given) is not dict:
        raise ValueError("the arguments are not a JSON object")
    digests = list(given.values())
    if not all(type(d) is str and len(d) == 32 for d in digests) or not _HEX.fullmatch(
        "".join(digests)
    ):
        raise ValueError("an argument digest is not 32 hexadecimal characters")
    records, damaged = _in_bulk([(None, key, *row)], [given], [_json(meta)])
    if damaged:  # typed metadata that cannot be read
        raise damaged[0][1]
    return records[0]


def _documents(texts: Sequence[Any]) -> list[Any] | None:
    """Each of ``texts`` parsed (one parse for them all), or ``None`` if that cannot be trusted."""
    if set(map(type, texts)) == _DICT:  # psycopg decodes JSONB itself
        return list(texts)
    try:
        parsed = _loads("[" + ",".join(texts) + "]")
    except (TypeError, ValueError):
        return None
    if len(parsed) != len(texts) or set(map(type, parsed)) != _DICT:
        return None
    return parsed


def _checked(page: list[tuple[Any, ...]]) -> tuple[list[Any], list[Any]] | None:
    """The argument and metadata documents of a page, if every row of it passes every check.

    Each check runs over a whole column (in C, no Python code per row).
    """
    _, keys, *_, results, given, meta, _, sealed = zip(*page, strict=True)
    if seals(keys, results) != list(sealed):
        return None
    given, meta = _documents(given), _documents(meta)
    if given is None or meta is None:
        return None
    digests = list(chain.from_iterable(map(dict.values, given)))
    if digests and (set(map(type, digests)) != _STR or set(map(len, digests)) != _DIGEST_LENGTH):
        return None
    if not _HEX.fullmatch("".join(digests)):
        return None
    return given, meta


#: What a page decodes to: the records of its good rows (each knows its key), and each
#: damaged row's key and error.
Decoded = tuple[list[StoredCall], list[tuple[str, Exception]]]


def decode_page(page: list[tuple[Any, ...]]) -> Decoded:
    """The rows of a page (``position, key, *ROW_COLUMNS``) decoded; see :data:`Decoded`.

    The cycle collector is paused meanwhile: it would otherwise walk the
    ever larger heap of a long listing every few hundred records, a third
    of the time of a listing (records hold no cycles to find).
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        documents = _checked(page) if page else None
        if documents is None:
            return _one_by_one(page)
        return _in_bulk(page, *documents)
    finally:
        if paused:
            gc.enable()


def _in_bulk(page: list[tuple[Any, ...]], given: list[Any], meta: list[Any]) -> Decoded:
    records: list[StoredCall] = []
    damaged: list[tuple[str, Exception]] = []
    for row, arguments, metadata in zip(page, given, meta, strict=True):
        _, key, name, module, version, code, unkeyed, created, result, _, _, typed, _ = row
        if typed is not None:  # some metadata JSON cannot hold: put back (and checked) alone
            try:
                metadata = join_metadata(metadata, typed)
            except Exception as err:
                damaged.append((key, err))
                continue
        record = _make(StoredCall)
        _stored_key(record, key)
        _name(record, name)
        _arguments(record, {n: _new(Digest, d) for n, d in arguments.items()})
        _metadata(record, metadata)
        _module(record, module)
        _version(record, version)
        _code(record, None if code is None else Digest(code))
        _result(record, None if result is None else _new(Digest, result))
        _unkeyed(record, frozenset(unkeyed.split(",")) if unkeyed else _NO_UNKEYED)
        _created(record, created)
        records.append(record)
    return records, damaged


def _one_by_one(page: list[tuple[Any, ...]]) -> Decoded:
    records: list[StoredCall] = []
    damaged: list[tuple[str, Exception]] = []
    for row in page:
        key = row[1]
        try:
            records.append(decode(key, row[2:]))
        except Exception as err:
            damaged.append((key, err))
    return records, damaged
