"""Provenance recorded with each call: timing, environment, git state and tags.

A recorder has a ``name`` (its namespace in the call's metadata), and a
``start()``/``stop(token)`` pair around the function body; ``stop`` returns
a flat mapping of plain values, so metadata can be queried and tabled.
Anything that does not change during a process is computed once.

Recorders written for the 0.22 release subclass :class:`MetaData` instead
(``pre(call)`` before the body, ``post(pre, call)`` after); :func:`record`
runs either kind, and ours offer both.  A class decorated with
:func:`configurable` can be named in ``[default] metadata`` of ``fleche.toml``.
"""

from __future__ import annotations

import contextvars
import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from ._version import __version__
from .config import CONFIGURABLE, configurable

__all__ = [
    "ACTIVE_TAGS",
    "CONFIGURABLE",
    "Environment",
    "Git",
    "JSONValue",
    "MetaData",
    "Metadata",
    "Recorder",
    "Runtime",
    "Tags",
    "configurable",
    "record",
]

#: The tags in force where a call runs, recorded by :class:`Tags`; set by :func:`fleche.tags`.
ACTIVE_TAGS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "fleche_tags", default=MappingProxyType({})
)

#: A plain value metadata may hold: what JSON carries.
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


class Metadata(Protocol):
    """What a metadata recorder provides."""

    name: ClassVar[str]

    def start(self) -> Any:
        """Called just before the function body; returns a token for :meth:`stop`."""

    def stop(self, token: Any) -> Mapping[str, Any]:
        """Called just after the body; the entries to record under :attr:`name`."""


class MetaData(ABC):
    """A metadata recorder in the form of the 0.22 release.

    ``pre(call)`` runs just before the function body and returns what
    ``post`` needs; ``post(pre, call)`` runs just after and returns the
    entries to record under :attr:`name`.  ``call`` is the call being run
    (``None`` where the runner does not hand it over).
    """

    name: str

    @abstractmethod
    def pre(self, call: Any) -> dict[str, Any]:
        """Before the body: whatever :meth:`post` needs."""

    @abstractmethod
    def post(self, pre: dict[str, Any], call: Any) -> dict[str, Any]:
        """After the body: the entries to record."""

    @property
    def keys(self) -> frozenset[str]:
        """The entries :meth:`post` records (empty when they are not known in advance)."""
        return frozenset()


class Recorder(MetaData):
    """Our recorders: ``start()``/``stop(token)``, offered as ``pre``/``post`` too."""

    #: The entries :meth:`stop` records.
    KEYS: ClassVar[frozenset[str]] = frozenset()
    #: Whether the entries depend on the working directory alone (and :meth:`start` is not
    #: overridden): :func:`record` then reads it once for all such recorders of a call and
    #: hands it to :meth:`stop` as the token (``None`` elsewhere: read it then).
    BY_DIRECTORY: ClassVar[bool] = False

    def start(self) -> Any:
        """Just before the body; returns a token for :meth:`stop`.

        This default measures nothing (its token is ``None``), and
        :func:`record` does not even call it: a recorder whose entries do not
        depend on when the body started costs one call per computation.
        """
        return None

    @abstractmethod
    def stop(self, token: Any) -> Mapping[str, Any]:
        """Just after the body; the entries to record under :attr:`name`."""

    def pre(self, call: Any) -> dict[str, Any]:
        # docstring inherited
        return {"token": self.start()}

    def post(self, pre: dict[str, Any], call: Any) -> dict[str, Any]:
        # docstring inherited
        return dict(self.stop(pre["token"]))

    @property
    def keys(self) -> frozenset[str]:
        # docstring inherited
        return self.KEYS


@configurable
class Runtime(Recorder):
    """When the call ran, and its wall and CPU time (CPU of this thread only), in seconds to the nanosecond."""

    name = "runtime"
    KEYS = frozenset({"started", "walltime", "cputime"})

    # The durations are taken from the clocks' integer nanoseconds: exact (no rounding
    # noise of two large floats subtracted), and so written in a few digits, which JSON
    # encodes at half the cost of the 17 digits of a noisy float.
    def start(self) -> tuple[float, int, int]:
        return time.time(), time.perf_counter_ns(), time.thread_time_ns()

    def stop(self, token: tuple[float, int, int]) -> dict[str, float]:
        started, wall, cpu = token
        return {
            "started": started,
            "walltime": (time.perf_counter_ns() - wall) / 1e9,
            "cputime": (time.thread_time_ns() - cpu) / 1e9,
        }


@configurable
class Environment(Recorder):
    """Host, user, working directory, Python and fleche versions (read once per process).

    :meth:`stop` hands every call made in one directory the same mapping
    (read-only, as records are; a subclass adding entries copies it first),
    so that a SQL store encodes it once.
    """

    name = "environment"
    KEYS = frozenset({"host", "user", "python", "fleche", "platform", "cwd"})
    BY_DIRECTORY = True

    def stop(self, token: str | None) -> dict[str, str]:
        cwd = os.getcwd() if token is None else token
        entries = _ENVIRONMENT_IN.get(cwd)
        if entries is None:
            entries = _ENVIRONMENT_IN[cwd] = {**_environment(), "cwd": cwd}
        return entries


