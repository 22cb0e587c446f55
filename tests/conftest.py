"""Shared fixtures: the backend matrix of the conformance suite and a fresh cache."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

import fleche.state as fleche_state
from fleche import Cache, cache
from fleche.cli import main
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
def _no_cache_chosen_yet():
    """Each test starts with no active cache, as a fresh process does.

    A call outside any ``with cache(...)`` makes its cache the active one for
    good; without this, that choice would leak into every later test.
    """
    token = fleche_state._cache.set(None)
    yield
    fleche_state._cache.reset(token)


@pytest.fixture(autouse=True)
def _no_store_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls that reach no explicit cache go to memory, not to ``./.fleche`` of the checkout.

    Tests of the default store itself delete the variable and change directory.
    """
    monkeypatch.setenv("FLECHE_CACHE", "memory")


@pytest.fixture
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No environment settings, a fake user configuration directory, a scratch working directory.

    Returns the user configuration directory; the working directory is ``tmp_path / "work"``.
    """
    monkeypatch.delenv("FLECHE_CACHE", raising=False)
    monkeypatch.delenv("FLECHE_CONFIG", raising=False)
    user = tmp_path / "user-config"
    user.mkdir()
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *args, **kwargs: str(user))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return user


@pytest.fixture
def run(capsys):
    """Run the ``fleche`` command in-process: ``run("ls", ...) -> (exit code, stdout, stderr)``."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
