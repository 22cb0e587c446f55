"""What every command shares: the store it works on, and how it writes.

A :class:`Context` opens the store named by ``--cache`` (through
:func:`fleche.config.open_cache`, the function users call) or the default
one, and writes either rich tables and trees for a person or, with
``--json``, plain JSON built from the same records for a script.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..caches import CacheBase
from ..call import DigestedCall, QueryCall
from ..config import Configuration, default_cache, load_configuration, open_cache
from ..digest import Digest
from ..errors import AmbiguousDigestError, FlecheError
from ..expiry import parse_duration as duration_seconds
from ..explain import summarize
from ..opening import default_spec, store_location
from ..storage.redaction import redact_url
from ..store_layout import MANIFEST, holds_store

__all__ = [
    "BadInput",
    "Commands",
    "Context",
    "import_object",
    "literal",
    "parse_assignments",
    "parse_duration",
    "plain",
    "when",
]


class Commands:
    """The sub-command registry: every command also takes the global options, after its name."""

    def __init__(self, action: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        self._action = action
        self._common = common

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        """A parser for command ``name`` (``argparse`` options), with the global options added."""
        options["parents"] = [*options.get("parents", ()), self._common]
        for text in ("help", "description"):  # docstrings are reST; a terminal shows plain text
            if isinstance(options.get(text), str):
                options[text] = plain(options[text])
        return self._action.add_parser(name, **options)


_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]*?)(?:\s*<[^>]*>)?`")


def plain(text: str) -> str:
    """reST inline markup as plain text: roles by their title (``~a.B`` as ``B``), no double backticks."""
    text = _ROLE.sub(lambda m: m.group(2).rpartition(".")[2] if m.group(1) else m.group(2), text)
    return text.replace("``", "")


class BadInput(FlecheError, ValueError):
    """The command line asks for something that is not there (exit code 2)."""


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"2w"``."""
    try:
        return duration_seconds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def literal(text: str) -> Any:
    """A Python literal (``300``, ``0.5``, ``'a'``, ``[1, 2]``, ``None``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_assignments(items: Sequence[str], what: str = "--where") -> dict[str, Any]:
    """``["k=v", ...]`` as a mapping; each value a Python literal, else a string."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadInput(f"{what} takes NAME=VALUE, got {item!r}")
        parsed[name.strip()] = literal(value)
    return parsed


def import_object(path: str) -> Any:
    """An object from ``package.module:name`` or ``package.module.name``, importable from here."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like ``python -m``: the working directory's modules
    module_name, colon, attribute = path.partition(":")
    parts = path.split(".")
    candidates = (
        [(module_name, attribute)]
        if colon
        else [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    )
    for module_name, attribute in candidates:
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for part in attribute.split("."):
                target = getattr(target, part)
        except AttributeError:
            continue
        return target
    raise BadInput(
        f"cannot import {path!r}; write it as package.module:name (importable from here)"
    )


def when(created: float) -> str:
    """A record's timestamp, local time, to the second."""
    return datetime.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S")


