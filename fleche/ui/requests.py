"""What a request reads: the store being shown, and the problems a visitor can cause.

Kept apart from :mod:`fleche.ui.app` so the views and the application
both build on it without importing each other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from fleche import AmbiguousDigestError, Digest

from .catalog import Catalog
from .paging import Pages, QueryPages

__all__ = ["Candidate", "Problem", "Store", "resolve", "store"]


class Problem(Exception):
    """A request the application cannot answer: its status, a title and the explanation."""

    def __init__(
        self, status: int, title: str, detail: str, candidates: list[Candidate] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.candidates = candidates or []


@dataclass(frozen=True)
class Candidate:
    """One of the keys an ambiguous prefix names: its link and what it is."""

    key: str
    what: str


@dataclass
class Store:
    """What every request reads: the cache, where its pages come from, its function catalog, whether writes are allowed."""

    cache: Any
    allow_writes: bool = False
    pages: Pages | None = None
    catalog: Catalog = field(init=False)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        if self.pages is None:
            self.pages = QueryPages(self.cache)
        self.catalog = Catalog(self.cache, pages=self.pages)


def store() -> Store:
    """The store of the application answering the current request."""
    return current_app.extensions["fleche_ui"]


def resolve(prefix: str) -> Digest:
    """The full key a digest or prefix names: a 404 if none, a 400 listing them if several."""
    cache = store().cache
    try:
        return cache.expand(prefix.strip())
    except AmbiguousDigestError as err:
        candidates = [Candidate(c, _what(cache, c)) for c in err.candidates[:50]]
        raise Problem(
            400, "Ambiguous prefix",
            f"{prefix!r} starts {len(err.candidates)} keys; give at least {err.needed} characters.",
            candidates,
        ) from None  # fmt: skip
    except KeyError:
        raise Problem(
            404, "Not found", f"No stored call or value starts with {prefix!r}."
        ) from None
    except ValueError:
        raise Problem(
            400, "Not a digest", f"{prefix!r} is not a hexadecimal digest or prefix."
        ) from None


def _what(cache: Any, key: str) -> str:
    try:
        return f"call of {cache.load(key).digested_call.qualified_name}"
    except KeyError:
        return "value"
