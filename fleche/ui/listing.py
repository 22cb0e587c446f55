"""One page of a function's calls: the filters, order and page a URL asks for.

Filters are template queries (``QueryCall(arguments=..., metadata=...)``),
so a SQL store answers them from its argument index; the page is cut by
:mod:`fleche.ui.paging` (in SQL on SQLite, from the query elsewhere).  Sorting needs every matching
call: by time or duration it reads records only, by an argument it loads
that argument of every match, and it refuses more than :data:`SORT_LIMIT`
matches (narrow the filter first).

The query string: ``a.<argument>=<literal>`` and ``m.<namespace>.<key>=<literal>``
filter (a Python literal such as ``0.1``, ``'x'`` or ``[1, 2]``; any other
text is a string), ``sort=<column>`` or ``sort=-<column>`` orders,
``page`` and ``size`` cut.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleche import LazyCall, QueryCall

from .paging import Pages

__all__ = [
    "SORT_LIMIT",
    "BadQuery",
    "Listing",
    "Page",
    "duration",
    "literal",
    "page_of",
    "parse_listing",
]

#: Most matches a page sorts; more is a 400 asking for a narrower filter.
SORT_LIMIT = 20_000
#: Largest page size.
MAX_SIZE = 500
#: Columns every function has, sortable from the records alone.
RECORD_COLUMNS = ("created", "duration")


class BadQuery(ValueError):
    """The query string asks for something this listing cannot do (a 400 page)."""


@dataclass(frozen=True)
class Listing:
    """What one page of calls shows: the filters, the order, the page and its size."""

    arguments: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sort: str | None = None
    descending: bool = False
    page: int = 1
    size: int = 50
    raw: Mapping[str, str] = field(default_factory=dict)

    def template(self, module: str | None, name: str) -> QueryCall:
        """The template query of the filtered calls of one function."""
        return QueryCall(
            name=name,
            module=module,
            arguments=dict(self.arguments) or None,
            metadata={k: dict(v) for k, v in self.metadata.items()} or None,
        )


@dataclass(frozen=True)
class Page:
    """The calls of one page, and whether a next page exists."""

    calls: list[LazyCall]
    has_next: bool


def literal(text: str) -> Any:
    """A Python literal from a filter box; any other text is taken as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _positive(args: Mapping[str, str], name: str, default: int, most: int) -> int:
    text = args.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadQuery(f"{name} must be a whole number from 1 to {most}, got {text!r}")
    return int(text)


def parse_listing(args: Mapping[str, str], parameters: Sequence[str]) -> Listing:
    """The listing a query string asks for; :class:`BadQuery` names what is wrong."""
    arguments: dict[str, Any] = {}
    metadata: dict[str, dict[str, Any]] = {}
    raw: dict[str, str] = {}
    for key, text in args.items():
        if key in ("sort", "page", "size") or text == "":
            continue
        kind, _, rest = key.partition(".")
        if kind == "a" and rest in parameters:
            arguments[rest] = literal(text)
        elif kind == "m" and rest.count(".") == 1 and all(rest.split(".")):
            namespace, entry = rest.split(".")
            metadata.setdefault(namespace, {})[entry] = literal(text)
        elif kind == "a":
            raise BadQuery(f"no argument {rest!r}; this function takes {', '.join(parameters)}")
        else:
            raise BadQuery(f"unknown filter {key!r}: write a.<argument>=… or m.<namespace>.<key>=…")
        raw[key] = text
    sort = args.get("sort") or None
    descending = bool(sort and sort.startswith("-"))
    column = sort.lstrip("-") if sort else None
    if column is not None and column not in (*RECORD_COLUMNS, *parameters):
        raise BadQuery(
            f"cannot sort by {column!r}; sort by {', '.join((*RECORD_COLUMNS, *parameters))}"
        )
    return Listing(
        arguments, metadata, column, descending,
        page=_positive(args, "page", 1, 10**9), size=_positive(args, "size", 50, MAX_SIZE), raw=raw,
    )  # fmt: skip


def _order_key(column: str) -> Any:
    if column == "created":
        return lambda call: call.digested_call.created
    if column == "duration":
        return lambda call: duration(call) or 0.0
    return lambda call: _sortable(call.arguments[column])


def _sortable(value: Any) -> tuple[int, Any]:
    """Numbers by value, then everything else by its text: any two values compare."""
    if isinstance(value, bool | int | float):
        return (0, value)
    return (1, repr(value))


def duration(call: LazyCall) -> float | None:
    """The wall time the call took, if its metadata says."""
    runtime = call.digested_call.metadata.get("runtime") or {}
    value = runtime.get("walltime")
    return value if isinstance(value, int | float) else None


def page_of(pages: Pages, cache: Any, listing: Listing, template: QueryCall) -> Page:
    """The calls of ``listing.page`` of ``template``'s matches: cut by ``pages`` unless sorted."""
    start = (listing.page - 1) * listing.size
    if listing.sort is None:
        return Page(*pages.window(template, start, listing.size))
    matches = list(cache.query(template).take(SORT_LIMIT + 1))
    if len(matches) > SORT_LIMIT:
        raise BadQuery(f"more than {SORT_LIMIT:,} calls match: filter them further before sorting")
    matches.sort(key=_order_key(listing.sort), reverse=listing.descending)
    calls = matches[start : start + listing.size + 1]
    return Page(calls[: listing.size], len(calls) > listing.size)