class Context:
    """The parsed command line, the store, and the output of one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json = bool(getattr(args, "json", False))
        self._cache: CacheBase | None = None
        from rich.console import Console

        self.console = Console(
            file=sys.stdout, width=None if sys.stdout.isatty() else 160, highlight=False
        )
        self.errors = Console(
            file=sys.stderr, width=None if sys.stderr.isatty() else 160, highlight=False
        )

    # -- the store -----------------------------------------------------------

    @property
    def cache(self) -> CacheBase:
        """The store ``--cache`` names (a name, a path or a URL), else the default one."""
        if self._cache is None:
            self._cache = self.open(
                self.args.cache, create=bool(getattr(self.args, "create", False))
            )
        return self._cache

    def open(self, spec: str | None, create: bool) -> CacheBase:
        """Open ``spec``; a store that does not exist yet is an error unless ``create``."""
        if spec is None:
            if not create:
                _require_default()
            return default_cache()
        values = getattr(self.args, "values", None)
        if "://" in spec and values is not None:
            return open_cache({"template": "sql", "url": spec, "root": values}, source="--cache")
        if "://" in spec and not spec.startswith("sqlite"):
            raise BadInput(
                f"{redact_url(spec)} holds call records only: name the directory of the values with --values DIR"
            )
        if not create:
            configuration = load_configuration()
            if spec not in configuration.caches and not os.path.exists(os.path.expanduser(spec)):
                raise BadInput(
                    f"no store at {redact_url(spec)!r} and no cache of that name "
                    f"(known names: {', '.join(configuration.names())})"
                )
            _require(spec, Path.cwd(), configuration, "--cache")
        return open_cache(spec, source="--cache")

    def expand(self, prefix: str) -> Digest:
        """The full digest a prefix names among calls and values; :class:`BadInput` if none or several."""
        try:
            return self.cache.expand(prefix)
        except AmbiguousDigestError as err:
            shown = "; ".join(f"{c} ({self.kind(Digest(c))})" for c in err.candidates)
            raise BadInput(
                f"prefix {prefix!r} is ambiguous, give at least {err.needed} characters; candidates: {shown}"
            ) from None
        except KeyError:
            raise BadInput(f"no stored call or value starts with {prefix!r}") from None
        except ValueError as err:  # not hexadecimal
            raise BadInput(str(err)) from None

    def kind(self, key: Digest) -> str:
        """``"call module.name"`` or ``"value"``: what a full digest names."""
        try:
            return f"call {self.cache.load(key).digested_call.qualified_name}"
        except KeyError:
            return "value"

    def short(self, key: Digest) -> str:
        """The shortest unambiguous prefix of a stored key (8 characters if it is gone)."""
        try:
            return str(self.cache.shrink(key))
        except (KeyError, ValueError):
            return key[:8]

    def summary(self, key: Digest) -> str:
        """A short description of the value under ``key`` (loads it)."""
        try:
            return summarize(self.cache.load_value(key))
        except KeyError:
            return "<missing>"
        except Exception as err:  # a value this process cannot load still gets a line
            return f"<unreadable: {type(err).__name__}>"

    def calls_of(
        self, function: str | None, expired: bool = False, **template: Any
    ) -> Iterator[DigestedCall]:
        """Stored records of ``function`` (``name`` or ``module.name``), newest first.

        Every split of a dotted name into module and qualified name is one
        template query, so a SQL store answers from its function index.
        """
        templates = [QueryCall(**template)]
        if function is not None:
            templates = [QueryCall(name=function, **template)]
            parts = function.split(".")
            for i in range(1, len(parts)):
                module, name = ".".join(parts[:i]), ".".join(parts[i:])
                templates.append(QueryCall(name=name, module=module, **template))
        seen: dict[Digest, DigestedCall] = {}
        for query in templates:
            for call in self.cache.query(query, expired=expired):
                seen.setdefault(call.key(), call.digested_call)
        yield from sorted(seen.values(), key=lambda r: -r.created)

    def call_row(self, record: DigestedCall, values: bool) -> dict[str, Any]:
        """One call as a record: what ``ls`` and ``query`` print and emit."""
        key = record.key()
        arguments = {
            n: _clip(self.summary(d)) if values else self.short(d)
            for n, d in record.arguments.items()
        }
        return {
            "key": key,
            "short": self.short(key),
            "function": record.qualified_name,
            "arguments": dict(record.arguments),
            "summary": ", ".join(f"{n}={v}" for n, v in arguments.items()),
            "result": record.result,
            "created": record.created,
            "time": when(record.created),
        }

    # -- output --------------------------------------------------------------

    def emit(self, data: Any, render: Callable[[], None]) -> None:
        """``data`` as JSON with ``--json``, else whatever ``render`` prints."""
        if self.json:
            print(json.dumps(data, indent=2, default=str))
        else:
            render()

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Mapping[str, str],
        title: str | None = None,
    ) -> None:
        """Rows as a rich table (``columns``: record field -> heading), or as JSON."""
        if self.json:
            print(json.dumps(list(rows), indent=2, default=str))
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for heading in columns.values():
            table.add_column(heading, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(field)) for field in columns))
        self.console.print(table)

    def say(self, text: str) -> None:
        """A line for a person (nothing with ``--json``)."""
        if not self.json:
            self.console.print(text, markup=False)

    @contextlib.contextmanager
    def progress(self, description: str) -> Iterator[Callable[[int, int], None]]:
        """A progress bar on stderr, driven by ``update(done, total)``; silent off a terminal."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.errors,
            transient=True,
            disable=not self.errors.is_terminal,
        )
        task = bar.add_task(description, total=None)
        with bar:
            yield lambda done, total: bar.update(task, completed=done, total=total)

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        """A spinner on stderr for work of unknown length; silent off a terminal."""
        if not self.errors.is_terminal:
            yield
            return
        with self.errors.status(description):
            yield


def _missing(spec: Any, base: Path, configuration: Configuration) -> Path | None:
    """The directory a store should be in and is not; ``None`` if it is there or cannot be told."""
    location = store_location(spec, base, configuration)
    if location is None:
        return None
    path, table, _ = location
    return None if holds_store(path) or "url" in (table or {}) else path


def _require(spec: Any, base: Path, configuration: Configuration, why: str) -> None:
    """:class:`BadInput` unless the store ``spec`` names exists: reading commands create none."""
    path = _missing(spec, base, configuration)
    if path is not None:
        raise BadInput(
            f"no fleche store at {path} ({why}; looked for {MANIFEST}, calls.db or calls/ there); "
            "a decorated function or `fleche import` creates one"
        )


def _require_default() -> None:
    """:class:`BadInput` unless the store used without ``--cache`` exists."""
    configuration = load_configuration()
    spec, base, why = default_spec(configuration)
    _require(spec, base, configuration, why)


def _clip(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
