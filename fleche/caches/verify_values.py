"""The value half of a verify: every listed value examined once, what is wrong with each.

A storage that reads many entries at once (a store of pickle files:
:meth:`~fleche.storage.form_check.FormCheck.examine_many`) is asked for
them all in one pass; any other is asked entry by entry through
:meth:`~fleche.storage.base.ValueStorage.examine`.  Either way a sound
leaf costs one comparison here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..digest import Digest
from ..errors import CorruptEntryWarning, Indigestible
from ..storage.base import ValueStorage
from .findings import (
    BROKEN_PART,
    CORRUPT_VALUE,
    MISMATCH,
    MISSING_PART,
    READ_ERROR,
    UNVERIFIABLE,
    Problem,
)

if TYPE_CHECKING:
    from .verify_worker import Helper

__all__ = ["ValuePass", "attempt", "corrupt_since", "failure"]

T = TypeVar("T")


def failure(store: str, key: Digest, err: Exception, corrupt: list, kind: str) -> Problem | None:
    """The problem a failed read stands for (``None``: the entry vanished meanwhile)."""
    if isinstance(err, KeyError) and not corrupt:
        return None
    if isinstance(err, OSError):  # permissions, a lost mount: not the entry's fault
        return Problem(store, key, READ_ERROR, f"{type(err).__name__}: {err}", fixable=False)
    why = str(corrupt[0].message) if corrupt else f"{type(err).__name__}: {err}"
    return Problem(store, key, kind, why)


def attempt(
    caught: list[warnings.WarningMessage], read: Callable[[], T]
) -> tuple[T | None, Exception | None, list]:
    """``read()``, its exception if any, and the corrupt-entry warnings it raised (into ``caught``)."""
    mark = len(caught)
    try:
        result, error = read(), None
    except Exception as err:
        result, error = None, err
    return result, error, corrupt_since(caught, mark)


def corrupt_since(caught: list[warnings.WarningMessage], mark: int) -> list:
    """The corrupt-entry warnings among those recorded since ``mark``."""
    return [w for w in caught[mark:] if issubclass(w.category, CorruptEntryWarning)]


class ValuePass:
    """Examines the listed values of one storage, keeping what the record pass needs.

    ``present`` answers whether a key is stored (listed, or written since);
    ``caught`` is the list the verify's warnings are recorded in.
    """

    def __init__(
        self,
        values: ValueStorage,
        present: Callable[[Digest], bool],
        caught: list[warnings.WarningMessage],
    ) -> None:
        self.values = values
        self.present = present
        self.caught = caught
        #: The parts of each container examined: a container with a broken part is broken.
        self.parts: dict[Digest, list[Digest]] = {}

    def run(
        self, keys: list[Digest], since: float | None, tick: Callable[[int], Any]
    ) -> list[Problem]:
        """The problems of ``keys`` (sorted), each examined once; ``tick(1)`` after each."""
        many = getattr(self.values, "examine_many", None)
        source = many(keys, since) if callable(many) else _each(self.values, keys, since)
        problems: list[Problem] = []
        caught = self.caught
        mark = len(caught)
        for key, outcome in source:
            if type(outcome) is tuple:
                if outcome[0] != key or outcome[1]:  # else a sound leaf
                    problem = self.judge(key, *outcome)
                    if problem is not None:
                        problems.append(problem)
            elif outcome is not None:  # None: unchanged since, not read
                problem = self.failed(key, outcome, corrupt_since(caught, mark))
                if problem is not None:
                    problems.append(problem)
            mark = len(caught)
            tick(1)
        return problems

    def run_helped(self, helper: Helper, tick: Callable[[int], Any]) -> list[Problem]:
        """The problems of the keys given to ``helper``: the chunks its child read, and the rest."""
        problems: list[Problem] = []
        for chunk, found in helper.chunks_read():
            if found is None:  # left to this process
                problems += self.run(chunk, None, tick)
                continue
            examined, again = found
            for key, outcome in examined:
                problem = self.judge(Digest(key), *outcome)
                if problem is not None:
                    problems.append(problem)
            tick(len(chunk) - len(again))
            if again:  # failed or warned there: read here, to warn here
                problems += self.run(list(map(Digest, again)), None, tick)
        problems.sort(key=lambda p: p.key)
        return problems

    def judge(self, key: Digest, found: Digest | None, parts: list[Digest]) -> Problem | None:
        """What is wrong with a value read whole: its parts are missing or broken, or it changed."""
        if parts:
            self.parts[key] = parts
        missing = [part for part in parts if not self.present(part)]
        if missing:
            shown = ", ".join(p[:12] for p in missing[:5]) + (" …" if len(missing) > 5 else "")
            return Problem(
                "values",
                key,
                MISSING_PART,
                f"{len(missing)} of {len(parts)} parts missing ({shown})",
            )
        if found is None:
            return Problem("values", key, BROKEN_PART, "a part further down is missing")
        if found != key:
            return Problem(
                "values",
                key,
                MISMATCH,
                f"its content digests to {found[:12]}: changed after it was stored",
            )
        return None

    def failed(self, key: Digest, err: Exception, corrupt: list) -> Problem | None:
        """What a value that could not be examined stands for."""
        if isinstance(err, Indigestible):
            return Problem(
                "values", key, UNVERIFIABLE, f"cannot re-digest it here: {err}", fixable=False
            )
        problem = failure("values", key, err, corrupt, CORRUPT_VALUE)
        if problem is None and self.values.contains(key):  # a silent miss of a listed entry
            problem = Problem("values", key, CORRUPT_VALUE, "it is listed but reads as missing")
        return problem

    def broken_parts(self, problems: list[Problem]) -> list[Problem]:
        """The containers whose parts (or parts' parts) have a problem a repair removes."""
        broken = {p.key for p in problems if p.fixable}
        found: list[Problem] = []
        while True:
            more = [
                key
                for key, parts in self.parts.items()
                if key not in broken and not broken.isdisjoint(parts)
            ]
            if not more:
                return found
            broken.update(more)
            found += [Problem("values", key, BROKEN_PART, "a part is broken") for key in more]


def _each(
    values: ValueStorage, keys: Iterable[Digest], since: float | None
) -> Iterator[tuple[Digest, Any]]:
    """What :meth:`FormCheck.examine_many` gives, from any value storage, entry by entry."""
    for key in keys:
        if since is not None and (values.stored_at(key) or math.inf) < since:
            yield key, None  # unchanged since the verify that started then
            continue
        try:
            outcome: Any = values.examine(key)
        except Exception as err:
            outcome = err
        yield key, outcome
