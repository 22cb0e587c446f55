"""Normal forms of what the cache interface accepts, for every cache to share.

``query(template, **fields)`` (the 0.22 keywords), ``prepare(call)`` (the
0.22 form, a plain call) and a short digest that several stores may each
expand: each is reduced here to the one form a cache works with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..call import Call, DigestedCall, QueryCall
from ..digest import Digest
from ..errors import AmbiguousDigestError
from ..storage.base import needed_length

__all__ = ["as_template", "merge_expansions", "sealed"]


def merge_expansions(key: Digest | str, attempts: Iterable[Callable[[], Digest]]) -> Digest:
    """The one full digest several stores agree a prefix names.

    Each attempt is one store's ``expand``; ``KeyError`` if none knows the
    prefix, :class:`AmbiguousDigestError` (with every candidate) if they
    name different things or one of them is ambiguous.
    """
    found: set[Digest] = set()
    candidates: list[str] = []
    for attempt in attempts:
        try:
            found.add(attempt())
        except KeyError:
            pass
        except AmbiguousDigestError as err:
            candidates.extend(err.candidates)
    if candidates or len(found) > 1:
        everything = sorted(set(candidates) | found)
        raise AmbiguousDigestError(str(key), everything, needed_length(everything))
    if not found:
        raise KeyError(f"no stored call or value starts with {str(key)!r}")
    return found.pop()


def as_template(template: QueryCall | None, fields: Mapping[str, Any]) -> QueryCall | None:
    """The template of ``query(template, **fields)``: the 0.22 keywords are :class:`QueryCall` fields."""
    if not fields:
        return template
    if template is None:
        return QueryCall(**fields)
    return dataclasses.replace(template, **fields)


def sealed(
    record: DigestedCall | Call, arguments: Mapping[str, Any] | None, key: Digest | None
) -> tuple[DigestedCall, Mapping[str, Any], Digest]:
    """The arguments of ``prepare``, also from the 0.22 form ``prepare(call)`` (a plain call)."""
    if arguments is not None and key is not None:
        return record, arguments, key  # type: ignore[return-value]
    return record.digested(), record.arguments, record.key()
