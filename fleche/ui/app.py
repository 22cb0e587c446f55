"""The Flask application: the store it shows, its error pages, its routes.

Every failure a visitor can cause (an unknown digest, an ambiguous prefix,
a malformed filter, a write to a read-only server) becomes a page saying
what went wrong with status 400, 403 or 404; an unexpected error becomes a
500 page without a traceback.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, render_template
from werkzeug.exceptions import HTTPException, SecurityError

from fleche import AmbiguousDigestError, Digest, ReadOnlyCache

from .catalog import Catalog

__all__ = ["Candidate", "Problem", "Store", "create_app", "resolve", "store"]

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


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
    """What every request reads: the cache, its function catalog, whether writes are allowed."""

    cache: Any
    allow_writes: bool = False
    catalog: Catalog = field(init=False)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.cache)


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


def create_app(cache: Any, *, allow_writes: bool = False, host: str = "127.0.0.1") -> Flask:
    """The web application over ``cache``; read-only (a :class:`~fleche.ReadOnlyCache`) unless ``allow_writes``.

    Bound to a loopback ``host``, it answers only requests addressed to a
    loopback name, so a web page elsewhere cannot reach it by DNS rebinding.
    """
    from . import views_browse, views_call

    app = Flask(__name__)
    app.extensions["fleche_ui"] = Store(
        cache if allow_writes else ReadOnlyCache(cache), allow_writes
    )
    if host in LOOPBACK:
        app.config["TRUSTED_HOSTS"] = ["127.0.0.1", "localhost", "[::1]", "::1"]
    app.register_error_handler(Problem, _problem_page)
    app.register_error_handler(HTTPException, _http_page)
    app.register_error_handler(Exception, _crash_page)
    app.jinja_env.filters["short"] = lambda key: str(key)[:10]
    views_browse.register(app)
    views_call.register(app)
    app.extensions["fleche_ui"].catalog.start()
    return app


def _problem_page(problem: Problem) -> tuple[str, int]:
    return render_template("error.html", problem=problem), problem.status


def _http_page(error: HTTPException) -> tuple[str, int] | HTTPException:
    if isinstance(
        error, SecurityError
    ):  # an untrusted Host: no page (its links would use that host)
        return error
    status = error.code or 500
    problem = Problem(status, error.name, error.description or "")
    return render_template("error.html", problem=problem), status


def _crash_page(error: Exception) -> tuple[str, int]:
    current_app.logger.exception("error while answering a request")
    problem = Problem(
        500, "Internal error", f"{type(error).__name__}: the server could not answer this page."
    )
    return render_template("error.html", problem=problem), 500
