"""The functions a store holds and how many calls each has, counted in the background.

No template query counts calls per function, so the catalog asks the
store's pages (:mod:`fleche.ui.paging`) to count them, which SQLite does
from its index of functions; on any other store it reads every call record
once (records only, never a value).  Either way it runs in a thread started
with the server; the index page shows what has been counted so far and
says when the count is still running, so the first page is fast on a store
of any size.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Catalog", "Function", "function_id", "parse_function_id"]


@dataclass(frozen=True)
class Function:
    """A stored function: where it lives and how many calls of it were counted."""

    module: str | None
    name: str
    calls: int

    @property
    def ident(self) -> str:
        """The ``module:name`` of its page."""
        return function_id(self.module, self.name)


def function_id(module: str | None, name: str) -> str:
    """``module:name``; ``:name`` for a function without a module."""
    return f"{module or ''}:{name}"


def parse_function_id(ident: str) -> tuple[str | None, str]:
    """``(module, name)`` from ``module:name``; ``ValueError`` without a name."""
    module, colon, name = ident.partition(":")
    if not colon or not name:
        raise ValueError(f"{ident!r} is not module:name")
    return module or None, name


class Catalog:
    """Call counts per function, refreshed by a background scan of the call records."""

    def __init__(self, cache: Any, max_age: float = 30.0, pages: Any = None) -> None:
        self._cache, self._pages = cache, pages
        self._counted = threading.Event()
        self._max_age = max_age
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str | None, str]] = Counter()
        self._parameters: dict[tuple[str | None, str], tuple[str, ...]] = {}
        self._scanned = 0
        self._finished: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start a scan unless one runs or the last one is fresh."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            fresh = self._finished is not None and time.monotonic() - self._finished < self._max_age
            if running or fresh:
                return
            self._thread = threading.Thread(
                target=self._scan, name="fleche-ui-catalog", daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the first count; whether it is done."""
        return self._counted.wait(timeout)

    def idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for all background work (counts, then argument names)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not (thread and thread.is_alive())

    @property
    def complete(self) -> bool:
        """Whether the counts cover every call record (as of the last scan)."""
        return self._counted.is_set()

    @property
    def scanned(self) -> int:
        """Call records read by the running (or last) scan."""
        return self._scanned

    def functions(self) -> list[Function]:
        """The functions seen so far, by module and name."""
        with self._lock:
            counts: Mapping[tuple[str | None, str], int] = dict(self._counts)
        return [
            Function(module, name, n)
            for (module, name), n in sorted(counts.items(), key=lambda i: (i[0][0] or "", i[0][1]))
        ]

    def total(self) -> int | None:
        """Every call record, if the last scan is complete."""
        return self._scanned if self.complete else None

    def count(self, module: str | None, name: str) -> int | None:
        """The calls of one function, if the last complete scan counted them."""
        if not self.complete:
            return None
        return self._counts.get((module, name), 0)

    def parameters(self, module: str | None, name: str) -> tuple[str, ...] | None:
        """The argument names the scan met in the calls of a function, in order of first sight."""
        return self._parameters.get((module, name))

    def _scan(self) -> None:
        try:
            counted = self._pages.counts() if self._pages is not None else None
        except Exception:  # the store cannot count: read its records instead
            counted = None
        if counted is None:
            self._read_records()
            return
        self._publish(Counter(counted), sum(counted.values()), finished=True)
        found = self._pages.parameters()
        with self._lock:
            self._parameters.update(found)

    def _read_records(self) -> None:
        counts: Counter[tuple[str | None, str]] = Counter()
        scanned = 0
        try:
            for call in self._cache.query(expired=True):
                record = call.digested_call
                function = (record.module, record.name)
                counts[function] += 1
                known = self._parameters.get(function, ())
                if not known or not set(known).issuperset(record.arguments):  # e.g. a new version
                    self._parameters[function] = tuple(dict.fromkeys((*known, *record.arguments)))
                scanned += 1
                if scanned % 5000 == 0:
                    self._publish(counts, scanned, finished=False)
        finally:  # a store that fails mid-scan still shows what was counted
            self._publish(counts, scanned, finished=True)

    def _publish(self, counts: Counter, scanned: int, finished: bool) -> None:
        with self._lock:
            if finished or self._finished is None:  # a refresh replaces the counts only when done
                self._counts = Counter(counts)
                self._scanned = scanned
            if finished:
                self._finished = time.monotonic()
                self._counted.set()
