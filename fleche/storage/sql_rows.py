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

import json
from collections.abc import Sequence
from itertools import chain, repeat
from json.scanner import make_scanner
from typing import Any

from ..call_record import DigestedCall
from ..digest import Digest
from .record_page import RecordPage, Repeated, collector_paused, owned, unkeyed_sets
from .sql_metadata import join_metadata
from .sql_seal import broken_seal, seal, seals

__all__ = ["decode", "decode_page", "is_hex"]

_scan = make_scanner(json.JSONDecoder())
_loads = json.loads
#: The lowercase hex digits, deleted by ``str.translate``: ten times the speed of a regex.
_HEX_DIGITS = dict.fromkeys(map(ord, "0123456789abcdef"))
_new = str.__new__
_DICT = {dict}
_DIGEST_LENGTH = {32}
_STR = {str}


def is_hex(text: str) -> bool:
    """Whether ``text`` holds only lowercase hexadecimal digits (the digests of a page at once)."""
    return not text.translate(_HEX_DIGITS)


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


def decode(key: str, row: Sequence[Any]) -> DigestedCall:
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
    if not all(type(d) is str and len(d) == 32 for d in digests) or not is_hex("".join(digests)):
        raise ValueError("an argument digest is not 32 hexadecimal characters")
    decoded, damaged = _in_bulk([(v,) for v in (None, key, *row)], [given], [_json(meta)])
    if damaged:  # typed metadata that cannot be read
        raise damaged[0][1]
    return decoded.records()[0]


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


def _repeated(texts: Sequence[Any]) -> list[Any] | None:
    """The metadata documents of a page (see :func:`_documents`), each distinct text parsed once.

    Mostly distinct, they are parsed as :func:`_documents` parses them;
    else the rows of one text share one document (:class:`Repeated`).
    """
    if set(map(type, texts)) != _STR:
        return _documents(texts)
    unique = dict.fromkeys(texts)
    if len(unique) * 2 > len(texts):
        return _documents(texts)
    distinct = _documents(list(unique))
    if distinct is None:
        return None
    by_text = dict(zip(unique, distinct, strict=True))
    # Each row's text kept as the first of its kind (the page's own strings are then freed).
    first = {text: text for text in unique}
    return Repeated(map(by_text.__getitem__, texts), list(map(first.__getitem__, texts)), distinct)


def _checked(columns: list[tuple[Any, ...]]) -> tuple[list[Any], list[Any]] | None:
    """The argument and metadata documents of a page (as columns), if every row passes every check.

    Each check runs over a whole column (in C, no Python code per row).
    """
    _, keys, *_, results, given, meta, _, sealed = columns
    if seals(keys, results) != list(sealed):
        return None
    given, meta = _documents(given), _repeated(meta)
    if given is None or meta is None:
        return None
    digests = list(chain.from_iterable(map(dict.values, given)))
    if digests and (set(map(type, digests)) != _STR or set(map(len, digests)) != _DIGEST_LENGTH):
        return None
    if not is_hex("".join(digests)):
        return None
    return given, meta


#: What a page decodes to: the page of its good rows, and each damaged row's key and error.
Decoded = tuple[RecordPage, list[tuple[str, Exception]]]


def decode_page(page: list[tuple[Any, ...]]) -> Decoded:
    """The rows of a page (``position, key, *ROW_COLUMNS``) decoded; see :data:`Decoded`."""
    with collector_paused():
        columns = list(zip(*page, strict=True))  # transposed once, for the checks and the page
        documents = _checked(columns) if page else None
        if documents is None:
            return _one_by_one(page)
        return _in_bulk(columns, *documents)


def _in_bulk(columns: list[tuple[Any, ...]], given: list[Any], meta: list[Any]) -> Decoded:
    """The checked rows (as columns) as a :class:`RecordPage` (no Python code per row where none is needed)."""
    _, keys, names, modules, versions, codes, unkeyed, created, results, _, _, typed, _ = columns
    damaged: list[tuple[str, Exception]] = []
    dropped: set[int] = set()
    rows = _typed_rows(typed)
    if rows:  # joined in place: each row's own document
        meta = list(owned(meta))
    for n in rows:  # some metadata JSON cannot hold: put back (and checked) alone
        try:
            meta[n] = join_metadata(meta[n], typed[n])
        except Exception as err:
            damaged.append((keys[n], err))
            dropped.add(n)
    decoded = RecordPage(
        keys=keys,
        names=names,
        modules=modules,
        versions=versions,
        codes=_digests(codes),
        results=results,
        arguments=given,
        metadata=meta,
        unkeyed=unkeyed_sets(unkeyed),
        created=created,
    )
    if dropped:
        decoded = decoded.select([n not in dropped for n in range(len(keys))])
    return decoded, damaged


def _typed_rows(typed: Sequence[Any]) -> list[int]:
    """The positions of the rows with typed metadata (none, usually)."""
    if typed.count(None) == len(typed):
        return []
    return [n for n, text in enumerate(typed) if text is not None]


def _digests(texts: Sequence[Any]) -> Any:
    """A column of digests (or ``None``) as :class:`Digest`, checked as ``Digest()`` checks them."""
    if texts.count(None) == len(texts):  # calls saved without a code digest
        return texts
    present = [t for t in texts if t is not None] if None in texts else texts
    if set(map(type, present)) <= _STR and set(map(len, present)) <= _DIGEST_LENGTH:
        if is_hex("".join(present)):  # what Digest() would return as it is
            if len(present) == len(texts):
                return list(map(_new, repeat(Digest), texts))
            return [None if t is None else _new(Digest, t) for t in texts]
    return [None if t is None else Digest(t) for t in texts]


def _one_by_one(page: list[tuple[Any, ...]]) -> Decoded:
    records: list[DigestedCall] = []
    damaged: list[tuple[str, Exception]] = []
    for row in page:
        key = row[1]
        try:
            records.append(decode(key, row[2:]))
        except Exception as err:
            damaged.append((key, err))
    return RecordPage.of(records), damaged
