"""Commands that read a store: ``ls``, ``show``, ``query``, ``stats``, ``lineage``, ``explain``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from ..call import QueryCall
from ..digest import Digest
from ..state import cache as activate
from .context import BadInput, Commands, Context, import_object, literal, parse_assignments, when

__all__ = ["add_commands"]

CALL_COLUMNS = {"short": "key", "function": "function", "summary": "arguments", "time": "time"}


def ls(ctx: Context) -> int:
    """The stored calls, newest first, as a table."""
    records = list(ctx.calls_of(ctx.args.function))
    return _call_table(ctx, records, f"{_calls(len(records))} stored")


def query(ctx: Context) -> int:
    """The stored calls of a function whose arguments (and metadata) equal the ones given."""
    where = {name: _value(ctx, v) for name, v in parse_assignments(ctx.args.where).items()}
    metadata: dict[str, dict[str, Any]] = {}
    for name, value in parse_assignments(ctx.args.meta, "--meta").items():
        namespace, dot, entry = name.partition(".")
        if not dot:
            raise BadInput(f"--meta takes NAMESPACE.NAME=VALUE (e.g. tags.project=x), got {name!r}")
        metadata.setdefault(namespace, {})[entry] = value
    records = list(
        ctx.calls_of(ctx.args.function, arguments=where or None, metadata=metadata or None)
    )
    return _call_table(ctx, records, f"{_calls(len(records))} of {ctx.args.function} matching")


#: Metadata entries that hold a moment (epoch seconds), and those that hold a duration.
_MOMENTS = frozenset({"started", "stopped", "created", "expires"})
_DURATIONS = frozenset({"walltime", "cputime", "ttl"})


def _entry(name: str, value: Any) -> str:
    """A metadata entry for a person: moments as local dates, durations in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if name in _MOMENTS:
            return when(value)
        if name in _DURATIONS:
            return f"{value:.3g} s"
    return str(value)


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def _value(ctx: Context, value: Any) -> Any:
    """``@a3f9`` stands for the stored value with that digest prefix."""
    if isinstance(value, str) and value.startswith("@"):
        return Digest(ctx.expand(value[1:]))
    return value


def _call_table(ctx: Context, records: list, title: str) -> int:
    limit = ctx.args.limit
    shown = records[:limit] if limit else records
    rows = [ctx.call_row(record, values=not ctx.args.digests) for record in shown]
    ctx.table(rows, CALL_COLUMNS, title=title)
    if len(shown) < len(records):
        ctx.say(f"… and {len(records) - len(shown)} more (--limit 0 shows all)")
    return 0


def show(ctx: Context) -> int:
    """One stored call (arguments, result, metadata) or value (type, content, producers)."""
    key = ctx.expand(ctx.args.digest)
    try:
        record = ctx.cache.load(key).digested_call
    except KeyError:
        return _show_value(ctx, key)
    data = ctx.call_row(record, values=True)
    data["kind"] = "call"
    data["argument_values"] = {n: ctx.summary(d) for n, d in record.arguments.items()}
    data["result_value"] = ctx.summary(record.result)
    data["metadata"] = {ns: dict(entries) for ns, entries in record.metadata.items()}
    data.update(module=record.module, name=record.name, version=record.version, code=record.code)

    def render() -> None:
        rows = [
            ("call", f"{data['short']}  ({key})"),
            ("function", data["function"]),
            ("stored", data["time"]),
        ]
        rows += [("version", str(record.version))] if record.version is not None else []
        rows += [
            (f"  {n}", f"{ctx.short(d)}  {data['argument_values'][n]}")
            for n, d in record.arguments.items()
        ]
        rows.append(("result", f"{ctx.short(record.result)}  {data['result_value']}"))
        rows += [
            (f"{ns}.{k}", _entry(k, v))
            for ns, entries in data["metadata"].items()
            for k, v in entries.items()
        ]
        _grid(ctx, rows)

    ctx.emit(data, render)
    return 0


