"""The expiry arithmetic of fleche.expiry: durations, expiry entries, stamping."""

from __future__ import annotations

import datetime
import math

import pytest

from fleche import Call
from fleche.expiry import (
    EXPIRY,
    GC_GRACE,
    entry_expired,
    expires_at,
    is_expired,
    seconds,
    stamp_expiry,
)


def _stored(metadata: dict) -> Call:
    return Call("f", {}, metadata=metadata)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(0, 0.0), (90, 90.0), (1.5, 1.5), (datetime.timedelta(hours=2), 7200.0)],
)
def test_seconds_of_numbers_and_timedeltas(duration, expected) -> None:
    assert seconds(duration) == expected


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, datetime.timedelta(seconds=-3)])
def test_seconds_refuses_negative_and_nan(bad) -> None:
    with pytest.raises(ValueError, match="ttl must be zero or positive"):
        seconds(bad, "ttl")


@pytest.mark.parametrize("bad", [True, "12h", None, [1]])
def test_seconds_refuses_other_types(bad) -> None:
    with pytest.raises(TypeError, match="grace must be seconds or a datetime.timedelta"):
        seconds(bad, "grace")


def test_expires_at_reads_the_entry() -> None:
    assert expires_at(_stored({EXPIRY: {"ttl": 5, "expires": 105.0}})) == 105.0
    assert expires_at(_stored({EXPIRY: {"ttl": 5}})) is None
    assert expires_at(_stored({})) is None


def test_is_expired_at_and_after_the_expiry_time() -> None:
    record = _stored({EXPIRY: {"ttl": 5, "expires": 105.0}})
    assert not is_expired(record, 104.9)
    assert is_expired(record, 105.0)
    assert is_expired(record, 200.0)
    assert not is_expired(_stored({}), 1e12)


def test_entry_expired_without_an_entry_or_a_time() -> None:
    assert not entry_expired(None, 1e12)
    assert not entry_expired({"ttl": 5}, 1e12)
    assert entry_expired({"expires": 1.0}, 1.0)


def test_stamp_expiry_from_the_cache_ttl() -> None:
    stamped = stamp_expiry({"runtime": {"walltime": 1.0}}, now=100.0, ttl=10.0)
    assert stamped == {"runtime": {"walltime": 1.0}, EXPIRY: {"ttl": 10.0, "expires": 110.0}}


def test_stamp_expiry_the_call_ttl_wins_over_the_cache_ttl() -> None:
    stamped = stamp_expiry({EXPIRY: {"ttl": 3.0}}, now=100.0, ttl=10.0)
    assert stamped[EXPIRY] == {"ttl": 3.0, "expires": 103.0}


def test_stamp_expiry_keeps_an_expiry_already_stamped() -> None:
    metadata = {EXPIRY: {"ttl": 3.0, "expires": 50.0}}
    assert stamp_expiry(metadata, now=100.0, ttl=10.0) is metadata


def test_stamp_expiry_without_any_ttl_leaves_the_metadata() -> None:
    metadata = {"runtime": {}}
    assert stamp_expiry(metadata, now=100.0, ttl=None) is metadata
    assert stamp_expiry({EXPIRY: {"ttl": None}}, now=100.0, ttl=10.0) == {EXPIRY: {"ttl": None}}


def test_gc_grace_is_an_hour_and_the_caches_name_it() -> None:
    from fleche.caches import GC_GRACE as exported

    assert GC_GRACE == exported == 3600.0
