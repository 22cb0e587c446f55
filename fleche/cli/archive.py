"""``fleche export`` / ``fleche import``: a store to a portable archive and back.

An archive is a zip file (random access, so an import reads each value
only when a call needs it) holding, through the public cache API only:

- ``calls/<key>.pickle``: the fields of each call record (a dict);
- ``values/<digest>.pickle``: each argument and result value, once;
- ``fleche-archive.json``: the format, its version and the counts.

Any backend exports to and imports from the same archive, so it is also
how a store moves between backends (pickle files to PostgreSQL, …), and
both go through the transfer ``fleche copy`` uses
(:func:`fleche.storage.transfer.copy_store`): a call is written after its
values, and one whose values cannot be read is left out whole.
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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import __version__
from ..caches import CacheBase
from ..call import DigestedCall
from ..storage.transfer import CallEntries, Entries, StoreTally, ValueEntries, copy_store
from .context import BadInput, Commands, Context

__all__ = ["FORMAT", "VERSION", "ZipEntries", "add_commands", "store_entries"]

FORMAT = "fleche-archive"
VERSION = 1
MANIFEST = "fleche-archive.json"


class ZipEntries:
    """One side of an archive (``values/`` or ``calls/``) as transfer entries.

    Read from an archive opened for reading, written to one opened for
    writing; a call record is kept as the dict of its fields, a value as
    itself, each pickled.
    """

    def __init__(self, archive: zipfile.ZipFile, folder: str) -> None:
        self.archive, self.folder = archive, folder
        self.written: set[str] = set()

    def keys(self) -> list[str]:
        head = f"{self.folder}/"
        return [
            n[len(head) : -len(".pickle")] for n in self.archive.namelist() if n.startswith(head)
        ]

    def has(self, key: str) -> bool:
        return key in self.written

    def read(self, key: str) -> Any:
        try:
            data = self.archive.read(f"{self.folder}/{key}.pickle")
        except KeyError:
            raise KeyError(f"the archive has no {self.folder[:-1]} {key}") from None
        loaded = pickle.loads(data)
        return DigestedCall(**loaded) if self.folder == "calls" else loaded

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        for key, item in items:
            if self.folder == "calls":
                item = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
            self.archive.writestr(f"{self.folder}/{key}.pickle", pickle.dumps(item, protocol=5))
            self.written.add(key)

    def remove(self, keys: Sequence[str]) -> None:
        raise TypeError("an archive is never emptied")


class _Loaded:
    """The values of any cache (also a composition) and the records already queried from it."""

    def __init__(self, cache: CacheBase, records: dict[str, DigestedCall]) -> None:
        self.cache, self.records = cache, records

    def values(self) -> Entries:
        return _Reader(self.cache.load_value)

    def calls(self) -> Entries:
        return _Reader(self.records.__getitem__, self.records)


class _Reader:
    """Read-only entries through ``read`` (a transfer source that is listed by its caller)."""

    def __init__(self, read: Callable[[str], Any], keys: Iterable[str] = ()) -> None:
        self.read, self._keys = read, keys

    def keys(self) -> Iterable[str]:
        return self._keys

    def has(self, key: str) -> bool:
        return False

    def write(self, items: Sequence[tuple[str, Any]]) -> None:
        raise TypeError("a source only")

    def remove(self, keys: Sequence[str]) -> None:
        raise TypeError("a source only")


def store_entries(cache: CacheBase, spec: str) -> tuple[Entries, Entries]:
    """The values and the calls of one store, as transfer entries; :class:`BadInput` for a composition."""
    values, calls = getattr(cache, "values", None), getattr(cache, "calls", None)
    if values is None or calls is None:
        raise BadInput(
            f"{spec} is a {type(cache).__name__}, not one store: name one of its stores instead"
        )
    return ValueEntries(values), CallEntries(calls)


def export(ctx: Context) -> int:
    """Write the calls (of one function, or all) and their values into a zip archive."""
    if ctx.args.func:
        found = ctx.calls_of(ctx.args.func, expired=True)
    else:
        found = (call.digested_call for call in ctx.cache.query(expired=True))
    records = {record.key(): record for record in found}
    source = _Loaded(ctx.cache, records)
    directory = os.path.dirname(os.path.abspath(ctx.args.archive))
    handle, temporary = tempfile.mkstemp(prefix=".fleche-export-", suffix=".zip", dir=directory)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            target = (ZipEntries(archive, "values"), ZipEntries(archive, "calls"))
            with ctx.progress("exporting") as update:
                tally = copy_store(
                    (source.values(), source.calls()),
                    target,
                    list(records),
                    progress=lambda stage, done, total: update(done, total),
                )
            manifest = _manifest_of(tally)
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        os.replace(temporary, ctx.args.archive)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    skipped = [{"key": k, "error": e} for k, e in tally.calls.failed.items()]
    data = {**manifest, "archive": ctx.args.archive, "skipped": skipped}
    text = (
        f"exported {manifest['calls']} calls and {manifest['values']} values to {ctx.args.archive}"
    )
    ctx.emit(
        data,
        lambda: ctx.say(text + (f"; {len(skipped)} unreadable calls left out" if skipped else "")),
    )
    return 1 if skipped else 0


def _manifest_of(tally: StoreTally) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "fleche": __version__,
        "created": time.time(),
        "calls": tally.calls.copied,
        "values": tally.values.copied,
    }


def import_(ctx: Context) -> int:
    """Store the calls of an archive, with their values, in the store (calls already there are kept)."""
    target = store_entries(ctx.cache, ctx.args.cache or "the default store")
    try:
        archive = zipfile.ZipFile(ctx.args.archive)
    except (OSError, zipfile.BadZipFile) as err:
        raise BadInput(f"{ctx.args.archive} is not a fleche archive: {err}") from None
    with archive:
        manifest = _manifest(archive, ctx.args.archive)
        source = (ZipEntries(archive, "values"), ZipEntries(archive, "calls"))
        with ctx.progress("importing") as update:
            tally = copy_store(
                source,
                target,
                overwrite=ctx.args.overwrite,
                progress=lambda stage, done, total: update(done, total),
            )
    imported, kept = tally.calls.copied, tally.calls.skipped
    data = {
        "archive": ctx.args.archive,
        "format_version": manifest["version"],
        "imported": imported,
        "kept": kept,
    }
    ctx.emit(data, lambda: ctx.say(f"imported {imported} calls ({kept} already stored were kept)"))
    return 1 if tally.calls.failed else 0


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