def _show_value(ctx: Context, key: Digest) -> int:
    value = ctx.cache.load_value(key)
    producers = [
        ctx.call_row(c.digested_call, values=False) for c in ctx.cache.query(QueryCall(result=key))
    ]
    data = {
        "kind": "value",
        "digest": key,
        "short": ctx.short(key),
        "type": _type(value),
        "summary": ctx.summary(key),
    }
    data["produced_by"] = producers

    def render() -> None:
        from rich.pretty import Pretty

        _grid(ctx, [("value", f"{data['short']}  ({key})"), ("type", data["type"])])
        ctx.console.print(Pretty(value, max_length=20, max_string=400, max_depth=4))
        for row in producers:
            ctx.say(
                f"result of call {row['short']}: {row['function']}({row['summary']}) at {row['time']}"
            )

    ctx.emit(data, render)
    return 0


def _type(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _grid(ctx: Context, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, text in rows:
        grid.add_row(name, text)
    ctx.console.print(grid)


def stats(ctx: Context) -> int:
    """Calls per function, and entries and bytes per storage where the medium tells."""
    functions: dict[str, dict[str, Any]] = {}
    now = ctx.cache.now()
    live = {call.key() for call in ctx.cache.query()}
    for call in ctx.cache.query(expired=True):
        record = call.digested_call
        row = functions.setdefault(
            record.qualified_name,
            {
                "function": record.qualified_name,
                "calls": 0,
                "expired": 0,
                "results": set(),
                "first": now,
                "last": 0.0,
            },
        )
        row["calls"] += 1
        row["expired"] += call.key() not in live
        row["results"].add(record.result)
        row["first"], row["last"] = (
            min(row["first"], record.created),
            max(row["last"], record.created),
        )
    rows = []
    for row in sorted(functions.values(), key=lambda r: r["function"]):
        rows.append(
            {
                **row,
                "results": len(row["results"]),
                "first": when(row["first"]),
                "last": when(row["last"]),
            }
        )
    stores = [_storage_row(name, storage) for name, storage in _storages(ctx.cache)]
    if ctx.json:
        ctx.emit({"functions": rows, "storages": stores}, lambda: None)
        return 0
    columns = {
        "function": "function",
        "calls": "calls",
        "expired": "expired",
        "results": "distinct results",
    }
    ctx.table(
        rows, {**columns, "first": "first", "last": "last"}, title=f"{_calls(len(live))} live"
    )
    ctx.table(
        stores,
        {
            "store": "store",
            "type": "storage",
            "entries": "entries",
            "bytes": "bytes",
            "where": "where",
        },
    )
    return 0


def _storages(cache: Any) -> list[tuple[str, Any]]:
    """The storages of a plain cache (a composition reports none)."""
    return [(name, getattr(cache, name)) for name in ("values", "calls") if hasattr(cache, name)]


def _storage_row(name: str, storage: Any) -> dict[str, Any]:
    where = _medium(storage)
    size = None
    if where is not None and where.is_dir():
        size = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
    elif where is not None and where.exists():
        size = sum(
            p.stat().st_size for p in where.parent.glob(where.name + "*") if p.is_file()
        )  # -wal, -shm
    if callable(inline := getattr(storage, "inline_bytes", None)):  # small values in the call db
        size = (size or 0) + inline()
    return {
        "store": name,
        "type": type(storage).__name__,
        "entries": sum(1 for _ in storage.list()),
        "bytes": size,
        "where": None if where is None else str(where),
    }


def _medium(storage: Any) -> Path | None:
    """The directory or database file a storage keeps its entries in, if it has one."""
    root = getattr(storage, "root", None)
    if isinstance(root, str | os.PathLike):
        return Path(root)
    engine = getattr(storage, "engine", None)
    database = getattr(getattr(engine, "url", None), "database", None)
    if (
        engine is not None
        and engine.url.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
    ):
        return Path(database)
    return None


def lineage(ctx: Context) -> int:
    """The calls that produced a value or call (or, with ``--used-by``, that used it), as a tree."""
    key = ctx.expand(ctx.args.digest)
    graph = ctx.cache.lineage(
        key, used_by=ctx.args.used_by, depth=ctx.args.depth, summaries=not ctx.args.digests
    )
    if ctx.args.dot:
        sys.stdout.write(graph.dot())
        return 0
    ctx.emit(graph.to_dict(), lambda: ctx.console.print(graph.rich()))
    return 0


def explain(ctx: Context) -> int:
    """Why a call of a decorated function is (not) stored; nothing runs."""
    function = import_object(ctx.args.function)
    if not callable(getattr(function, "explain", None)):
        raise BadInput(f"{ctx.args.function} is not a function decorated with @fleche")
    positional = [_value(ctx, literal(a)) for a in ctx.args.arguments if "=" not in a]
    keywords = parse_assignments([a for a in ctx.args.arguments if "=" in a], "an argument")
    keywords = {name: _value(ctx, value) for name, value in keywords.items()}
    with activate(ctx.cache):
        explanation = function.explain(*positional, **keywords)
    data = {**dataclasses.asdict(explanation), "stored": explanation.stored}
    ctx.emit(data, lambda: ctx.say(str(explanation)))
    return 0


def add_commands(commands: Commands) -> None:
    """Register the reading commands."""
    _add_finding(commands)
    _add_tracing(commands)


def _add_finding(commands: Commands) -> None:
    """``ls``, ``show``, ``query`` and ``stats``: the calls and values of a store."""
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument(
        "--limit", type=int, default=50, help="show at most this many calls, newest first (0: all)"
    )
    listing.add_argument(
        "--digests", action="store_true", help="show argument digests; load no value"
    )

    p = commands.add_parser(
        "ls", parents=[listing], help="list stored calls", description=ls.__doc__
    )
    p.add_argument("function", nargs="?", help="only calls of this function (name or module.name)")
    p.set_defaults(run=ls)

    p = commands.add_parser("show", help="show a call or a value", description=show.__doc__)
    p.add_argument("digest", help="a call key or a value digest, full or a unique prefix")
    p.set_defaults(run=show)

    p = commands.add_parser(
        "query", parents=[listing], help="find calls by argument values", description=query.__doc__
    )
    p.add_argument("function", help="name or module.name of the function")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument's value: a Python literal, else a string; @PREFIX names a stored value",
    )
    p.add_argument(
        "--meta", action="append", default=[], metavar="NS.NAME=VALUE", help="a metadata entry"
    )
    p.set_defaults(run=query)

    p = commands.add_parser("stats", help="counts and sizes", description=stats.__doc__)
    p.set_defaults(run=stats)


def _add_tracing(commands: Commands) -> None:
    """``lineage`` and ``explain``: where a value came from, why a call is (not) stored."""
    p = commands.add_parser(
        "lineage", help="where a value came from, or where it went", description=lineage.__doc__
    )
    p.add_argument("digest", help="a value digest or a call key, full or a unique prefix")
    p.add_argument(
        "--used-by",
        action="store_true",
        help="follow the value downstream, to the calls that used it",
    )
    p.add_argument("--depth", type=int, default=None, help="follow at most this many calls")
    p.add_argument("--dot", action="store_true", help="print Graphviz dot text")
    p.add_argument("--digests", action="store_true", help="load no value; show digests only")
    p.set_defaults(run=lineage)

    p = commands.add_parser(
        "explain", help="why a call is (not) stored", description=explain.__doc__
    )
    p.add_argument(
        "function", help="package.module:function, importable from the working directory"
    )
    p.add_argument(
        "arguments",
        nargs="*",
        metavar="ARG",
        help="VALUE or NAME=VALUE, as Python literals; @PREFIX names a stored value",
    )
    p.set_defaults(run=explain)
