"""Templates as SQL: the conditions that select the keys of matching calls.

Every condition here may let through more calls than match (never fewer):
``Sql.query`` checks each loaded record with :meth:`QueryCall.matches`, so
the answer is exactly that of a scan, and SQL only has to narrow it down.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from sqlalchemy import and_, false, func, or_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from ..call import QueryCall
from ..call_template import unwrap
from ..digest import Digest, digest
from .sql_metadata import plain_key, text_ok
from .sql_schema import arguments, calls

__all__ = ["argument_joins", "batched", "call_conditions", "metadata_condition", "normalize_value"]


def normalize_value(value: Any) -> str:
    """The stored form of an argument or result: the hex digest of the value.

    A value given as its :class:`Digest` stays as it is, since
    ``digest(Digest(x)) == x``.
    """
    return str(digest(unwrap(value)))


def call_conditions(template: QueryCall) -> list[Any]:
    """Conditions on the ``calls`` row itself: function identity and result."""
    conditions: list[Any] = []
    for field in ("name", "module", "version", "code"):
        want = getattr(template, field)
        if want is None:
            continue
        want = unwrap(want)
        column = calls.c[field]
        if want is None:
            conditions.append(column.is_(None))
        elif isinstance(want, str):
            # Text no SQL store holds (NUL, lone surrogates) is never stored: no match.
            conditions.append(column == str(want) if text_ok(want) else false())
        # other types never equal a stored text: left to the exact check in Python
    if template.result is not None:
        conditions.append(calls.c.result == normalize_value(template.result))
    return conditions


def argument_joins(statement: Any, template: Mapping[str, Any] | None) -> Any:
    """One join on the ``(name, value)`` index of ``arguments`` per templated argument.

    Joins, not ``IN``/``EXISTS`` subqueries: with them SQLite's planner
    starts from the argument index instead of scanning every call of the
    function (41 ms against 2.6 ms for 100 of 100,000; benchmarks/bench_sql.py).
    """
    for n, (name, value) in enumerate((template or {}).items()):
        if type(name) is not str or not text_ok(name):
            return statement.where(false())  # no stored argument has such a name
        alias = arguments.alias(f"argument_{n}")
        statement = statement.join_from(
            calls,
            alias,
            and_(
                alias.c.call_key == calls.c.key,
                alias.c.name == name,
                alias.c.value == normalize_value(value),
            ),
        )
    return statement


def metadata_condition(namespace: Any, entries: Mapping[Any, Any], postgres: bool) -> Any | None:
    """The condition for one namespace of a metadata template, or ``None`` if there is none.

    Namespace presence and simple entries (text, numbers, booleans) are
    matched in the JSON document; a record with metadata JSON cannot carry
    (``meta_typed``) always passes, as do entries of other types (lists,
    ``None``…): the exact check in Python decides those.
    """
    if type(namespace) is not str or not text_ok(namespace):
        return None
    if postgres:
        conditions = _postgres_conditions(namespace, entries)
    elif plain_key(namespace):
        conditions = _sqlite_conditions(namespace, entries)
    else:
        return None
    return or_(and_(*conditions), calls.c.meta_typed.is_not(None))


def batched(keys: list[str], size: int) -> Iterator[list[str]]:
    """``keys`` in lists of at most ``size``."""
    it = iter(keys)
    while chunk := list(islice(it, size)):
        yield chunk


def _numbers(value: Any) -> float | None:
    """A finite template number as a float, or ``None`` when it cannot be pushed down."""
    if type(value) not in (bool, int, float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if number - number == 0 else None  # finite


def _sqlite_conditions(namespace: str, entries: dict[str, Any]) -> list[Any]:
    path = f'$."{namespace}"'
    conditions: list[Any] = [func.json_type(calls.c.meta, path) == "object"]
    for name, value in entries.items():
        value = unwrap(value)
        if type(name) is not str or not plain_key(name):
            continue
        extracted = func.json_extract(calls.c.meta, f'{path}."{name}"')
        if type(value) in (str, Digest):
            # Text JSON cannot hold (NUL, lone surrogates) is only ever in meta_typed.
            conditions.append(extracted == str(value) if text_ok(value) else false())
            continue
        number = _numbers(value)
        if number is not None:
            # SQLite parses JSON numbers itself; a margin keeps its rounding from
            # losing a match, and the exact check in Python drops the extras.
            margin = abs(number) * 1e-9 + 1e-300
            conditions.append(extracted.between(number - margin, number + margin))
    return conditions


_jsonb = type_coerce(calls.c.meta, JSONB)


def _postgres_conditions(namespace: str, entries: dict[str, Any]) -> list[Any]:
    # Containment (``meta @> {...}``) is answered from the GIN index on meta.
    conditions: list[Any] = [_jsonb.contains({namespace: {}})]
    for name, value in entries.items():
        value = unwrap(value)
        if type(name) is not str or not text_ok(name):
            continue
        if type(value) in (str, Digest):
            text = str(value)
            conditions.append(
                _jsonb.contains({namespace: {name: text}}) if text_ok(text) else false()
            )
            continue
        if _numbers(value) is None:
            continue
        # JSON numbers compare exactly on PostgreSQL (3 = 3.0), but Python
        # also has True == 1 and False == 0.
        alternatives = [value]
        if value == 0 or value == 1:
            alternatives.append(bool(value) if type(value) is not bool else int(value))
        conditions.append(or_(*(_jsonb.contains({namespace: {name: a}}) for a in alternatives)))
    return conditions
