"""Read-only caches: every write refused with a :class:`~fleche.errors.ReadOnlyError` that says why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..call import Call, DigestedCall, LazyCall, PreparedCall
from ..digest import Digest
from ..errors import ReadOnlyError
from ..expiry import Duration
from .forms import sealed

__all__ = ["RefusingWrites"]


class RefusingWrites:
    """Mixin for read-only caches: every write raises, ``gc`` only reports.

    Put it in front of a cache class (``class Frozen(RefusingWrites, Cache)``);
    ``ReadOnlyMixin`` is its 0.22 name.  A class may say why through
    :meth:`_refuse` and what a dry ``gc`` would collect through :meth:`_garbage`.
    """

    @property
    def read_only(self) -> bool:
        """Always ``True``: this cache is never written."""
        return True

    def _refuse(self, what: str) -> ReadOnlyError:
        """The error a refused write raises; says why and what to do instead."""
        return ReadOnlyError(f"cannot {what}: {self} is read-only")

    def _garbage(self, grace: Duration | None) -> set[Digest]:
        """What ``gc`` would remove (the class this mixin is put in front of, asked dry)."""
        return super().gc(True, grace=grace)  # type: ignore[misc]

    def save(self, call: Call | LazyCall) -> Digest:
        """Refused: raises :class:`~fleche.errors.ReadOnlyError`."""
        raise self._refuse("store a call")

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        """Refused: raises :class:`~fleche.errors.ReadOnlyError`."""
        raise self._refuse(f"store the call {sealed(record, arguments, key)[2][:12]}")

    def evict(self, key: Digest | str) -> None:
        """Refused: raises :class:`~fleche.errors.ReadOnlyError`."""
        raise self._refuse(f"evict {str(key)[:12]}")

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> set[Digest]:
        """What garbage collection would remove; only ``dry_run=True`` is allowed."""
        if not dry_run:
            raise self._refuse("collect garbage (dry_run=True only reports)")
        return self._garbage(grace)
