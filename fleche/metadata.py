"""Provenance recorded with each call: timing, environment, git state and tags.

A recorder has a ``name`` (its namespace in the call's metadata), and a
``start()``/``stop(token)`` pair around the function body; ``stop`` returns
a flat mapping of plain values, so metadata can be queried and tabled.
Anything that does not change during a process is computed once.
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = ["Environment", "Git", "Metadata", "Runtime", "Tags", "record"]


class Metadata(Protocol):
    """What a metadata recorder provides."""

    name: ClassVar[str]

    def start(self) -> Any:
        """Called just before the function body; returns a token for :meth:`stop`."""

    def stop(self, token: Any) -> Mapping[str, Any]:
        """Called just after the body; the entries to record under :attr:`name`."""


class Runtime:
    """When the call ran, and its wall and CPU time (CPU of this thread only)."""

    name = "runtime"

    def start(self) -> tuple[float, float, float]:
        return time.time(), time.perf_counter(), time.thread_time()

    def stop(self, token: tuple[float, float, float]) -> dict[str, float]:
        started, wall, cpu = token
        return {
            "started": started,
            "walltime": time.perf_counter() - wall,
            "cputime": time.thread_time() - cpu,
        }


class Environment:
    """Host, user, working directory, Python and fleche versions (read once per process)."""

    name = "environment"

    def start(self) -> None:
        return None

    def stop(self, token: None) -> dict[str, str]:
        return {**_environment(), "cwd": os.getcwd()}


@functools.cache
def _environment() -> dict[str, str]:
    from . import __version__

    try:
        user = getpass.getuser()
    except Exception:  # no user database entry (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return {
        "host": socket.gethostname(),
        "user": user,
        "python": platform.python_version(),
        "fleche": __version__,
        "platform": sys.platform,
    }


class Git:
    """Commit, branch and dirtiness of the git tree around the working directory.

    Asked of ``git`` once per process and working tree, not per call (so a
    tree edited while the process runs keeps the state it had first); a
    directory outside any git tree records nothing and runs no ``git``.
    """

    name = "git"

    def start(self) -> None:
        return None

    def stop(self, token: None) -> dict[str, Any]:
        where = (os.getcwd(), os.environ.get("GIT_DIR"))
        state = _GIT_BY_DIRECTORY.get(where)
        if state is None:
            with _GIT_LOCK:  # concurrent first calls ask git once
                tree = _work_tree(Path(where[0]))
                state = _GIT_BY_DIRECTORY[where] = {} if tree is None else _git_state(tree)
        return dict(state)


#: (working directory, GIT_DIR) -> the git state recorded for calls made there.
_GIT_BY_DIRECTORY: dict[tuple[str, str | None], dict[str, Any]] = {}
_GIT_LOCK = threading.Lock()
os.register_at_fork(after_in_child=lambda: globals().__setitem__("_GIT_LOCK", threading.Lock()))


def _work_tree(cwd: Path) -> Path | None:
    """The top of the git tree holding ``cwd`` (the nearest directory with ``.git``), or ``None``."""
    if "GIT_DIR" in os.environ:  # git is told where the repository is: trust it
        return cwd
    for directory in (cwd, *cwd.parents):
        if os.path.exists(os.path.join(directory, ".git")):
            return directory
    return None


@functools.cache
def _git_state(cwd: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status),
    }


class Tags:
    """The tags active where the call ran (see :func:`fleche.tags`)."""

    name = "tags"

    def start(self) -> None:
        return None

    def stop(self, token: None) -> dict[str, Any]:
        from .state import active_tags

        return dict(active_tags())


def record(recorders: tuple[Metadata, ...]) -> tuple[list[Any], Any]:
    """Start every recorder; returns the tokens and a function that stops them all."""
    tokens = [r.start() for r in recorders]

    def stop() -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for r, token in zip(recorders, tokens, strict=True):
            entries = r.stop(token)
            if entries:
                out[r.name] = entries
        return out

    return tokens, stop
