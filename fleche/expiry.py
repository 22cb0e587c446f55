"""Time in the store: durations, when a stored call expires, how long values are spared.

Expiry lives in the call record: a call stored with a time to live carries
``metadata["expiry"] = {"ttl": seconds, "expires": epoch seconds}``, so every
process reading the store agrees on when it expires.  This module is the
arithmetic on that entry; it knows call records, not caches or storages.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = [
    "EXPIRY",
    "GC_GRACE",
    "Duration",
    "Recorded",
    "entry_expired",
    "expires_at",
    "is_expired",
    "parse_duration",
    "seconds",
    "stamp_expiry",
]

#: Metadata namespace of a call's expiry: ``{"ttl": seconds, "expires": epoch seconds}``.
EXPIRY = "expiry"

#: Values younger than this (seconds) are never collected by default: another
#: process may have stored them for a call it is still running.
GC_GRACE = 3600.0


class Recorded(Protocol):
    """A stored call as expiry sees it (a :class:`~fleche.call.Call`): only its metadata counts."""

    metadata: Mapping[str, Mapping[str, Any]]


#: A duration as users write it: seconds, or a ``datetime.timedelta``.
Duration = float | int | datetime.timedelta


def seconds(duration: Duration, what: str = "a duration") -> float:
    """``duration`` (seconds or a ``timedelta``) as a non-negative number of seconds.

    ``what`` names the duration in the error (``TypeError`` for another
    type, ``ValueError`` for a negative or NaN number).
    """
    if isinstance(duration, datetime.timedelta):
        value = duration.total_seconds()
    elif isinstance(duration, int | float) and not isinstance(duration, bool):
        value = float(duration)
    else:
        raise TypeError(
            f"{what} must be seconds or a datetime.timedelta, not {type(duration).__name__}"
        )
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{what} must be zero or positive seconds; got {duration!r}")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"2w"``; ``ValueError`` else."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 15m, 12h, 30d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def expires_at(record: Recorded) -> float | None:
    """When a stored call expires (epoch seconds), or ``None`` if it never does."""
    entry = record.metadata.get(EXPIRY)
    return None if entry is None else entry.get("expires")


def is_expired(record: Recorded, now: float) -> bool:
    """Whether a stored call has expired by ``now``."""
    return entry_expired(record.metadata.get(EXPIRY), now)


def entry_expired(entry: Mapping[str, Any] | None, now: float) -> bool:
    """Whether a call's expiry entry (its :data:`EXPIRY` metadata, or ``None``) has passed by ``now``."""
    if entry is None:
        return False
    expires = entry.get("expires")
    return expires is not None and expires <= now


def stamp_expiry(
    metadata: Mapping[str, Mapping[str, Any]], now: float, ttl: float | None
) -> Mapping[str, Mapping[str, Any]]:
    """``metadata`` with its absolute expiry filled in.

    A ``ttl`` already in the metadata (from ``@fleche(ttl=...)``) wins over
    the cache's ``ttl``; an ``expires`` already there is kept as it is (a
    copied record keeps the expiry it was stored with).
    """
    entry = metadata.get(EXPIRY)
    if entry is not None:
        if "expires" in entry or entry.get("ttl") is None:
            return metadata
        ttl = entry["ttl"]
    elif ttl is None:
        return metadata
    return {**metadata, EXPIRY: {"ttl": ttl, "expires": now + ttl}}
