"""A stored call as the cells and facts the pages show (loading values only when asked)."""

from __future__ import annotations

import datetime
from typing import Any

from fleche import LazyCall

from .listing import duration
from .preview import summary

__all__ = ["call_row", "facts", "load", "when"]


def when(created: float) -> str:
    """A timestamp in local time, to the second."""
    return datetime.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S")


def load(cache: Any, key: str) -> tuple[bool, Any]:
    """``(True, value)``, or ``(False, why)`` when the value is missing or cannot be read."""
    try:
        return True, cache.load_value(key)
    except KeyError:
        return False, "missing"
    except Exception as err:  # a value this process cannot unpickle still gets a page
        return False, f"unreadable: {type(err).__name__}"


def _cell(cache: Any, key: str) -> str:
    ok, value = load(cache, key)
    return summary(value) if ok else f"<{value}>"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def facts(call: LazyCall) -> dict[str, str]:
    """Time, duration, host and tags of a call, as text."""
    record = call.digested_call
    tags = record.metadata.get("tags") or {}
    host = (record.metadata.get("environment") or {}).get("host", "")
    return {
        "time": when(record.created),
        "duration": _seconds(duration(call)),
        "host": str(host),
        "tags": ", ".join(f"{k}={v}" for k, v in tags.items())
        if isinstance(tags, dict)
        else str(tags),
    }


def call_row(cache: Any, call: LazyCall, parameters: list[str]) -> dict[str, Any]:
    """One row of a function's table: key, argument and result summaries, and :func:`facts`."""
    record = call.digested_call
    arguments = {
        name: _cell(cache, record.arguments[name]) if name in record.arguments else ""
        for name in parameters
    }
    return {
        "key": call.key(),
        "arguments": arguments,
        "result": _cell(cache, record.result),
        **facts(call),
    }
