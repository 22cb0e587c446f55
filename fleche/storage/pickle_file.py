"""Pickled files: values and call records, one self-describing file per key.

Each file is a small header, a check and the payload::

    magic "\\x89FLE" | format version | flags | codec | name length | serializer name
    check: HMAC-SHA256 tag (32 bytes) when signed, else xxh3-64 (8 bytes)
    payload: the serializer's bytes, compressed when the flags say so

The check covers the storage key, the header and the payload, so a
truncated, garbled or renamed file is detected before anything is
unpickled.  A reader follows the header, not its own settings, to
decompress and choose the serializer; it only insists on a valid signature
when it has a key.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xxhash

from .. import serializers
from ..digest import Digest
from ..errors import ConfigError, SignatureError
from ..security import TAG_SIZE, SecretKey, Signer, secret_keys
from ..serializers import Serializer, compress, decompress, get_serializer, uninitialized
from .base import CallMixin, ValueMixin
from .children_log import ChildrenLog
from .destructuring import INLINE_DEPTH, DestructuringMixin
from .entry_pages import CHECK_SIZE
from .file import FileStorage
from .form_check import FormCheck
from .small_values import Encoded, HeldWithRecord, SmallValues
from .thread_safe import PerKeyLockMixin
from .verified_mark import VerifiedMark

__all__ = [
    "CallPickleFile",
    "FORMAT_VERSION",
    "MAGIC",
    "PickleCodec",
    "PickleFileBackend",
    "ValuePickleFile",
    "register_serializer",
]

MAGIC = b"\x89FLE"
FORMAT_VERSION = 1
SIGNED = 0x01
COMPRESSED = 0x02
#: magic, format version, flags, codec id, length of the serializer name.
_HEAD = struct.Struct("<4sBBBB")
#: Files up to this size are read and written with one system call.
_SMALL = 1 << 16
_OPEN = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
#: Codec ids in the header: stable, never reused.
_CODEC_IDS = {"zlib": 1, "bz2": 2, "lzma": 3}
_CODEC_NAMES = {v: k for k, v in _CODEC_IDS.items()}
_FLAT = frozenset({int, float, str, bytes, bool, type(None)})  # no buffer to frame: plain pickle


class UnreadableEntry(ValueError):
    """The bytes of a file are not an entry this reader can trust (internal)."""


def _check(key: bytes, head: bytes, payload: bytes | memoryview) -> bytes:
    """The xxh3-64 of an unsigned entry: catches torn, garbled and misplaced files, not forgers."""
    hasher = xxhash.xxh3_64(key)
    hasher.update(head)
    hasher.update(payload)
    return hasher.digest()


@functools.lru_cache(maxsize=32)
def _registered(name: str) -> Serializer:
    return get_serializer(name)


@dataclasses.dataclass(frozen=True)
class PickleCodec:
    """The bytes of one entry (header, check, payload): shared by pickle files and object stores.

    A mixin placed before the storage backend; its settings are keyword-only.

    Parameters
    ----------
    serializer
        ``"pickle"`` (default), ``"cloudpickle"``, ``"dill"``, another
        registered name, or a :class:`~fleche.serializers.Serializer`.
    compress
        Compress new entries with zlib (the 0.22 switch; ``compression``
        names another codec).
    compression, compression_level
        ``"zlib"``, ``"bz2"`` or ``"lzma"`` to compress new entries (and
        the codec's level); entries are read whatever they were written with.
    secret_key
        Sign every entry with HMAC-SHA256 and refuse, as a corrupt miss, any
        entry not validly signed with one of the keys.  A key or a sequence
        of keys (the first signs, all verify); ``None`` reads
        ``FLECHE_SECRET_KEY`` (comma-separated), an empty sequence turns
        signing off.  See :mod:`fleche.security`.
    """

    _: dataclasses.KW_ONLY
    secret_key: SecretKey | None = dataclasses.field(default=None, repr=False)
    serializer: str | Serializer = "pickle"
    compress: bool = False
    compression: str | None = None
    compression_level: int | None = None
    _serializer: Serializer = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _signer: Signer | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _head: bytes = dataclasses.field(default=b"", init=False, repr=False, compare=False)
    _compression: str | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        after = getattr(super(), "__post_init__", None)  # the storage's own, if it has one
        if after is not None:
            after()
        serializer = get_serializer(self.serializer)
        name = serializer.name.encode()
        if not 0 < len(name) < 256:
            raise ConfigError(
                f"a serializer name must have 1 to 255 bytes; got {serializer.name!r}"
            )
        codec_name = self.compression or ("zlib" if self.compress else None)
        if codec_name is not None and codec_name not in _CODEC_IDS:
            raise ConfigError(
                f"unknown compression {self.compression!r}; choose one of {sorted(_CODEC_IDS)}"
            )
        keys = secret_keys(self.secret_key)
        signer = Signer(keys) if keys else None
        flags = (SIGNED if signer else 0) | (COMPRESSED if codec_name else 0)
        codec = _CODEC_IDS[codec_name] if codec_name else 0
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, flags, codec, len(name)) + name
        object.__setattr__(self, "_serializer", serializer)
        object.__setattr__(self, "_signer", signer)
        object.__setattr__(self, "_head", head)
        object.__setattr__(self, "_compression", codec_name)

    def with_serializer(self, name: str | Serializer) -> Any:
        """The same store writing new entries with another serializer (every entry stays readable)."""
        return dataclasses.replace(self, serializer=name)

    def with_pickle(self) -> Any:
        """The same store writing with the standard pickle."""
        return self.with_serializer("pickle")

    def with_cloudpickle(self) -> Any:
        """The same store writing with cloudpickle (lambdas, closures, ``__main__`` classes)."""
        return self.with_serializer("cloudpickle")

    def with_dill(self) -> Any:
        """The same store writing with dill."""
        return self.with_serializer("dill")

    def _encode(self, value: Any, key: Digest) -> tuple[bytes, bytes]:
        """The entry of ``value`` under ``key`` (an ``Encoded`` one as it is): head and check, payload.

        Two parts, so a large payload is written without a copy.  The check is computed
        here, not by :func:`_check`, and a scalar pickled here: 3 calls less on a miss.
        """
        kind = type(value)
        if kind is Encoded:
            return value
        serializer = self._serializer
        if kind in _FLAT and type(serializer) is serializers.PickleSerializer:
            payload = pickle.dumps(value, protocol=serializer.protocol)  # what its dumps makes
        else:
            payload = serializer.dumps(value)
        if self._compression:
            payload = compress(self._compression, payload, self.compression_level)
        head = self._head
        name = key.encode()
        if self._signer is not None:
            return head + self._signer.sign(name, head, payload), payload
        hasher = xxhash.xxh3_64(name)
        hasher.update(head)
        hasher.update(payload)
        return head + hasher.digest(), payload

    def _plain_head(self) -> bytes | None:
        """The header of the entries read a page at a time (:mod:`.entry_pages`): unsigned,
        uncompressed, pickled; ``None`` if this storage writes otherwise."""
        pickled = type(self._serializer) is serializers.PickleSerializer
        return self._head if pickled and self._signer is self._compression is None else None

    def _decode(self, data: bytes, key: bytes) -> Any:
        """The object in the bytes of one file, or an exception saying why they cannot be trusted."""
        head = self._head
        start = len(head)
        if data[:start] == head and self._signer is None and self._compression is None:
            # Written as this storage writes (unsigned, uncompressed): no header to parse.
            check, payload = (
                data[start : start + CHECK_SIZE],
                memoryview(data)[start + CHECK_SIZE :],
            )
            if _check(key, head, payload) != check:
                raise UnreadableEntry("the checksum does not match (truncated or damaged)")
            return self._serializer.loads(payload)
        if len(data) < _HEAD.size or data[:4] != MAGIC:
            raise UnreadableEntry(f"not a fleche pickle file ({len(data)} bytes, no header)")
        _, version, flags, codec, length = _HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise UnreadableEntry(
                f"written in format {version}; this fleche reads format {FORMAT_VERSION}"
            )
        start = _HEAD.size + length
        head = bytes(data[:start])
        view = memoryview(data)
        if flags & SIGNED:
            if self._signer is None:
                raise SignatureError(
                    "the entry is signed but no secret key is configured to verify it"
                )
            tag, payload = view[start : start + TAG_SIZE], view[start + TAG_SIZE :]
            if not self._signer.verify(tag, key, head, payload):
                raise SignatureError(
                    "the signature does not match (tampered, truncated or an unknown key)"
                )
        else:
            if self._signer is not None:
                raise SignatureError(
                    "the entry is unsigned and this storage only reads signed entries"
                )
            check, payload = view[start : start + CHECK_SIZE], view[start + CHECK_SIZE :]
            if _check(key, head, payload) != check:
                raise UnreadableEntry("the checksum does not match (truncated or damaged)")
        if flags & COMPRESSED:
            if codec not in _CODEC_NAMES:
                raise UnreadableEntry(f"unknown compression codec id {codec}")
            payload = decompress(_CODEC_NAMES[codec], payload)
        name = head[_HEAD.size :].decode()
        serializer = self._serializer if name == self._serializer.name else _registered(name)
        return serializer.loads(payload)


@dataclasses.dataclass(frozen=True)
class PickleFileBackend(PickleCodec, FileStorage):
    """Objects pickled into files (see :class:`FileStorage` for the layout and writes).

    ``PickleFileBackend(root, *, secret_key=None, serializer="pickle", compress=False, ...)``:
    the root by position or keyword, everything else by keyword; the
    entries and their settings are :class:`PickleCodec`'s.
    """

    def compress_all(self) -> int:
        """Rewrite every entry compressed (with this storage's codec, else zlib); returns how many."""
        return self._recode(dataclasses.replace(self, compression=self._compression or "zlib"))

    def decompress_all(self) -> int:
        """Rewrite every entry uncompressed; returns how many."""
        return self._recode(dataclasses.replace(self, compress=False, compression=None))

    def _recode(self, target: PickleFileBackend) -> int:
        """Rewrite every entry as ``target`` (this store with other settings) writes it."""
        done = 0
        for key in list(self.list()):
            with self._operation_context(key):
                try:
                    entry = FileStorage.get(self, key)  # as stored: no parts loaded
                except KeyError:
                    continue  # evicted meanwhile, or damaged (warned)
                self._rewrite(target, entry, key)
            done += 1
        return done

    def _rewrite(self, target: PickleFileBackend, entry: Any, key: Digest) -> None:
        """Write ``entry`` where it is kept, as ``target`` encodes it."""
        FileStorage._store(target, entry, key, self._file(key))

    def _to_file(self, value: Any, path: Path) -> None:
        # docstring inherited
        self._write(value, self._key_of(path), str(path))

    def _from_file(self, path: Path) -> Any:
        # docstring inherited
        return self._read(self._key_of(path), str(path))

    def _write(self, value: Any, key: Digest, temporary: str) -> None:
        # docstring inherited
        fd = os.open(temporary, _CREATE, 0o666)  # first: a missing directory fails before pickling
        try:
            start, payload = self._encode(value, key)
            if len(payload) <= _SMALL:
                data = start + payload
                written = os.write(fd, data)  # one system call
                if written < len(data):
                    _write_all(fd, data[written:])
            else:
                _write_all(fd, start)
                _write_all(fd, payload)  # no copy of a large payload
        finally:
            os.close(fd)

    def _read(self, key: Digest, file: str) -> Any:
        # docstring inherited
        return self._decode(_read_all(file), key.encode())


def register_serializer(name: str, loader: Callable[[], Any]) -> None:
    """Make ``serializer=name`` use ``loader()``, anything with ``dumps`` and ``loads``.

    The 0.22 form, e.g. ``register_serializer("dill", lambda: importlib.import_module("dill"))``;
    :func:`fleche.serializers.register_serializer` takes a whole
    :class:`~fleche.serializers.Serializer` instead.  A name registered again is replaced.
    """
    serializers.register_serializer(
        name, lambda: serializers.ModuleSerializer(name, loader()), replace=True
    )
    _registered.cache_clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(file: str) -> bytes | memoryview:
    """The whole file: one system call for a small one (the hit path)."""
    fd = os.open(file, _OPEN)
    try:
        data = os.read(fd, _SMALL)
        if len(data) < _SMALL:
            return data
        return _read_large(fd, data)
    finally:
        os.close(fd)


def _read_large(fd: int, first: bytes) -> memoryview:
    """A large file read again, once, into a writable buffer the loaded value may keep.

    The payload starts on a 16-byte boundary (the allocator's alignment) and out-of-band
    buffers at multiples of :data:`~fleche.serializers.BUFFER_ALIGNMENT` from it: arrays
    load as aligned views of it, no second copy (benchmarks/bench_big_values.py).
    """
    size = os.fstat(fd).st_size
    pad = -_payload_offset(first) % 16
    view = memoryview(uninitialized(pad + size))[pad:]
    done = 0
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as handle:
        while done < size and (count := handle.readinto(view[done:])):
            done += count
    return view[:done]  # shorter if truncated meanwhile: the check refuses it


def _payload_offset(first: bytes) -> int:
    """Where the payload of the entry starting with ``first`` begins (0 if it has no header)."""
    if len(first) < _HEAD.size or first[:4] != MAGIC:
        return 0
    _, _, flags, _, length = _HEAD.unpack_from(first)
    return _HEAD.size + length + (TAG_SIZE if flags & SIGNED else CHECK_SIZE)


@dataclasses.dataclass(frozen=True)
class ValuePickleFile(
    HeldWithRecord,
    ValueMixin,
    DestructuringMixin,
    FormCheck,
    ChildrenLog,
    VerifiedMark,
    PerKeyLockMixin,
    SmallValues,
    PickleFileBackend,
):
    """Values in pickle files, e.g. ``ValuePickleFile("store/values")``.

    Containers are split into deduplicated children, whose keys are logged
    for gc (:mod:`~fleche.storage.children_log`); an entry already on disk
    is never rewritten (its name is its content).  Given a ``database``
    (the store's :class:`~fleche.storage.sql.Sql`), entries of at most
    ``inline_limit`` encoded bytes are kept in it instead of in files
    (:mod:`~fleche.storage.small_values`).
    """

    content_addressed = True
    remaining_depth: int = dataclasses.field(default=INLINE_DEPTH, kw_only=True)


@dataclasses.dataclass(frozen=True)
class CallPickleFile(CallMixin, PerKeyLockMixin, PickleFileBackend):
    """Call records in pickle files, e.g. ``CallPickleFile("store/calls")``.

    Saving a call again (a rerun) replaces its record atomically.
    """

    leases = FileStorage.leases  # lease files beside the records, not CallStorage's none
