"""``fleche export`` / ``fleche import``: a store to a portable archive and back.

An archive is a zip file (random access, so an import reads each value
only when a call needs it) holding, through the public cache API only:

- ``calls/<key>.pickle``: the fields of each call record (a dict);
- ``values/<digest>.pickle``: each argument and result value, once;
- ``fleche-archive.json``: the format, its version and the counts.

Any backend exports to and imports from the same archive, so it is also
how a store moves between backends (pickle files to PostgreSQL, …).
Importing unpickles the archive: import only archives you trust.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import tempfile
import time
import zipfile
from typing import Any

from .. import __version__
from ..call import DigestedCall, LazyCall
from ..digest import Digest
from .context import BadInput, Commands, Context

__all__ = ["FORMAT", "VERSION", "add_commands"]

FORMAT = "fleche-archive"
VERSION = 1
MANIFEST = "fleche-archive.json"


def export(ctx: Context) -> int:
    """Write the calls (of one function, or all) and their values into a zip archive."""
    if ctx.args.func:
        records = list(ctx.calls_of(ctx.args.func, expired=True))
    else:
        records = [call.digested_call for call in ctx.cache.query(expired=True)]
    directory = os.path.dirname(os.path.abspath(ctx.args.archive))
    handle, temporary = tempfile.mkstemp(prefix=".fleche-export-", suffix=".zip", dir=directory)
    os.close(handle)
    written: set[Digest] = set()
    skipped = []
    try:
        with (
            zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive,
            ctx.progress("exporting") as update,
        ):
            for done, record in enumerate(records, 1):
                try:  # every value first: a call whose values cannot be read is left out whole
                    values = {
                        d: ctx.cache.load_value(d) for d in record.values() if d not in written
                    }
                except Exception as err:
                    skipped.append({"key": record.key(), "error": f"{type(err).__name__}: {err}"})
                    continue
                for key, value in values.items():
                    archive.writestr(f"values/{key}.pickle", pickle.dumps(value, protocol=5))
                    written.add(key)
                fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
                archive.writestr(f"calls/{record.key()}.pickle", pickle.dumps(fields, protocol=5))
                update(done, len(records))
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "fleche": __version__,
                "created": time.time(),
                "calls": len(records) - len(skipped),
                "values": len(written),
            }
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        os.replace(temporary, ctx.args.archive)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    data = {**manifest, "archive": ctx.args.archive, "skipped": skipped}
    text = (
        f"exported {manifest['calls']} calls and {manifest['values']} values to {ctx.args.archive}"
    )
    ctx.emit(
        data,
        lambda: ctx.say(text + (f"; {len(skipped)} unreadable calls left out" if skipped else "")),
    )
    return 1 if skipped else 0


class _ArchiveValues:
    """The values of an archive, loaded when a call needs them (what a :class:`LazyCall` reads)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def load(self, key: Digest | str) -> Any:
        try:
            data = self.archive.read(f"values/{key}.pickle")
        except KeyError:
            raise KeyError(f"the archive has no value {key}") from None
        return pickle.loads(data)


def import_(ctx: Context) -> int:
    """Store the calls of an archive, with their values, in the store (calls already there are kept)."""
    cache = ctx.cache
    try:
        archive = zipfile.ZipFile(ctx.args.archive)
    except (OSError, zipfile.BadZipFile) as err:
        raise BadInput(f"{ctx.args.archive} is not a fleche archive: {err}") from None
    with archive:
        manifest = _manifest(archive, ctx.args.archive)
        members = [name for name in archive.namelist() if name.startswith("calls/")]
        values = _ArchiveValues(archive)
        imported = kept = 0
        with ctx.progress("importing") as update:
            for done, name in enumerate(members, 1):
                record = DigestedCall(**pickle.loads(archive.read(name)))
                if not ctx.args.overwrite and cache.contains(record.key()):
                    kept += 1
                else:
                    cache.save(LazyCall(record, values))
                    imported += 1
                update(done, len(members))
    data = {
        "archive": ctx.args.archive,
        "format_version": manifest["version"],
        "imported": imported,
        "kept": kept,
    }
    ctx.emit(data, lambda: ctx.say(f"imported {imported} calls ({kept} already stored were kept)"))
    return 0


def _manifest(archive: zipfile.ZipFile, path: str) -> dict[str, Any]:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except (KeyError, ValueError):
        raise BadInput(f"{path} is not a fleche archive (no readable {MANIFEST})") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("version"), int):
        raise BadInput(f"{path} is not a fleche archive ({MANIFEST} names no {FORMAT} version)")
    if manifest["version"] > VERSION:
        raise BadInput(
            f"{path} is archive format {manifest['version']}; this fleche reads up to {VERSION}: upgrade"
        )
    return manifest


def add_commands(commands: Commands) -> None:
    """Register ``export`` and ``import``."""
    p = commands.add_parser(
        "export", help="write a store to a portable archive", description=export.__doc__
    )
    p.add_argument("archive", help="the zip file to write")
    p.add_argument(
        "--func", default=None, help="only the calls of this function (name or module.name)"
    )
    p.set_defaults(run=export)

    p = commands.add_parser(
        "import", help="read an archive into a store", description=import_.__doc__
    )
    p.add_argument("archive", help="a zip file written by fleche export")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the calls the store already holds"
    )
    p.set_defaults(run=import_, create=True)
