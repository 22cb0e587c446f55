"""Readers of the stores the fleche 0.22 release wrote: files, HDF5 bags and SQL tables.

The 0.22 templates lay a store out as ``ROOT/values`` beside either
``ROOT/calls`` (the ``pickle``, ``cloudpickle``, ``dill`` and
``bagofholding_hdf`` templates) or ``ROOT/calls.db`` (the ``sql`` template;
its calls may also live in PostgreSQL).  A directory of entries holds one
file per key (a pickle-family file, or an HDF5 bag), or HDF5 files
``{prefix}.h5`` holding one group per key.  Readers only read: nothing of
the old store is changed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .unpickling import LegacyRecord, is_legacy_name, legacy_class, legacy_keys, loads, plain

__all__ = [
    "BagFiles",
    "CallReader",
    "Entries",
    "FileCalls",
    "LegacyCall",
    "LegacyStore",
    "PickleFiles",
    "SqlCalls",
    "open_legacy",
]

#: 0.22 keys are SHA-256 digests in hexadecimal.
KEY_LENGTH = 64
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class LegacyCall:
    """One call record of a 0.22 store, its values named by their 0.22 keys."""

    key: str
    name: str
    module: str | None
    version: str | int | None
    code_digest: str | None
    arguments: dict[str, str]
    result: str | None
    metadata: dict[str, dict[str, Any]]


class Entries(Protocol):
    """A directory of 0.22 entries: ``keys()`` lists them, ``read(key)`` gives one (``KeyError`` if missing)."""

    def keys(self) -> list[str]: ...

    def read(self, key: str) -> Any: ...


class CallReader(Protocol):
    """The call records of a 0.22 store."""

    def keys(self) -> list[str]: ...

    def load(self, key: str) -> LegacyCall: ...


def _is_key(name: str) -> bool:
    return len(name) == KEY_LENGTH and all(c in "0123456789abcdef" for c in name)


@dataclasses.dataclass(frozen=True)
class PickleFiles:
    """One pickle, cloudpickle or dill file per key; signed with one of ``signing_keys`` if any are given."""

    root: Path
    signing_keys: tuple[bytes, ...] = ()

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if _is_key(p.name) and p.is_file())

    def read(self, key: str) -> Any:
        try:
            data = (self.root / key).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"the 0.22 store has no entry {key} in {self.root}") from None
        return loads(data, self.signing_keys)


# bagofholding finds the classes of a bag by name through the module
# ``pyiron_snippets.retrieve``.  While a thread reads a 0.22 bag, a stand-in
# for that module resolves names of the old package to our stand-ins in that
# thread only, so that no other thread's bag meets them.
_bag_lock = threading.Lock()


class _Retrieve:
    """Stands in for ``pyiron_snippets.retrieve`` in bagofholding while one thread reads a 0.22 bag."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._reader = threading.get_ident()

    def get_importable_string_from_string_reduction(self, *args: Any) -> Any:
        return self._real.get_importable_string_from_string_reduction(*args)

    def import_from_string(self, path: str) -> Any:
        module, _, name = path.rpartition(".")
        if threading.get_ident() == self._reader and is_legacy_name(module):
            return legacy_class(module, name)
        return self._real.import_from_string(path)


def _load_bag(path: Path) -> Any:
    from bagofholding import H5Bag, content

    with _bag_lock:
        real = content.retrieve
        content.retrieve = _Retrieve(real)
        try:  # the packages that wrote the bag are not ours: no version checks
            return H5Bag(path, bag_version_validator="none").load(version_validator="none")
        finally:
            content.retrieve = real


@dataclasses.dataclass(frozen=True)
class BagFiles:
    """HDF5 bags: one file per key (``prefix == 0``) or groups in ``{key[:prefix]}.h5``."""

    root: Path
    prefix: int

    def keys(self) -> list[str]:
        if self.prefix == 0:
            return PickleFiles(self.root).keys()
        import h5py

        found = []
        for path in sorted(self.root.glob("*.h5")):
            if len(path.stem) != self.prefix:
                continue
            try:
                with h5py.File(path, "r") as bag:
                    found.extend(name for name in bag if _is_key(name))
            except OSError:  # its keys are unknown: listed by its file name, read as a failure
                found.append(path.name)
        return sorted(found)

    def read(self, key: str) -> Any:
        if not _is_key(key):
            raise OSError(f"{self.root / key} is not a readable HDF5 file: its entries are lost")
        path = self.root / key if self.prefix == 0 else self.root / f"{key[: self.prefix]}.h5"
        if not path.is_file():
            raise KeyError(f"the 0.22 store has no entry {key} in {self.root}")
        return _load_bag(path if self.prefix == 0 else path / key)


