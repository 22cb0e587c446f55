"""Metadata recorded with each call: runtime, environment, git state, tags; and queries on it."""

from __future__ import annotations

import contextvars
import getpass
import os
import platform
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import fleche
from fleche import Cache, cache, meta, project, tags
from fleche import metadata as metadata_module
from fleche.storage import CallMemory, CallPickleFile, ValueMemory, ValuePickleFile


@fleche.fleche
def nap(x, seconds=0.0):
    time.sleep(seconds)
    return x


@fleche.fleche
def plus_one(x):
    return x + 1


# -- runtime ---------------------------------------------------------------------


def test_runtime_counts_the_cpu_time_of_the_calling_thread_only(memory):
    stop = threading.Event()
    burned = []

    def burn():
        start = time.thread_time()
        while not stop.is_set():
            pass
        burned.append(time.thread_time() - start)

    burner = threading.Thread(target=burn)
    burner.start()
    before = time.time()
    try:
        nap(1, seconds=0.3)
    finally:
        stop.set()
        burner.join()
    runtime = nap.record(1, seconds=0.3).metadata["runtime"]
    assert before <= runtime["started"] <= time.time()
    assert runtime["walltime"] >= 0.29
    # A process-wide clock would also count the other thread's busy loop.
    assert runtime["cputime"] < min(0.1, burned[0] / 2)


# -- environment -------------------------------------------------------------------


def test_environment_names_host_user_directory_and_versions(memory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plus_one(1)
    environment = plus_one.record(1).metadata["environment"]
    assert environment["host"] == socket.gethostname()
    assert environment["user"] == getpass.getuser()
    assert environment["cwd"] == str(tmp_path)
    assert environment["python"] == platform.python_version()
    assert environment["fleche"] == fleche.__version__


# -- git ---------------------------------------------------------------------------


_RUN = subprocess.run  # the tests' own git commands are not counted in git_runs


def _git(tree: Path, *args: str) -> str:
    command = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args]
    return _RUN(command, cwd=tree, check=True, capture_output=True, text=True).stdout.strip()


def _repository(tree: Path) -> str:
    tree.mkdir()
    _git(tree, "init", "-q", "-b", "trunk")
    (tree / "model.py").write_text("x = 1\n")
    _git(tree, "add", "model.py")
    _git(tree, "commit", "-q", "-m", "first")
    return _git(tree, "rev-parse", "HEAD")


@pytest.fixture
def git_runs(monkeypatch):
    """How many times fleche ran ``git``, with its per-process memory cleared."""
    metadata_module._git_state.cache_clear()
    runs = []
    real = subprocess.run

    def counting(*args, **kwargs):
        runs.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(metadata_module.subprocess, "run", counting)
    yield runs
    metadata_module._git_state.cache_clear()


def test_git_state_once_per_process_and_working_tree(memory, tmp_path, monkeypatch, git_runs):
    commit = _repository(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    plus_one(1)
    assert plus_one.record(1).metadata["git"] == {
        "commit": commit,
        "branch": "trunk",
        "dirty": False,
    }
    asked = len(git_runs)
    assert asked > 0

    (tmp_path / "repo" / "model.py").write_text("x = 2\n")
    (tmp_path / "repo" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "sub")  # the same working tree
    plus_one(2)
    assert plus_one.record(2).metadata["git"]["dirty"] is False  # as first seen in this process
    assert len(git_runs) == asked

    other = _repository(tmp_path / "other")
    (tmp_path / "other" / "model.py").write_text("x = 3\n")
    monkeypatch.chdir(tmp_path / "other")
    plus_one(3)
    assert plus_one.record(3).metadata["git"] == {"commit": other, "branch": "trunk", "dirty": True}
    assert len(git_runs) > asked


def test_git_dir_set_while_the_process_runs_is_followed(memory, tmp_path, monkeypatch, git_runs):
    first = _repository(tmp_path / "repo")
    _repository(tmp_path / "other")
    (tmp_path / "other" / "model.py").write_text("x = 5\n")
    _git(tmp_path / "other", "commit", "-qam", "second")
    other = _git(tmp_path / "other", "rev-parse", "HEAD")
    (tmp_path / "repo" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    plus_one(5)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "other" / ".git"))  # read on every call
    plus_one(6)
    assert plus_one.record(5).metadata["git"]["commit"] == first
    assert plus_one.record(6).metadata["git"]["commit"] == other


