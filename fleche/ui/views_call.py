"""The pages of one call and one value, the downloads, and the one write (evicting a call)."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response

from fleche import QueryCall

from .catalog import function_id
from .download import FORMATS, write
from .graph import layout, lineage_of
from .image import is_image, png
from .preview import preview
from .requests import Problem, resolve, store
from .rows import facts, load

__all__ = ["register"]

#: Largest store whose pages draw downstream lineage unasked (it reads every call record).
DOWNSTREAM_LIMIT = 20_000


def _downstream() -> bool:
    """Whether to draw consumers: asked by ``?down=1``, or the store is small enough."""
    if request.args.get("down") in ("0", "1"):
        return request.args["down"] == "1"
    store().catalog.wait(0.1)  # a small store is counted by now
    total = store().catalog.total()
    return total is not None and total <= DOWNSTREAM_LIMIT


def _short(key: str) -> str:
    try:
        return str(store().cache.shrink(key))
    except (KeyError, ValueError):
        return key[:8]


def _value(key: str) -> dict[str, Any]:
    """A value as the templates show it: its digest, short prefix and preview (or why none)."""
    ok, value = load(store().cache, key)
    return {
        "key": key,
        "short": _short(key),
        "preview": preview(value) if ok else None,
        "problem": None if ok else value,
    }


def call(key: str) -> str | Response:
    """A call: its arguments and result with previews, metadata, lineage graph, Python snippet."""
    full = resolve(key)
    if full != key:
        return redirect(url_for("call", key=full))
    try:
        record = store().cache.load(full)
    except KeyError:
        return redirect(url_for("value", key=full))
    digested = record.digested_call
    down = _downstream()
    graph = layout(lineage_of(store().cache, full, downstream=down))
    return render_template(
        "call.html", key=full, short=_short(full), record=digested, facts=facts(record),
        ident=function_id(digested.module, digested.name),
        arguments={n: _value(d) for n, d in digested.arguments.items()},
        result=_value(digested.result), graph=graph, down=down, allow_writes=store().allow_writes,
        token=store().token, metadata=json.dumps(digested.metadata, indent=2, default=str, sort_keys=True),
    )  # fmt: skip


def value(key: str) -> str | Response:
    """A value: its preview, downloads, and the calls that returned or took it."""
    full = resolve(key)
    if full != key:
        return redirect(url_for("value", key=full))
    cache = store().cache
    shown = _value(full)
    if shown["problem"] == "missing":
        raise Problem(404, "Not found", f"No stored call or value is {full!r}.")
    producers = [c.key() for c in cache.query(QueryCall(result=full), expired=True).take(20)]
    down = _downstream()
    graph = layout(lineage_of(cache, full, depth=2, downstream=down))
    return render_template("value.html", value=shown, producers=producers, graph=graph, down=down)


def download(key: str) -> Response:
    """The value under ``key`` as a file in the format ``?format=`` names, streamed."""
    full = resolve(key)
    form = request.args.get("format", "pickle")
    if form not in FORMATS:
        raise Problem(
            400, "Unknown format", f"format must be one of {', '.join(FORMATS)}, not {form!r}."
        )
    ok, loaded = load(store().cache, full)
    if not ok:
        raise Problem(404, "No value", f"The value {full[:10]} is {loaded}.")
    try:
        stream = write(loaded, form)
    except ValueError as err:
        raise Problem(400, "Cannot convert", str(err)) from None
    except ImportError as err:
        raise Problem(
            400, "Format unavailable", f"{form} needs a package this server lacks: {err}"
        ) from None
    media, suffix = FORMATS[form]
    return send_file(
        stream, mimetype=media, as_attachment=True, download_name=f"{_short(full)}.{suffix}"
    )


def picture(key: str) -> Response:
    """The value under ``key`` drawn as a PNG preview (a picture only); never changes, so cached."""
    full = resolve(key)
    ok, loaded = load(store().cache, full)
    if not ok or not is_image(loaded):
        raise Problem(404, "No picture", f"The value {full[:10]} is not a picture.")
    answer = Response(png(loaded), mimetype="image/png")
    answer.headers["Cache-Control"] = "max-age=31536000, immutable"  # content-addressed
    return answer


def evict(key: str) -> Response:
    """Remove a call record (``--allow-writes`` only; the form carries this server's token)."""
    if not store().allow_writes:
        raise Problem(
            403, "Read-only", "This server only reads; start it with --allow-writes to evict calls."
        )
    if request.form.get("token") != store().token:
        raise Problem(403, "Refused", "The form does not come from this server's page.")
    full = resolve(key)
    record = store().cache.load(full).digested_call
    store().cache.evict(full)
    return redirect(url_for("function", ident=function_id(record.module, record.name)))


def register(app: Flask) -> None:
    """Add these pages to ``app``."""
    app.add_url_rule("/c/<key>", view_func=call)
    app.add_url_rule("/v/<key>", view_func=value)
    app.add_url_rule("/v/<key>/download", view_func=download)
    app.add_url_rule("/v/<key>/preview.png", view_func=picture)
    app.add_url_rule("/c/<key>/evict", view_func=evict, methods=["POST"])
