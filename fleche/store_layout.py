"""What kind of store a directory holds: its own record, else what it contains.

A store directory opened through a template (``pickle``, ``sql``,
``hdf5``) records its layout in :data:`MANIFEST` (``fleche-store.json``)
at its root the first time it is opened: the template and the options
that decide how entries are written.  Opening the directory by its path
reads that record back, so an HDF5 store is never mistaken for pickle
files whose values are all "missing" (and then "repaired" away).

A store made before the record existed is recognised by its content
(:func:`sniff`): ``calls.db`` or ``calls/`` for the calls, and the
fan-out of ``values/`` (three-character directories for pickle files,
two-character ones or ``*.h5`` files for HDF5).  A directory holding
neither is refused rather than guessed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .storage.small_values import INLINE_LIMIT

__all__ = [
    "FILE_TEMPLATES",
    "FORMAT",
    "MANIFEST",
    "check_layout",
    "holds_store",
    "inline_limit_of",
    "layout_of",
    "record_layout",
    "sniff",
]

#: The file at a store's root that says how it is laid out.
MANIFEST = "fleche-store.json"
#: Version of the manifest's format; a newer one is refused, not misread.  2: small values
#: are kept in the call database (``inline_limit``), which fleche before 0.23 cannot read.
FORMAT = 2
#: The templates that keep a store in a directory (``root``), with a manifest.
FILE_TEMPLATES = ("pickle", "sql", "hdf5")
#: Table keys a manifest keeps: the ones that decide how entries are written and found.
LAYOUT_KEYS = (
    "template",
    "calls",
    "url",
    "serializer",
    "compression",
    "compression_level",
    "inline_limit",
)
_HEX = frozenset("0123456789abcdef")


def _layout(table: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """The part of a template table a manifest records; a SQLite file as a path relative to ``root``."""
    layout = {k: table[k] for k in LAYOUT_KEYS if k in table}
    if layout.get("template") == "hdf5":
        layout.setdefault("calls", "sql")
    url = layout.pop("url", None)
    if not url:
        return layout
    if "://" in url and not url.startswith("sqlite"):
        layout["calls_on_server"] = True  # never the URL itself: it may carry a password
        return layout
    path = Path(url.partition(":///")[2] if "://" in url else url)
    if path != root / "calls.db":
        layout["url"] = os.path.relpath(path, root) if path.is_relative_to(root) else str(path)
    return layout


def record_layout(root: Path, table: Mapping[str, Any]) -> None:
    """Write ``root``'s manifest unless it has one; a store it cannot be written to is left alone.

    The file is written under a temporary name and linked into place, so
    a reader never sees half of it and two processes creating the same
    store cannot overwrite each other's record.
    """
    final = root / MANIFEST
    if final.exists():
        return
    layout = _layout(table, root)
    version = FORMAT if layout.get("inline_limit") else 1  # older fleche still reads format 1
    text = json.dumps({"fleche_store": version, **layout}, indent=2, sort_keys=True)
    temporary = root / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text + "\n", encoding="utf-8")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, final)
    except OSError:
        pass  # a read-only or full file system: the store is still recognised by its content
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: the store's layout record cannot be read: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("fleche_store"), int):
        raise ConfigError(f"{path}: not a fleche store layout record")
    if data["fleche_store"] > FORMAT:
        raise ConfigError(
            f"{path}: written by a newer fleche (layout format {data['fleche_store']}); upgrade fleche"
        )
    if data.get("calls_on_server"):
        raise ConfigError(
            f"{path.parent}: its calls live on a database server; open it by its name in "
            "fleche.toml, or with a table giving the url"
        )
    data.pop("fleche_store")
    return data


def _widths(directory: Path) -> set[int | str]:
    """Widths of the hex directory names in ``directory``, and ``"h5"`` if it holds shared HDF5 files."""
    found: set[int | str] = set()
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if entry.name.endswith(".h5"):
            found.add("h5")
        elif entry.is_dir() and _HEX.issuperset(entry.name):
            found.add(len(entry.name))
    return found


def sniff(root: Path) -> dict[str, Any] | None:
    """The layout of a store without a manifest, from what it holds; ``None`` if it holds none.

    :class:`ConfigError` when the content contradicts itself.
    """
    calls = (
        "sql" if (root / "calls.db").is_file() else "pickle" if (root / "calls").is_dir() else None
    )
    widths = _widths(root / "values")
    if widths & {2, "h5"} and 3 in widths:
        raise ConfigError(
            f"{root}: values/ holds both pickle (3-character) and HDF5 (2-character) fan-out "
            "directories; open it with a table naming its template"
        )
    values = "hdf5" if widths & {2, "h5"} else "pickle" if 3 in widths else None
    if calls is None:
        if values is not None:
            raise ConfigError(
                f"{root}: holds values but no calls.db or calls/; open it with a table naming its template"
            )
        return None
    if values == "hdf5":
        return {"template": "hdf5", "calls": calls}
    return {"template": "sql" if calls == "sql" else "pickle"}


def layout_of(root: Path) -> dict[str, Any] | None:
    """The template table of the store at ``root`` (without ``root``): its manifest, else :func:`sniff`."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        return sniff(root)
    layout = _read_manifest(manifest)
    layout.pop("inline_limit", None)  # read from the manifest when the store is opened
    if "url" in layout:
        layout["url"] = str(root / layout["url"])  # an absolute path stays as it is
    return layout


def inline_limit_of(root: Path) -> int:
    """How large a value the store at ``root`` keeps in its call database when none is asked for.

    The limit its manifest records; 0 for a store made before small values
    were kept there (every value a file, readable by older fleche); the
    default for a new store.
    """
    manifest = root / MANIFEST
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8")).get("inline_limit", 0)
        except (OSError, ValueError, AttributeError):
            return 0  # opening the store reports the damaged manifest
        return recorded if type(recorded) is int else 0
    return 0 if root.is_dir() and sniff(root) is not None else INLINE_LIMIT


def holds_store(root: Path) -> bool:
    """Whether ``root`` is a store directory (has a manifest, or calls of a known layout)."""
    return root.is_dir() and ((root / MANIFEST).is_file() or sniff(root) is not None)


def check_layout(root: Path, table: Mapping[str, Any]) -> None:
    """:class:`ConfigError` if ``table`` opens the store at ``root`` with another layout than it has."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        return
    recorded = _read_manifest(manifest)
    wanted = _layout(table, root)
    if (recorded.get("template"), recorded.get("calls")) != (
        wanted["template"],
        wanted.get("calls"),
    ):
        raise ConfigError(
            f"{root} was created as a {_name(recorded)} store ({MANIFEST}), "
            f"but is opened as a {_name(wanted)} one; its entries would read as missing"
        )


def _name(layout: Mapping[str, Any]) -> str:
    template = layout.get("template", "?")
    return (
        f"{template} (calls {layout.get('calls', 'sql')})" if template == "hdf5" else str(template)
    )
