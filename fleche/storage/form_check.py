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
import functools
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..digest import Digest, digest
from ._legacy_forms import Node, Ref
from .base import StorageBackend, examined
from .destructuring import Digested, DigestedDict, DigestedIterable, stored_parts
from .read_ahead import read_ahead

__all__ = ["READERS", "Examined", "FormCheck"]

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

        With ``since`` (epoch seconds), a file last changed before then is
        skipped, not read.  Failures are those of a load: a damaged entry
        warns and gives a ``KeyError``, a vanished one a plain ``KeyError``,
        a denied read its ``PermissionError``.  What ``verify`` reads the
        store with: the files are read and decoded on :data:`READERS`
        threads while this one digests.
        """
        read = functools.partial(_read_chunk, self._read, self._file, since)  # type: ignore[attr-defined]
        chunks = _chunked(keys, _CHUNK)
        where = self._root  # type: ignore[attr-defined]
        for chunk in read_ahead(read, chunks, READERS) if READERS else map(read, chunks):
            for key, form, error in chunk:
                if form is _LATER:  # past the chunk's budget: read now, not ahead
                    ((key, form, error),) = read([key])
                outcome: Examined
                if error is None:
                    outcome = None if form is _SKIPPED else self._examined(key, form)
                elif isinstance(error, FileNotFoundError):
                    outcome = KeyError(key)
                elif isinstance(error, PermissionError):  # not the entry's fault (as in a load)
                    outcome = error
                else:
                    outcome = self._unreadable(key, where, error)  # type: ignore[attr-defined]
                yield key, outcome

    def _examined(self, key: Digest, form: Any) -> Examined:
        try:
            return self._examine_form(key, form)
        except Exception as err:  # cannot be digested here, or a part is unreadable
            return err


#: Threads that read and decode files for :meth:`FormCheck.examine_many` (0: none, read here).
READERS = 2
#: Entries a reader thread reads at a time, and about how many bytes of values at most:
#: the entries past that are read when their turn comes, so large values are not read ahead.
_CHUNK = 256
_BUDGET = 1 << 25
#: Stand for the form of a file skipped (unchanged since) and of one to read later.
_SKIPPED = object()
_LATER = object()

Read = Callable[[Digest, str], Any]
#: A key, its stored form (or a marker) and the exception reading it raised.
Form = tuple[Digest, Any, Exception | None]


def _chunked(keys: Iterable[Digest], size: int) -> Iterator[list[Digest]]:
    keys = iter(keys)
    while chunk := list(itertools.islice(keys, size)):
        yield chunk


def _read_chunk(
    read: Read, file: Callable[[Digest], str], since: float | None, keys: list[Digest]
) -> list[Form]:
    """Each key's stored form, up to the chunk's budget of bytes (see :data:`Form`)."""
    done: list[Form] = []
    budget = _BUDGET
    for key in keys:
        path = file(key)
        if budget < 0:
            done.append((key, _LATER, None))
        elif since is not None and _older(path, since):
            done.append((key, _SKIPPED, None))
        else:
            done.append(found := _read_one(read, key, path))
            budget -= _weight(found[1])
    return done


def _weight(form: Any) -> int:
    """About how many bytes a stored form holds (arrays and frames by their data)."""
    size = getattr(form, "nbytes", None)  # an array, also a view of the file's buffer
    return size if type(size) is int else sys.getsizeof(form)  # a frame counts its data


def _read_one(read: Read, key: Digest, path: str) -> Form:
    try:
        return key, read(key, path), None
    except Exception as err:
        return key, None, err


def _older(path: str, since: float) -> bool:
    """Whether the file ``path`` was last changed before ``since`` (a missing one is not)."""
    try:
        return os.stat(path).st_mtime < since
    except OSError:
        return False
