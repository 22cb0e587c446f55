"""The ``fleche`` command: look into a store, maintain it, move it, explain it.

``fleche ls``, ``show``, ``query``, ``stats``, ``lineage`` and ``explain``
read; ``gc``, ``prune``, ``verify --fix``, ``transform`` and the renames
change; ``export``/``import`` move a store through a portable archive,
``copy`` straight into another store;
``import-legacy`` brings a store of the fleche 0.22 release along;
``config`` says which store is active and why; ``demo`` runs a small
workflow; ``ui`` serves a web page to browse a store.  Every command is a thin shell over the public API (one module
per group: :mod:`.browse`, :mod:`.maintain`, :mod:`.archive`, :mod:`.legacy`,
:mod:`.about`).

Global options (before or after the command): ``--cache NAME|PATH|URL``
(default: the active cache of the configuration), ``--values DIR`` (the
values of a database URL), ``--json`` (plain JSON built from the same
records as the tables) and ``--debug`` (tracebacks).

Exit codes: 0 done; 1 problems found (``verify``, an ``export`` that left
unreadable calls out); 2 bad input (an unknown or ambiguous digest prefix,
a missing store, a configuration error), reported as one line on stderr;
141 (quietly) when the reader of the output went away, as in
``fleche ls --json | head``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from .. import __version__
from ..errors import FlecheError
from . import about, archive, browse, copy, legacy, maintain, remote, ui
from .context import Commands, Context

__all__ = ["main", "parser"]

#: Exit codes (the last: stdout was closed early, 128 + SIGPIPE as for a shell).
OK, PROBLEMS, BAD_INPUT, CLOSED_PIPE = 0, 1, 2, 141


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--cache",
        default=default,
        metavar="NAME|PATH|URL",
        help="the store: a cache name from fleche.toml, a store directory, a SQLite file or a URL",
    )
    parser.add_argument(
        "--values",
        default=default,
        metavar="DIR",
        help="with a database URL as --cache: the directory of the values",
    )
    parser.add_argument(
        "--json", action="store_true", default=default, help="print JSON for scripts"
    )
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fleche`` command."""
    top = argparse.ArgumentParser(
        prog="fleche", description="Look into a fleche store, maintain it, move it, explain it."
    )
    top.add_argument("--version", action="version", version=f"fleche {__version__}")
    _global_options(top, None)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)  # after the command too, without resetting
    commands = Commands(top.add_subparsers(title="commands", metavar="COMMAND"), common)
    for group in (browse, maintain, archive, copy, legacy, about, remote, ui):
        group.add_commands(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` by default); returns the exit code."""
    top = parser()
    try:
        args = top.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error (argparse says why)
        return exit.code if isinstance(exit.code, int) else BAD_INPUT
    if getattr(args, "run", None) is None:
        top.print_help(sys.stderr)
        return BAD_INPUT
    try:
        code = args.run(Context(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # e.g. `fleche ls --json | head`: the reader has all it wants
        return _closed_pipe()
    except KeyboardInterrupt:
        print("fleche: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        print(f"fleche: error: {_one_line(err)}", file=sys.stderr)
        if (
            not isinstance(err, FlecheError | KeyError | ValueError | OSError | ImportError)
            and not args.debug
        ):
            print("fleche: (run with --debug for the traceback)", file=sys.stderr)
        return BAD_INPUT


def _closed_pipe() -> int:
    """Exit quietly after the reader of stdout went away, as a tool killed by SIGPIPE would."""
    try:  # what is still buffered cannot be written: send it nowhere, so exiting stays quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return CLOSED_PIPE


def _one_line(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if not isinstance(err, FlecheError):
        text = f"{type(err).__name__}: {text}"
    return " ".join(text.split())
