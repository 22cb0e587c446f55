"""A destructured value checked from its stored form: one read, its parts not loaded.

A list, tuple or dict is stored with each part kept apart replaced by its
digest, and a digest digests like the value it names, so the stored form
digests to the container's key with no part loaded: ``verify`` reads every
value once, each part as itself.  Other forms are rebuilt to be digested.

:meth:`FormCheck.examine_many` is what ``verify`` reads a store of files
with: one ``open``/``read``/``close`` per entry, its checksum checked over
the bytes read, and none of the per-key work of a load (no lock, no
expansion of the key, no second read of a container).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..digest import Digest, digest
from ._legacy_forms import Node, Ref
from .base import StorageBackend, examined
from .destructuring import Digested, DigestedDict, DigestedIterable, stored_parts

__all__ = ["Examined", "FormCheck"]

#: Types whose stored form is the value itself, with no part stored apart (nothing derives from them).
_PLAIN = frozenset({int, float, complex, bool, str, bytes, type(None), list, tuple, dict})
#: What examining one entry gave: ``(digest, parts)`` as :meth:`~fleche.storage.base.ValueStorage.examine`
#: returns it, the exception it raised, or ``None`` when it was skipped (unchanged since).
Examined = tuple[Digest | None, list[Digest]] | Exception | None


@dataclasses.dataclass(frozen=True)
class FormCheck(StorageBackend):
    """``examine`` from the stored form; place right after ``DestructuringMixin`` in the bases.

    :meth:`examine_many` reads the files of a :class:`~fleche.storage.file.FileStorage`.
    """

    def _examine(self, key: Digest) -> tuple[Digest | None, list[Digest]]:
        # docstring inherited
        return self._examine_form(key, super().get(key))  # type: ignore[safe-super]  # as stored

    def _examine_form(self, key: Digest, form: Any) -> tuple[Digest | None, list[Digest]]:
        """The digest and parts of ``form``, the entry of ``key`` as stored (below the mixin)."""
        parts = stored_parts(form, key)
        kind = type(form)
        if kind is DigestedIterable or kind is DigestedDict:
            return digest(form.items), parts
        if parts or kind is Node or kind is Ref or isinstance(form, Digested):
            return examined(lambda: self.get(key), parts)  # rebuilt: its parts loaded
        return digest(form), parts

    def examine_many(
        self, keys: Iterable[Digest], since: float | None = None
    ) -> Iterator[tuple[Digest, Examined]]:
        """Each of ``keys`` with what :meth:`examine` gives for it (see :data:`Examined`), in order.

        With ``since`` (epoch seconds), an entry last written before then is
        skipped, not read.  Failures are those of a load: a damaged entry
        warns and gives a ``KeyError``, a vanished one a plain ``KeyError``,
        a denied read its ``PermissionError``.  What ``verify`` reads the
        store with.  Sorted keys (as verify gives them) are read with one
        range scan of the small entries kept in the call database
        (:meth:`~fleche.storage.small_values.SmallValues.small_rows`), the
        others from their files.  (Reading on threads made it slower: the
        decoding holds the GIL, benchmarks/bench_scale.py.)
        """
        keys = list(keys)
        scan = getattr(self, "small_rows", None)
        if scan is None or not keys or not _ascending(keys):
            read, rows = self._read, iter(())  # type: ignore[attr-defined]
        else:  # a key the scan does not give has no row: read from its file alone
            read, rows = self._read_below, scan(keys[0], keys[-1])  # type: ignore[attr-defined]
        row = next(rows, None)
        for key in keys:
            while row is not None and row[0] < key:
                row = next(rows, None)
            if row is not None and row[0] == key:
                yield key, self._examine_row(key, row[1], row[2], since)
            else:
                yield key, self._examine_file(key, read, since)

    def _examine_row(
        self, key: Digest, data: bytes, stored: float, since: float | None
    ) -> Examined:
        """What :meth:`examine` gives for the small entry ``data`` of ``key``, or ``None`` if unchanged."""
        if since is not None and stored < since:
            return None
        try:
            form = self._decode(data, key.encode())  # type: ignore[attr-defined]
        except Exception as err:
            return self._unreadable(key, self._root, err)  # type: ignore[attr-defined]
        return self._examined(key, form)

    def _examine_file(self, key: Digest, read: Any, since: float | None) -> Examined:
        """What :meth:`examine` gives for the entry of ``key`` read by ``read(key, path)``."""
        path = self._file(key)  # type: ignore[attr-defined]
        if since is not None and _older(path, since):
            return None
        try:
            form = read(key, path)
        except FileNotFoundError:
            return KeyError(key)
        except PermissionError as err:  # not the entry's fault (as in a load)
            return err
        except Exception as err:
            return self._unreadable(key, self._root, err)  # type: ignore[attr-defined]
        return self._examined(key, form)

    def _examined(self, key: Digest, form: Any) -> Examined:
        try:
            kind = type(form)
            if kind in _PLAIN:  # most leaves: a form of its own, with no part and no more tests
                return digest(form), []
            if kind is DigestedIterable or kind is DigestedDict:  # most containers: no more tests
                return digest(form.items), form.child_digests()
            return self._examine_form(key, form)
        except Exception as err:  # cannot be digested here, or a part is unreadable
            return err


def _ascending(keys: list[Digest]) -> bool:
    """Whether ``keys`` are sorted (verify's are): what a merge with a range scan needs."""
    return all(map(str.__le__, keys, keys[1:]))


def _older(path: str, since: float) -> bool:
    """Whether the file ``path`` was last changed before ``since`` (a missing one is not)."""
    try:
        return os.stat(path).st_mtime < since
    except OSError:
        return False
