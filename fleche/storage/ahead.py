"""Values saved ahead: a write started before a call's body runs, waited for before its record.

A cache stores a call's arguments before its body runs (the body could
mutate them) and the call's record after it.  A storage whose writes are
slow requests (an object store) may take an argument's bytes at once and
send them while the body runs: :meth:`SavesAhead.save_ahead`.  The cache
calls :meth:`SavesAhead.settle` with the keys a record names before it saves
the record, so a record never names a value whose write failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ..digest import Digest

__all__ = ["SavesAhead"]


class SavesAhead:
    """``save_ahead`` and ``settle`` of every value storage: by default a plain ``save``."""

    #: Whether :meth:`save_ahead` may leave a write running (an upload), or
    #: held for the record's transaction (small values in the call database).
    #: Where it may not, a cache saves arguments with ``save`` and never
    #: settles: the miss path of every other storage pays no call for this.
    saves_ahead: ClassVar[bool] = False

    def save_ahead(self, value: Any, key: Digest) -> Digest:
        """Store ``value`` under ``key``, its bytes taken now; the write may finish later.

        :meth:`settle` waits for it; a load in this process meanwhile waits
        for it too.  This default writes at once.
        """
        return self.save(value, key)  # type: ignore[attr-defined]

    def settle(self, keys: Iterable[Digest]) -> None:
        """Wait until the values saved ahead under ``keys`` are stored; raise if one could not be.

        This default has nothing to wait for.
        """

    def commits_with(self, calls: Any) -> bool:
        """Whether the next record ``calls`` saves in this thread commits what is saved ahead.

        A storage keeping small values in the database of ``calls`` holds a
        miss's values for the record's own transaction: one write, and the
        record never visible without them; a cache then need not
        :meth:`settle`.  ``False`` by default.
        """
        return False