#: Working directory -> the environment recorded for calls made there.
_ENVIRONMENT_IN: dict[str, dict[str, str]] = {}


@functools.cache
def _environment() -> dict[str, str]:
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


@configurable
class Git(Recorder):
    """Commit, branch and dirtiness of the git tree around the working directory.

    Asked of ``git`` once per process and working tree, not per call (so a
    tree edited while the process runs keeps the state it had first); a
    directory outside any git tree records nothing and runs no ``git``.
    Like :class:`Environment`, it hands those calls one read-only mapping.
    """

    name = "git"
    KEYS = frozenset({"commit", "branch", "dirty"})
    BY_DIRECTORY = True

    def stop(self, token: str | None) -> dict[str, Any]:
        where = (os.getcwd() if token is None else token, os.environ.get("GIT_DIR"))
        state = _GIT_BY_DIRECTORY.get(where)
        if state is None:
            with _GIT_LOCK:  # concurrent first calls ask git once
                tree = _work_tree(Path(where[0]))
                state = _GIT_BY_DIRECTORY[where] = {} if tree is None else _git_state(tree)
        return state  # the same mapping for every call made there, as the environment's


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


@configurable
class Tags(Recorder):
    """Tags recorded with each call: ``tags`` as given, else those active where it ran.

    ``Tags({"project": "x"})`` (the 0.22 form) records fixed tags under
    ``name``; ``Tags()`` records the tags of :func:`fleche.tags` in force.
    Several recorders of one name merge their entries.
    """

    def __init__(self, tags: Mapping[str, Any] | None = None, name: str = "tags") -> None:
        self.tags = None if tags is None else dict(tags)
        self.name = name

    def __repr__(self) -> str:
        return f"Tags({self.tags!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Tags and (self.tags, self.name) == (other.tags, other.name)

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.tags or ())))

    @property
    def keys(self) -> frozenset[str]:
        # docstring inherited
        return frozenset(self.tags or ())

    def stop(self, token: None) -> dict[str, Any]:
        tags = ACTIVE_TAGS.get() if self.tags is None else self.tags
        return dict(tags) if tags else {}


_MEASURES_NOTHING = Recorder.start

#: id of a tuple of recorders -> (the tuple, its plan): what :func:`record` runs for it, found
#: once (the recorders in force are one tuple, call after call); ``None`` for 0.22 ones.
_PLANS: dict[int, tuple[tuple[Any, ...], Any]] = {}
_PLANS_MAX = 64


def _plan(recorders: tuple[Any, ...]) -> Any:
    """The starts (``None`` for a recorder that measures nothing) and the stops of ``recorders``.

    ``None`` if one is a 0.22 :class:`MetaData` (``pre``/``post``), which
    :func:`record` runs the general way.
    """
    if any(getattr(type(r), "start", None) is None for r in recorders):
        plan = None
    else:
        starts = tuple(None if type(r).start is _MEASURES_NOTHING else r.start for r in recorders)
        by_directory = tuple(
            start is None and getattr(type(r), "BY_DIRECTORY", False)
            for r, start in zip(recorders, starts, strict=True)
        )
        stops = tuple((r.stop, r.name) for r in recorders)
        plan = (starts, stops, by_directory, any(by_directory))
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[id(recorders)] = (recorders, plan)
    return plan


def record(recorders: tuple[Any, ...], call: Any = None) -> tuple[list[Any], Callable[[], Any]]:
    """Start every recorder; returns the tokens and a function that stops them all.

    A recorder is ours (``start``/``stop``) or a 0.22 :class:`MetaData`
    (``pre(call)``/``post(pre, call)``); ``call`` is handed to the latter.
    Which method each one has is looked up once per tuple of recorders.
    """
    known = _PLANS.get(id(recorders))
    plan = known[1] if known is not None and known[0] is recorders else _plan(recorders)
    if plan is None:
        return _record_any(recorders, call)
    starts, stops, by_directory, reads_directory = plan
    tokens = []
    for start in starts:  # a loop, not a comprehension: no frame of its own on every miss
        tokens.append(None if start is None else start())

    def stop() -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        cwd = os.getcwd() if reads_directory else None  # one system call for all of them
        # zip without strict= (a keyword makes it a slower call): one plan, its lengths equal.
        for (stop_one, name), token, here in zip(stops, tokens, by_directory):  # noqa: B905
            entries = stop_one(cwd if here else token)
            if entries:
                out[name] = {**out[name], **entries} if name in out else entries
        return out

    return tokens, stop


def _record_any(recorders: tuple[Any, ...], call: Any) -> tuple[list[Any], Callable[[], Any]]:
    """:func:`record` for recorders among which some are 0.22 :class:`MetaData`."""
    tokens = [
        r.pre(call) if getattr(type(r), "start", None) is None else r.start() for r in recorders
    ]

    def stop() -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for r, token in zip(recorders, tokens, strict=True):
            entries = r.stop(token) if hasattr(r, "stop") else r.post(token, call)
            if entries:
                name = r.name
                out[name] = {**out[name], **entries} if name in out else entries
        return out

    return tokens, stop
