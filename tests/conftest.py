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


@pytest.fixture(autouse=True)
def _no_store_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls that reach no explicit cache go to memory, not to ``./.fleche`` of the checkout.

    Tests of the default store itself delete the variable and change directory.
    """
    monkeypatch.setenv("FLECHE_CACHE", "memory")
