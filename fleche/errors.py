"""Every exception and warning fleche raises, each also a built-in type.

Messages say what failed, where, what was expected and what to do; the
structured parts are kept as attributes so the command line can render
them without parsing text.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Sequence

#: Frames in these files are fleche's own: a warning is attributed to the first frame outside.
_OWN = (os.path.dirname(os.path.abspath(__file__)) + os.sep, contextlib.__file__)


class FlecheError(Exception):
    """Base class of every fleche error."""


_NO_VALUE = object()


class FlecheWarning(UserWarning):
    """Base class of every fleche warning."""


class CacheWarning(FlecheWarning):
    """The cache could not do its part; the user's result was kept anyway."""


class CorruptEntryWarning(FlecheWarning):
    """A stored entry could not be read and was treated as a miss."""


def warn(message: str, category: type[Warning] | None = None) -> None:
    """Issue a warning attributed to the user's line, the first caller outside fleche.

    A fixed ``stacklevel`` points into fleche (or ``contextlib``) whenever a
    warning is raised through a different number of frames, e.g. from a
    storage under a cache under the decorator.  ``category`` defaults to
    :class:`FlecheWarning`.
    """
    frame = sys._getframe(1)
    level = 2  # the caller of this function
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_OWN):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category or FlecheWarning, stacklevel=level)


class Indigestible(FlecheError, TypeError):
    """A value has no digest rule.

    ``path`` is where the value sits inside the digested object, e.g.
    ``arguments['cfg']['solver'][2]``.  ``args[0]`` is the offending value
    itself (as in the 0.22 release), or its type where the value is not at
    hand; ``str(error)`` is the message.
    """

    def __init__(
        self, type_: type, path: str = "", reason: str = "", *, value: object = _NO_VALUE
    ) -> None:
        self.type = type_
        self.path = path
        self.reason = reason
        self.value = type_ if value is _NO_VALUE else value
        super().__init__(self.value, self._message())

    def __str__(self) -> str:
        return self._message()

    def _message(self) -> str:
        where = f" at {self.path}" if self.path else ""
        why = f" ({self.reason})" if self.reason else ""
        name = f"{self.type.__module__}.{self.type.__qualname__}"
        hook = "register a hook with fleche.digest.add_hook"
        method = "give the class a __digest__ method"
        if self.path.startswith("arguments"):  # an argument can also be left out of the key
            fixes = f"{hook}, {method}, or ignore the argument"
        else:
            fixes = f"{hook} or {method}"
        return f"cannot digest an object of type {name}{where}{why}; {fixes}"

    def located(self, prefix: str) -> Indigestible:
        """The same error with ``prefix`` put in front of its path."""
        return Indigestible(self.type, prefix + self.path, self.reason, value=self.value)


class AmbiguousDigestError(FlecheError, ValueError):
    """A short digest matches more than one stored key."""

    def __init__(self, prefix: str, candidates: Sequence[str], needed: int) -> None:
        self.prefix = prefix
        self.candidates = list(candidates)
        self.needed = needed
        shown = ", ".join(self.candidates[:5]) + (" …" if len(self.candidates) > 5 else "")
        super().__init__(
            f"digest prefix {prefix!r} is ambiguous: it matches {len(self.candidates)} keys "
            f"({shown}); give at least {needed} characters"
        )


class SaveError(FlecheError):
    """A value or call could not be stored."""


class ConfigError(FlecheError, ValueError):
    """A configuration file, cache name or storage spec is wrong.

    ``file`` and ``key`` say where, when it is known (``key`` as in
    ``[project].layers[1].root``).
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        super().__init__(message)


class Rejected(FlecheError):
    """A cache's policy refused an operation (read-only, unstorable); the 0.22 name.

    Catch this to handle every refusal; :class:`ReadOnlyError` is the one
    fleche raises for writes to a read-only cache.
    """


class ReadOnlyError(Rejected, PermissionError):
    """A write was attempted on a read-only cache or storage."""


class NoMatch(FlecheError, IndexError):
    """A query that had to match exactly one call matched none (``QueryIterator.only``)."""


class SeveralMatches(FlecheError, LookupError, ValueError):
    """A query that had to match exactly one call matched several (``QueryIterator.only``).

    A ``ValueError`` as in the 0.22 release, and a ``LookupError`` like
    :class:`NoMatch`, so ``except LookupError`` catches both outcomes.
    """


class SignatureError(FlecheError, ValueError):
    """Data that must be signed is unsigned, tampered or signed with an unknown key.

    The data was not deserialized.  Storages report such an entry as a miss
    with a :class:`CorruptEntryWarning`.
    """