def test_the_working_directory_is_read_once_per_call(memory, tmp_path, monkeypatch, git_runs):
    _repository(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    reads = []
    real = os.getcwd

    def getcwd():
        reads.append(1)
        return real()

    monkeypatch.setattr(os, "getcwd", getcwd)
    plus_one(7)  # the environment and the git state both depend on it
    assert len(reads) == 1
    recorded = plus_one.record(7).metadata
    assert recorded["environment"]["cwd"] == str(tmp_path / "repo") and recorded["git"]


def test_no_git_outside_a_working_tree(memory, tmp_path, monkeypatch, git_runs):
    monkeypatch.chdir(tmp_path)
    plus_one(4)
    assert "git" not in plus_one.record(4).metadata
    assert git_runs == []


def test_concurrent_first_calls_ask_git_once(memory, tmp_path, monkeypatch, git_runs):
    _repository(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    barrier = threading.Barrier(6)

    def call(i):
        barrier.wait()
        plus_one(10 + i)

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(call, i)) for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(git_runs) == 3  # HEAD, status, branch: once for the six calls


# -- tags ---------------------------------------------------------------------------


def test_tags_in_a_block_and_sticky(memory):
    with tags(project="x", stage="fit"):
        plus_one(1)
        with project("y"):
            plus_one(2)
    plus_one(3)
    assert plus_one.record(1).metadata["tags"] == {"project": "x", "stage": "fit"}
    assert plus_one.record(2).metadata["tags"] == {"project": "y", "stage": "fit"}
    assert "tags" not in plus_one.record(3).metadata

    def sticky():
        project("z")  # for the rest of this context
        plus_one(4)

    contextvars.copy_context().run(sticky)
    assert plus_one.record(4).metadata["tags"] == {"project": "z"}
    plus_one(5)
    assert "tags" not in plus_one.record(5).metadata


class Seed:
    """A metadata recorder of its own."""

    name = "seed"

    def start(self):
        return None

    def stop(self, token):
        return {"value": 42}


def test_custom_recorders(memory):
    with meta(Seed(), stack=True):
        plus_one(6)
    assert plus_one.record(6).metadata["seed"] == {"value": 42}
    assert "runtime" in plus_one.record(6).metadata  # stacked: the defaults still record
    with meta(Seed()):
        plus_one(7)
    assert set(plus_one.record(7).metadata) == {"seed"}  # as in 0.22: replaced
    with pytest.raises(TypeError, match="metadata recorder"):
        meta(object())


# -- queries on metadata ------------------------------------------------------------


def memory_store(root: Path) -> Cache:
    return Cache(ValueMemory(), CallMemory())


def pickle_store(root: Path) -> Cache:
    return Cache(ValuePickleFile(root=root / "values"), CallPickleFile(root=root / "calls"))


def sqlite_store(root: Path) -> Cache:
    sql = pytest.importorskip("fleche.storage.sql")
    return Cache(ValuePickleFile(root=root / "values"), sql.Sql(url=str(root / "calls.db")))


def postgres_store(root: Path) -> Cache:
    from .backends import postgres_calls  # skips unless FLECHE_TEST_POSTGRES_URL names a server

    return Cache(ValuePickleFile(root=root / "values"), postgres_calls(root / "postgres"))


@pytest.mark.parametrize(
    "make",
    [memory_store, pickle_store, sqlite_store, postgres_store],
    ids=["memory", "pickle", "sqlite", "postgres"],
)
def test_query_by_metadata(make, tmp_path):
    with cache(make(tmp_path)):
        with project("x"):
            plus_one(1)
            plus_one(2)
        with tags(project="y", run=3):
            plus_one(3)
        plus_one(4)
        with meta(Seed(), stack=True):
            plus_one(5)

        def found(**template):
            return sorted(call.arguments["x"] for call in plus_one.query(metadata=template))

        assert found(tags={"project": "x"}) == [1, 2]
        assert found(tags={"project": "y", "run": 3}) == [3]
        assert found(tags={"project": "y", "run": 4}) == []
        assert found(tags={"project": "z"}) == []
        assert found(tags={}) == [1, 2, 3]  # the namespace is present
        assert found(seed={"value": 42}) == [5]
        assert found(environment={"host": socket.gethostname()}) == [1, 2, 3, 4, 5]
        assert sorted(plus_one.query(x=2, metadata={"tags": {"project": "x"}}).table()["x"]) == [2]
        assert os.getcwd() in set(plus_one.query().table()["environment.cwd"])
