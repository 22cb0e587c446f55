"""When a store of files was last verified: one small file beside its entries.

``verify(since_last=True)`` (``fleche verify --changed``) checks only the
values written after the last verify began; that time is kept here, in
``root/verified`` (a name no key has), so every process sees it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from .base import StorageBackend
from .file_leftovers import temporary_sibling

__all__ = ["VERIFIED", "VerifiedMark"]

#: The file under the root that holds when the last verify began (epoch seconds).
VERIFIED = "verified"


@dataclasses.dataclass(frozen=True)
class VerifiedMark(StorageBackend):
    """``last_verified``/``record_verified`` of a storage of files (uses the backend's ``root``)."""

    def _mark(self) -> str:
        return os.path.join(self.root, VERIFIED)  # type: ignore[attr-defined]

    def last_verified(self) -> float | None:
        """When the last recorded verify of this storage began (epoch seconds), if any."""
        try:
            with open(self._mark(), encoding="ascii") as mark:
                return float(mark.read())
        except (OSError, ValueError):
            return None

    def record_verified(self, started: float) -> bool:
        """Record that a verify began at ``started``; whether it could be recorded."""
        temporary = temporary_sibling(self._mark())
        try:
            os.makedirs(os.path.dirname(temporary), exist_ok=True)
            with open(temporary, "w", encoding="ascii") as mark:
                mark.write(repr(started))
            os.replace(temporary, self._mark())
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return False
        return True
