"""A store that cannot be opened costs one warning, never a call (issue 11, item 6).

Read-only and full file systems are real mounts (tmpfs), made as root and
removed afterwards: as root, permissions alone do not stop a write.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import warnings
from pathlib import Path

import pytest

from fleche import CacheWarning, cache, fleche, open_cache
from fleche.caches import memory_cache, void_cache
from fleche.caches.unavailable import UnavailableCache

RUNS: list[int] = []


@fleche
def triple(x):
    RUNS.append(x)
    return 3 * x


def _mount(target: Path, *options: str) -> None:
    if options[0] == "--bind":  # a read-only view of a directory: its writers keep writing
        subprocess.run(["mount", "--bind", options[1], str(target)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
    else:
        subprocess.run(["mount", "-t", "tmpfs", *options, "tmpfs", str(target)], check=True)


@pytest.fixture
def mounted(tmp_path):
    """``mount(options)``: a tmpfs, or ``("--bind", dir)`` a read-only view, at a fresh directory."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (as root, chmod does not stop writes)")
    made: list[Path] = []

    def mount(*options: str) -> Path:
        target = tmp_path / f"mount{len(made)}"
        target.mkdir()
        try:
            _mount(target, *options)
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            pytest.skip(f"cannot mount a tmpfs here: {err}")
        made.append(target)
        return target

    yield mount
    for target in reversed(made):
        subprocess.run(["umount", "-l", str(target)], check=False)


def _calls(spec) -> tuple[list[int], list[warnings.WarningMessage]]:
    """Run a few calls with ``spec`` active; what was computed, and the warnings raised."""
    RUNS.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x in (1, 2, 2, 5, 5):
            with cache(spec):
                assert triple(x) == 3 * x
    return list(RUNS), [w for w in caught if issubclass(w.category, CacheWarning)]


@pytest.mark.parametrize("template", ["sql", "pickle", "hdf5"])
def test_a_read_only_mount_serves_its_calls_with_one_warning(mounted, tmp_path, template):
    if template == "hdf5":
        pytest.importorskip("bagofholding")
    _calls(open_cache({"template": template, "root": str(tmp_path / "store")}))  # stores 1, 2, 5
    store = mounted("--bind", str(tmp_path / "store"))
    computed, caught = _calls(str(store))
    assert computed == []  # every call a hit, read from the read-only store
    assert len(caught) == 1 and "unavailable" in str(caught[0].message)
    RUNS.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cache(str(store)):
            assert triple(7) == 21 and triple(7) == 21  # computed, not stored, not warned again
    assert RUNS == [7, 7] and not caught


def test_read_only_true_reads_a_sqlite_store_on_a_read_only_mount(mounted, tmp_path):
    _calls(str(tmp_path / "store"))
    store = mounted("--bind", str(tmp_path / "store"))
    reader = open_cache({"template": "sql", "root": str(store), "read_only": True})
    assert reader.read_only and reader.query().count() == 3
    RUNS.clear()
    with cache(reader):
        assert triple(5) == 15
    assert RUNS == []


def test_a_full_disk_for_a_new_store_costs_one_warning(mounted):
    root = mounted("-o", "size=64k")
    with contextlib.suppress(OSError), open(root / "filler", "wb") as filler:
        filler.write(b"\0" * 128 * 1024)
    computed, caught = _calls(str(root / "store"))
    assert computed == [1, 2, 2, 5, 5]
    assert len(caught) == 1 and "unavailable" in str(caught[0].message)


def test_a_corrupt_database_costs_one_warning(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "calls.db").write_bytes(os.urandom(8192))
    computed, caught = _calls(str(tmp_path / "store"))
    assert computed == [1, 2, 2, 5, 5]
    assert len(caught) == 1 and "not a database" in str(caught[0].message)


def test_an_unreachable_server_costs_one_warning(tmp_path, monkeypatch):
    pytest.importorskip("psycopg")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "fleche.toml").write_text(
        f'root = true\n[team]\ntemplate = "sql"\nroot = "values"\n'
        f'url = "postgresql+psycopg://nobody:secret@127.0.0.1:{port}/db"\n'
    )
    monkeypatch.chdir(tmp_path)
    computed, caught = _calls("team")
    assert computed == [1, 2, 2, 5, 5]
    assert len(caught) == 1 and "unavailable" in str(caught[0].message)
    assert "secret" not in str(caught[0].message)


def test_opening_is_tried_again_at_most_every_retry_interval():
    now = [0.0]
    attempts = []

    def opener():
        attempts.append(now[0])
        if len(attempts) < 2:
            raise OSError("still down")
        return memory_cache()

    with pytest.warns(CacheWarning, match="down"):
        stand_in = UnavailableCache(
            "s", opener, OSError("down"), void_cache(), retry_after=30, clock=lambda: now[0]
        )
    for now[0] in (1.0, 10.0, 29.0):
        assert stand_in.current() is stand_in.fallback
    assert attempts == []
    now[0] = 31.0
    assert stand_in.current() is stand_in.fallback and attempts == [31.0]
    now[0] = 45.0
    assert stand_in.current() is stand_in.fallback and attempts == [31.0]
    now[0] = 62.0
    assert stand_in.current() is memory_cache() and stand_in.available
    assert attempts == [31.0, 62.0]
