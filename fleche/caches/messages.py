"""Words for messages: where a storage keeps its entries, what a value is, why a store failed.

A failed store step costs the user a warning, never the result
(:meth:`~fleche.caches.preparing.FinishesPreparedCalls.save_guarded`); this module words that
warning and keeps a medium that refuses every write (a full disk, a quota,
a read-only mount) from repeating it on every call.
"""

from __future__ import annotations

import errno
import reprlib
import time
from typing import Any

from ..errors import SaveError
from ..storage.redaction import redact_url

__all__ = ["failure_message", "summarize", "where_stored"]

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def where_stored(storage: Any) -> str:
    """Where a storage keeps its entries, for messages: its root, its URL or its kind."""
    for name in ("root", "url"):
        value = getattr(storage, name, None)
        if value is not None:
            return redact_url(str(value))
    return type(storage).__name__


def summarize(value: Any) -> str:
    """A short readable description of a value: its repr, abridged; shape and dtype of arrays, shape and columns of tables."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return f"{type(value).__name__}(shape={shape}, dtype={dtype})"
    columns = getattr(value, "columns", None)
    if isinstance(shape, tuple) and columns is not None:  # a DataFrame: its columns, not its repr
        return f"{type(value).__name__}(shape={shape}, columns={_repr.repr(list(columns))})"
    try:
        return _repr.repr(value)
    except Exception as err:  # a broken __repr__ must not break the explanation
        return f"<{type(value).__name__}: repr failed: {type(err).__name__}>"


def failure_message(
    cache: Any, err: BaseException, what: str, key: str | None, then: str
) -> str | None:
    """The warning about a failed store step of ``cache``, or ``None`` if it was just said.

    It reads "fleche could not ``what`` (call ``key``): the cause; ``then``"
    and suggests cloudpickle when a lambda or a local function could not be
    pickled.
    """
    quiet = _quieting(cache, err)
    if quiet is None:
        return None  # said a moment ago: a full or read-only disk fails every call
    where = f" (call {key[:12]})" if key else ""
    return f"fleche could not {what}{where}: {_cause(err)}; {then}{quiet}"


#: Words of a pickling error about a function pickle finds only by name.
_UNNAMED_FUNCTION = ("<lambda>", "<locals>", "local object")
_CLOUDPICKLE_HINT = (
    'a lambda or a function defined inside another pickles with serializer="cloudpickle" '
    "(pip install 'fleche[cloudpickle]')"
)


def _cause(err: BaseException) -> str:
    """The failure in words (a :class:`SaveError` already names its part), hinting at cloudpickle where it helps."""
    text = str(err) if isinstance(err, SaveError) else f"{type(err).__name__}: {err}"
    if any(word in text for word in _UNNAMED_FUNCTION):
        text += f"; {_CLOUDPICKLE_HINT}"
    return text


#: A medium that refuses every write: one warning per cache and cause every 30 s.
_MEDIUM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_QUIET_SECONDS = 30.0
_quiet_until: dict[tuple[int, str, int], float] = {}


def _quieting(cache: Any, err: BaseException) -> str | None:
    """What to add to the warning about ``err`` (``""`` usually), or ``None`` to stay silent.

    A full disk, a quota or a read-only mount fails every save in a row; the
    user hears of it once, then again every 30 s while it lasts.
    """
    cause: BaseException | None = err
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in _MEDIUM_ERRNOS):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return ""
    key, now = (id(cache), str(cache), cause.errno), time.monotonic()
    if now < _quiet_until.get(key, 0.0):
        return None
    _quiet_until[key] = now + _QUIET_SECONDS
    return f" (the same failure is not reported again for {_QUIET_SECONDS:.0f} s)"
