"""The Flask application: the store it shows, its error pages, its routes.

Every failure a visitor can cause (an unknown digest, an ambiguous prefix,
a malformed filter, a write to a read-only server) becomes a page saying
what went wrong with status 400, 403 or 404; an unexpected error becomes a
500 page without a traceback.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, render_template
from werkzeug.exceptions import HTTPException, SecurityError

from fleche import ReadOnlyCache

from . import views_browse, views_call
from .paging import pages_for
from .requests import Problem, Store

__all__ = ["create_app"]

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def create_app(cache: Any, *, allow_writes: bool = False, host: str = "127.0.0.1") -> Flask:
    """The web application over ``cache``; read-only (a :class:`~fleche.ReadOnlyCache`) unless ``allow_writes``.

    Bound to a loopback ``host``, it answers only requests addressed to a
    loopback name, so a web page elsewhere cannot reach it by DNS rebinding.
    """
    app = Flask(__name__)
    app.extensions["fleche_ui"] = Store(
        cache if allow_writes else ReadOnlyCache(cache), allow_writes, pages_for(cache)
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
