"""Shared fixtures: the backend matrix of the conformance suite and a fresh cache."""

from __future__ import annotations

import pytest

from fleche import Cache, cache
from fleche.storage import CallMemory, ValueMemory

from .backends import BACKENDS


@pytest.fixture(params=BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest):
    """Each storage composition in turn (see tests/backends.py)."""
    return request.param


@pytest.fixture
def memory() -> Cache:
    """A fresh in-memory cache, active for the test."""
    fresh = Cache(ValueMemory(), CallMemory())
    with cache(fresh):
        yield fresh
