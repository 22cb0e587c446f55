"""``fleche import-legacy``: bring a store of the fleche 0.22 release along."""

from __future__ import annotations

from ..legacy import import_store
from .context import Commands, Context

__all__ = ["add_commands"]


def import_legacy(ctx: Context) -> int:
    """Import the calls of a fleche 0.22 store, re-digested, into a store of ours (resumable)."""
    args = ctx.args
    target = ctx.cache if args.into is None else ctx.open(args.into, create=True)
    with ctx.progress("importing") as update:
        report = import_store(
            args.source,
            target,
            values=args.source_values,
            progress=update,
            limit=args.limit,
            drop_versions=args.drop_versions,
            secret_key=args.source_secret_key,
        )
    ctx.emit({**report.to_dict(), "target": str(target)}, lambda: ctx.say(report.summary()))
    return 0 if report.ok else 1


def add_commands(commands: Commands) -> None:
    """Register ``import-legacy``."""
    p = commands.add_parser(
        "import-legacy",
        help="import a store of the fleche 0.22 release",
        description=import_legacy.__doc__,
    )
    p.add_argument(
        "source",
        metavar="PATH_OR_URL",
        help="the 0.22 store: its directory, its calls.db, or the database URL of its calls",
    )
    p.add_argument(
        "--into",
        default=None,
        metavar="NAME|PATH|URL",
        help="the store to import into (default: --cache, else the active cache)",
    )
    p.add_argument(
        "--source-values",
        default=None,
        metavar="DIR",
        help="the values directory of the 0.22 store (needed with a PostgreSQL URL)",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="import at most this many calls in this run"
    )
    p.add_argument(
        "--drop-versions",
        action="store_true",
        help="leave out the versions 0.22 recorded (it took the package version when none was given)",
    )
    p.add_argument(
        "--source-secret-key",
        default=None,
        metavar="HEX[:HEX…]",
        help="the FLECHE_SECRET_KEY the 0.22 store was signed with: check every signature",
    )
    p.set_defaults(run=import_legacy)