def entries(root: Path, keys: tuple[bytes, ...] = ()) -> Entries:
    """The reader for a directory of 0.22 entries, told apart by their names and first bytes."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory of a fleche 0.22 store")
    lengths = {len(p.stem) for p in root.glob("*.h5") if p.is_file()}
    if lengths:
        return _bags(root, max(lengths))
    for path in root.iterdir():
        if _is_key(path.name) and path.is_file():
            with path.open("rb") as file:
                if file.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC:
                    return _bags(root, 0)
            break
    return PickleFiles(root, keys)


def _bags(root: Path, prefix: int) -> BagFiles:
    try:
        import bagofholding  # noqa: F401
        import h5py  # noqa: F401
    except ImportError:
        raise ImportError(
            f"{root} holds HDF5 bags of the fleche 0.22 release: pip install 'fleche[hdf5]'"
        ) from None
    return BagFiles(root, prefix)


def record(key: str, obj: Any) -> LegacyCall:
    """A call record from the object a 0.22 file storage kept under ``key``."""
    if not isinstance(obj, LegacyRecord):
        raise TypeError(f"the entry is a {type(obj).__name__}, not a 0.22 call record")
    fields = vars(obj)
    result = fields.get("result")
    return LegacyCall(
        key=key,
        name=fields["name"],
        module=fields.get("module"),
        version=fields.get("version"),
        code_digest=fields.get("code_digest"),
        arguments={str(n): str(d) for n, d in fields["arguments"].items()},
        result=None if result is None else str(result),
        metadata=plain(fields.get("metadata")),
    )


@dataclasses.dataclass(frozen=True)
class FileCalls:
    """Call records kept one per key by a file storage (pickle family or HDF5)."""

    records: Entries

    def keys(self) -> list[str]:
        return self.records.keys()

    def load(self, key: str) -> LegacyCall:
        return record(key, self.records.read(key))


class SqlCalls:
    """Call records in the 0.22 tables ``calls``, ``arguments`` and ``metadata`` (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import MetaData, Table, create_engine

        self.engine = create_engine(url)
        #: The URL without its password: what reports show.
        self.url = self.engine.url.render_as_string(hide_password=True)
        tables = MetaData()
        try:
            self.calls, self.arguments, self.metadata = (
                Table(name, tables, autoload_with=self.engine)
                for name in ("calls", "arguments", "metadata")
            )
        except Exception as err:
            self.engine.dispose()
            raise FileNotFoundError(f"{self.url} holds no fleche 0.22 call tables: {err}") from None

    def keys(self) -> list[str]:
        from sqlalchemy import select

        with self.engine.connect() as connection:
            return list(connection.scalars(select(self.calls.c.key).order_by(self.calls.c.key)))

    def load(self, key: str) -> LegacyCall:
        from sqlalchemy import select

        calls, arguments, metadata = self.calls, self.arguments, self.metadata
        with self.engine.connect() as connection:
            row = connection.execute(select(calls).where(calls.c.key == key)).one_or_none()
            if row is None:
                raise KeyError(f"{self.url} has no call {key}")
            named = connection.execute(
                select(arguments.c.name, arguments.c.value)
                .where(arguments.c.call_key == key)
                .order_by(arguments.c.position)
            ).all()
            meta = connection.execute(
                select(metadata.c.name, metadata.c.data).where(metadata.c.call_key == key)
            ).all()
        return LegacyCall(
            key=key,
            name=row.name,
            module=row.module,
            version=None if row.version is None else json.loads(row.version),
            code_digest=row.code_digest,
            arguments={name: value for name, value in named},
            result=row.result,
            metadata={name: _json(data) for name, data in meta},
        )

    def close(self) -> None:
        self.engine.dispose()


def _json(data: Any) -> dict[str, Any]:
    return dict(json.loads(data) if isinstance(data, str) else data or {})


@dataclasses.dataclass
class LegacyStore:
    """A 0.22 store opened for reading: its call records and its values."""

    where: str
    calls: CallReader
    values: Entries

    def close(self) -> None:
        """Let go of a database connection, if any."""
        if isinstance(self.calls, SqlCalls):
            self.calls.close()


def open_legacy(
    source: str | Path,
    values: str | Path | None = None,
    secret_key: str | bytes | Sequence[str | bytes] | None = None,
) -> LegacyStore:
    """Open a 0.22 store: a store directory, its ``calls.db``, or a database URL.

    ``values`` names the directory of the values where it does not follow
    from ``source`` (always for a PostgreSQL URL).  ``secret_key`` (the
    store's ``FLECHE_SECRET_KEY``: hexadecimal, ``:`` between keys) makes
    every pickle-family entry prove its signature.
    """
    keys = legacy_keys(secret_key)
    text = str(source)
    if "://" in text:
        url = text
        beside = (
            Path(text.split(":///", 1)[1]).expanduser().parent
            if text.startswith("sqlite:///")
            else None
        )
    else:
        path = Path(text).expanduser()
        if path.is_dir() and not (path / "calls.db").is_file():
            if not (path / "calls").is_dir():
                raise _not_a_store(text)
            directory = Path(values).expanduser() if values is not None else path / "values"
            return LegacyStore(
                text, FileCalls(entries(path / "calls", keys)), entries(directory, keys)
            )
        database = path / "calls.db" if path.is_dir() else path
        if not database.is_file():
            raise _not_a_store(text)
        url, beside = f"sqlite:///{database.absolute()}", database.parent
    if values is None and beside is None:
        raise ValueError(f"{text} holds call records only: name the directory of their values")
    directory = Path(values).expanduser() if values is not None else beside / "values"
    calls = SqlCalls(url)
    try:
        return LegacyStore(calls.url, calls, entries(directory, keys))
    except BaseException:
        calls.close()
        raise


def _not_a_store(text: str) -> FileNotFoundError:
    return FileNotFoundError(f"{text} is not a fleche 0.22 store (no calls/ and no calls.db)")
