"""The pages to find calls: the functions (``/``), one function's calls, the search box."""

from __future__ import annotations

from flask import Flask, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from fleche import QueryCall

from .catalog import parse_function_id
from .listing import BadQuery, page_of, parse_listing
from .requests import Problem, resolve, store
from .rows import call_row

__all__ = ["register"]

#: How long the first page waits for the function count before showing a partial one.
FIRST_WAIT = 0.05


def index() -> str:
    """Every function in the store, with its number of calls."""
    catalog = store().catalog
    catalog.start()
    catalog.wait(FIRST_WAIT)
    return render_template(
        "index.html",
        functions=catalog.functions(),
        complete=catalog.complete,
        scanned=catalog.scanned,
    )


def _parameters(module: str | None, name: str) -> list[str]:
    """The argument names of a function, from its first stored calls; 404 if it has none."""
    known = store().catalog.parameters(module, name)
    if known is not None:  # the background count met a call: no query
        return list(known)
    calls = store().cache.query(QueryCall(name=name, module=module), expired=True).take(1000)
    names = [n for call in calls for n in call.digested_call.arguments]  # a page of them
    if not names and calls.empty():
        raise Problem(404, "No such function", f"The store holds no call of {module or ''}:{name}.")
    return list(dict.fromkeys(names))


def function(ident: str) -> str:
    """One function's calls as a table: filtered, sorted and cut to a page by the query string."""
    try:
        module, name = parse_function_id(ident)
    except ValueError as err:
        raise Problem(
            400, "Not a function", f"{err}: a function page is /f/<module>:<name>."
        ) from None
    parameters = _parameters(module, name)
    try:
        listing = parse_listing(request.args, parameters)
        page = page_of(store().cache.query(listing.template(module, name)), listing)
    except BadQuery as err:
        raise Problem(400, "Bad filter", str(err)) from None
    cache = store().cache
    rows = [call_row(cache, call, parameters) for call in page.calls]
    total = None if listing.raw else store().catalog.count(module, name)
    return render_template(
        "function.html", ident=ident, module=module, name=name, parameters=parameters,
        listing=listing, rows=rows, has_next=page.has_next, total=total,
    )  # fmt: skip


def search() -> Response:
    """The search box: a digest prefix goes to its call or value page."""
    text = request.args.get("q", "").strip()
    if not text:
        return redirect(url_for("index"))
    key = resolve(text)
    try:
        store().cache.load(key)
    except KeyError:
        return redirect(url_for("value", key=key))
    return redirect(url_for("call", key=key))


def register(app: Flask) -> None:
    """Add these pages to ``app``."""
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/f/<path:ident>", view_func=function)
    app.add_url_rule("/search", view_func=search)
