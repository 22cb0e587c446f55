"""Commands that change a store: ``gc``, ``prune``, ``verify``, ``transform`` and the renames."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

from ..caches.maintenance import horizon, remove_values
from ..call import Call, DigestedCall
from ..sweep import remove_strays
from ..verify import repair
from .context import BadInput, Commands, Context, import_object, parse_duration

__all__ = ["add_commands"]

Migration = Callable[[DigestedCall], Call]


def gc(ctx: Context) -> int:
    """Remove the values no stored call refers to, and the temporary files of killed writers."""
    dry_run, grace = ctx.args.dry_run, ctx.args.grace
    with ctx.status("collecting unreferenced values…"):
        unreferenced = getattr(ctx.cache, "unreferenced", None)  # a plain Cache says what it kept
        if callable(unreferenced):  # one pass: what to remove and what the grace keeps
            since = horizon(ctx.cache, grace)
            dead, young = unreferenced(grace)
            removed, kept = remove_values(ctx.cache, dead, dry_run, since), len(young)
        else:
            removed, kept = ctx.cache.gc(dry_run=dry_run, grace=grace), 0
        files = [str(path) for path in remove_strays(ctx.cache, grace, dry_run)]
    verb = "would remove" if dry_run else "removed"
    data = {"dry_run": dry_run, "values": sorted(removed), "files": files, "kept_by_grace": kept}
    young = (
        f"; {kept} unreferenced values younger than the grace period are kept for now "
        "(calls that failed or still run; --grace 0 removes them)"
        if kept
        else ""
    )
    ctx.emit(
        data,
        lambda: ctx.say(
            f"{verb} {len(removed)} unreferenced values and {len(files)} stale temporary files"
            + young
        ),
    )
    return 0


def prune(ctx: Context) -> int:
    """Remove the calls older than a duration, of a function, or expired (their values stay until gc)."""
    expired = True if ctx.args.expired else None
    removed = ctx.cache.prune(
        older_than=ctx.args.older_than,
        func=ctx.args.func,
        expired=expired,
        dry_run=ctx.args.dry_run,
    )
    verb = "would remove" if ctx.args.dry_run else "removed"
    data = {"dry_run": ctx.args.dry_run, "calls": removed}
    ctx.emit(
        data, lambda: ctx.say(f"{verb} {len(removed)} calls; run `fleche gc` to free their values")
    )
    return 0


#: ``verify --fix`` removes at most this many entries without ``--yes``.
FEW = 5


def verify(ctx: Context) -> int:
    """Re-read and check every value and record; exit code 1 if anything is wrong.

    With --fix, the broken entries found are removed; when there are more
    than a few, they are only listed until the command is run again with --yes.
    With --since, only the values written that recently are read again; with
    --changed, only those written since the last verify began.
    """
    check = getattr(ctx.cache, "verify", None)
    if check is None:
        raise BadInput(
            f"{type(ctx.cache).__name__} is a composition of caches; verify each store by itself"
        )
    since = None if ctx.args.since is None else time.time() - ctx.args.since
    with ctx.progress("verifying") as update:
        report = check(progress=_every(update), since=since, since_last=ctx.args.changed)
    removable = sum(p.fixable for p in report.problems)
    held = ctx.args.fix and removable > FEW and not ctx.args.yes
    if ctx.args.fix and not held:
        report = repair(ctx.cache, report)
    problems = [dataclasses.asdict(p) for p in report.problems]
    data = {"values": report.values, "calls": report.calls, "ok": report.ok, "problems": problems}
    data["started"] = report.started
    data["held"] = held

    def render() -> None:
        ctx.say(str(report))
        if held:
            ctx.say(
                f"{removable} entries would be removed: run again with --fix --yes to remove them"
            )

    ctx.emit(data, render)
    return 0 if report.ok else 1


def _every(update: Callable[[int, int], None], step: int = 4096) -> Callable[[int, int], None]:
    """``update`` called every ``step`` entries and at the end: a bar redrawn per entry costs more than the check."""

    def throttled(done: int, total: int) -> None:
        if not done % step or done == total:
            update(done, total)

    return throttled


def _migrate(ctx: Context, func: Migration | None, what: str) -> int:
    """Apply ``func`` to every record through ``CallStorage.transform`` (or count, with --dry-run)."""
    calls = getattr(ctx.cache, "calls", None)
    if calls is None:
        raise BadInput(
            f"{type(ctx.cache).__name__} is a composition of caches; migrate each store by itself"
        )
    changed = rekeyed = 0
    for key in list(calls.list()):
        try:
            record = calls.load(key)
        except KeyError:
            continue
        new = record if func is None else func(record)
        changed += new != record
        rekeyed += new.key() != key
    if not ctx.args.dry_run and (changed or rekeyed):
        with ctx.status(f"{what}…"):
            calls.transform(func)
    verb = "would change" if ctx.args.dry_run else "changed"
    data = {"dry_run": ctx.args.dry_run, "changed": changed, "rekeyed": rekeyed}
    ctx.emit(
        data,
        lambda: ctx.say(f"{what}: {verb} {changed} records, {rekeyed} of them under a new key"),
    )
    return 0


def transform(ctx: Context) -> int:
    """Rewrite every call record through a function (none: only re-key after a change of key scheme)."""
    func = None if ctx.args.function is None else import_object(ctx.args.function)
    return _migrate(ctx, func, "transform")


def rename_module(ctx: Context) -> int:
    """Move the calls of a module (and its submodules) to a new module name, keeping them."""
    old, new = ctx.args.old, ctx.args.new

    def rename(record: DigestedCall) -> Call:
        if record.module == old or record.module.startswith(old + "."):
            return record.replace(module=new + record.module[len(old) :])
        return record

    return _migrate(ctx, rename, f"rename module {old} to {new}")


def rename_function(ctx: Context) -> int:
    """Give the calls of MODULE.OLD the identity MODULE.NEW (a function renamed or moved), keeping them."""
    old, new = ctx.args.old, ctx.args.new
    if not any(r.qualified_name == old for r in ctx.calls_of(old, expired=True)):
        raise BadInput(f"no stored call of {old!r}; `fleche stats` lists the functions")

    def rename(record: DigestedCall) -> Call:
        if record.qualified_name != old:
            return record
        if new.startswith(record.module + "."):  # same module: the rest is the (qualified) name
            return record.replace(name=new[len(record.module) + 1 :])
        module, _, name = new.rpartition(".")
        return record.replace(module=module or record.module, name=name)

    return _migrate(ctx, rename, f"rename {old} to {new}")


def add_commands(commands: Commands) -> None:
    """Register the commands that change a store."""
    dry = argparse.ArgumentParser(add_help=False)
    dry.add_argument("--dry-run", action="store_true", help="only report what would change")
    _add_cleaning(commands, dry)
    _add_rewriting(commands, dry)


def _add_cleaning(commands: Commands, dry: argparse.ArgumentParser) -> None:
    """``gc``, ``prune`` and ``verify``: remove what is unreferenced, old or broken."""
    p = commands.add_parser(
        "gc", parents=[dry], help="remove unreferenced values", description=gc.__doc__
    )
    p.add_argument(
        "--grace",
        type=parse_duration,
        default=None,
        help="keep values and temporary files younger than this "
        "(default 1h: calls running elsewhere may need them)",
    )
    p.set_defaults(run=gc)

    p = commands.add_parser(
        "prune", parents=[dry], help="remove old or expired calls", description=prune.__doc__
    )
    p.add_argument(
        "--older-than",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="e.g. 12h, 30d, 2w",
    )
    p.add_argument("--func", default=None, help="only calls of this function (name or module.name)")
    p.add_argument(
        "--expired",
        action="store_true",
        help="only expired calls (the default with no other criterion)",
    )
    p.set_defaults(run=prune)

    p = commands.add_parser("verify", help="check every entry", description=verify.__doc__)
    p.add_argument("--fix", action="store_true", help="remove the broken entries found")
    p.add_argument(
        "--since",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="re-read only the values written this recently, e.g. 1d since a daily verify "
        "(every record and its references are still checked)",
    )
    p.add_argument(
        "--changed",
        action="store_true",
        help="re-read only the values written since the last verify of this store began "
        "(every record and its references are still checked)",
    )
    p.add_argument(
        "--yes",
        "--force",
        action="store_true",
        help=f"with --fix: remove them even when there are more than {FEW}",
    )
    p.set_defaults(run=verify)


def _add_rewriting(commands: Commands, dry: argparse.ArgumentParser) -> None:
    """``transform`` and the renames: rewrite the call records in place."""
    p = commands.add_parser(
        "transform", parents=[dry], help="rewrite every call record", description=transform.__doc__
    )
    p.add_argument(
        "function", nargs="?", help="package.module:function taking and returning a call record"
    )
    p.set_defaults(run=transform)

    p = commands.add_parser(
        "rename-module",
        parents=[dry],
        help="move calls to a renamed module",
        description=rename_module.__doc__,
    )
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(run=rename_module)

    p = commands.add_parser(
        "rename-function",
        parents=[dry],
        help="move calls to a renamed function",
        description=rename_function.__doc__,
    )
    p.add_argument("old", metavar="MODULE.OLD")
    p.add_argument("new", metavar="MODULE.NEW")
    p.set_defaults(run=rename_function)
