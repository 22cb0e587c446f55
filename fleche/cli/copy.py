"""``fleche copy SRC DST``: every value and call record of one store into another.

SRC and DST are what ``--cache`` takes (a cache name from ``fleche.toml``,
a store directory, a SQLite file or a URL); with ``--template`` DST is a
directory made (or opened) with that template, e.g. ``--template hdf5``
for values in grouped HDF5 files.  The copy goes through
:func:`fleche.storage.transfer.copy_store`: values by digest, then call
records by key; entries DST holds already are skipped, so an interrupted
copy is finished by running it again, and ``--move`` removes entries from
SRC only once DST holds them.
"""

from __future__ import annotations

import os
from typing import Any

from ..caches import CacheBase
from ..config import open_cache
from ..storage.transfer import StoreTally, copy_store
from .archive import store_entries
from .context import BadInput, Commands, Context

__all__ = ["add_commands"]


def copy(ctx: Context) -> int:
    """Copy every value and call record of the store SRC into the store DST."""
    args = ctx.args
    source = ctx.open(args.source, create=False)
    if args.template is None:
        target = ctx.open(args.target, create=True)
    else:
        target = open_cache({"template": args.template, "root": args.target}, source="fleche copy")
    if _identity(source) == _identity(target):
        raise BadInput(f"{args.source} and {args.target} are the same store: nothing to copy")
    with ctx.progress("copying") as update:
        tally = copy_store(
            store_entries(source, args.source),
            store_entries(target, args.target),
            overwrite=args.overwrite,
            remove=args.move,
            dry_run=args.dry_run,
            progress=lambda stage, done, total: update(done, total),
        )
    data = {"source": args.source, "target": args.target, "dry_run": args.dry_run}
    data.update(tally.as_dict())
    ctx.emit(data, lambda: ctx.say(_summary(tally, args.dry_run, args.move)))
    return 1 if tally.values.failed or tally.calls.failed else 0


def _identity(cache: CacheBase) -> tuple[Any, ...]:
    """What tells two opened stores apart: the places of their storages."""
    places = [getattr(cache, part, None) for part in ("values", "calls")]
    return tuple(_place(storage) for storage in places)


def _place(storage: Any) -> Any:
    root, url = getattr(storage, "root", None), getattr(storage, "url", None)
    if root is not None:
        return os.path.realpath(root)
    return url or id(storage)


def _summary(tally: StoreTally, dry_run: bool, move: bool) -> str:
    verb = "would copy" if dry_run else "copied"
    values, calls = tally.values, tally.calls
    text = (
        f"{verb} {values.copied} values and {calls.copied} calls "
        f"({values.skipped} values and {calls.skipped} calls were there already)"
    )
    if move and not dry_run:
        text += f"; removed {values.removed} values and {calls.removed} calls from the source"
    failed = {**values.failed, **calls.failed}
    if failed:
        text += f"; {len(failed)} entries could not be copied: " + ", ".join(
            f"{key} ({why})" for key, why in sorted(failed.items())[:5]
        )
    return text


def add_commands(commands: Commands) -> None:
    """Register ``copy``."""
    p = commands.add_parser(
        "copy", help="copy a store into another (any backends)", description=copy.__doc__
    )
    p.add_argument("source", metavar="SRC", help="the store to copy: a name, a path or a URL")
    p.add_argument("target", metavar="DST", help="the store to copy into: a name, a path or a URL")
    p.add_argument(
        "--template",
        default=None,
        help="make DST a directory of this template (pickle, sql, hdf5)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    p.add_argument("--overwrite", action="store_true", help="copy entries DST holds already too")
    p.add_argument(
        "--move", action="store_true", help="remove what was copied from SRC, once DST holds it"
    )
    p.set_defaults(run=copy)
