"""Importing a 0.22 store: every call re-digested under our scheme, resumable, with a report.

Each 0.22 call record is read, its argument and result values are loaded
from the old store and digested again (xxh3-128), and the call is saved in
the target cache under the key our decorator computes for it, so that the
same call made with our package is a hit.  Names, arguments by name and
metadata are kept; the namespace ``"legacy"`` is added, holding the 0.22
key.  That namespace is also the journal that makes an import resumable: a
run skips the 0.22 calls the target already holds, so an interrupted import
run again finishes the job without doing anything twice.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..caches import CacheBase
from ..call import Call, DigestedCall, LazyCall, QueryCall
from ..digest import Digest, digest
from ..errors import Indigestible
from ..profile import version_text
from .stores import Entries, LegacyCall, LegacyStore, open_legacy
from .unpickling import mend

__all__ = ["PROVENANCE", "ImportReport", "Problem", "import_store"]

#: The metadata namespace of an imported call: ``{"release": "0.22", "key": <0.22 key>}``.
PROVENANCE = "legacy"
_RELEASE = "0.22"

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A 0.22 call that was not imported: its 0.22 key, what failed (``kind``) and why."""

    key: str
    kind: str
    detail: str


#: What each kind of problem means, for the summary.
KINDS = {
    "record": "unreadable call record",
    "value": "value missing or unreadable",
    "digest": "value our digests do not take",
    "store": "refused by the target",
}


@dataclasses.dataclass
class ImportReport:
    """What an import did: counts of calls, and every call it could not import (with why).

    ``total`` calls were found; ``imported`` were stored now, ``resumed``
    had been imported by an earlier run, ``kept`` were already in the
    target under the same key (left as they were); ``remaining`` are left
    for a next run (``limit``).  ``code_keyed`` of the imported calls were
    recorded with ``hash_code=True``: their 0.22 code digest cannot be
    matched, so our decorator computes each of them once more.
    """

    source: str
    total: int = 0
    imported: int = 0
    resumed: int = 0
    kept: int = 0
    remaining: int = 0
    code_keyed: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every call that was looked at is now in the target."""
        return not self.problems

    def counts(self) -> dict[str, int]:
        """How many calls failed, by kind of problem."""
        return dict(Counter(p.kind for p in self.problems))

    def to_dict(self, first: int | None = None) -> dict[str, Any]:
        """The report as plain data (``first``: only that many problems)."""
        fields = dataclasses.asdict(self)
        fields["problems"] = [dataclasses.asdict(p) for p in self.problems[:first]]
        fields["problem_counts"] = self.counts()
        fields["ok"] = self.ok
        return fields

    def summary(self, first: int = 5) -> str:
        """A few lines for a person: the counts, then the first problems."""
        lines = [
            f"imported {self.imported} of {self.total} calls from {self.source}"
            f" ({self.resumed} by an earlier run, {self.kept} already in the target"
            + (f", {self.remaining} left for a next run" if self.remaining else "")
            + ")"
        ]
        if self.code_keyed:
            lines.append(
                f"{self.code_keyed} calls were recorded with hash_code=True:"
                " their code digests cannot be carried over, so each is computed once more"
            )
        if self.problems:
            counts = ", ".join(f"{n} {KINDS.get(k, k)}" for k, n in self.counts().items())
            lines.append(f"{len(self.problems)} calls not imported: {counts}")
            lines += [f"  {p.key[:12]} {p.kind}: {p.detail}" for p in self.problems[:first]]
            if len(self.problems) > first:
                lines.append(f"  … and {len(self.problems) - first} more (--json lists them all)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _Failed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def import_store(
    source: str | Path | LegacyStore,
    target: CacheBase,
    *,
    values: str | Path | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    drop_versions: bool = False,
    secret_key: str | bytes | Sequence[str | bytes] | None = None,
) -> ImportReport:
    """Import the calls of a fleche 0.22 store into ``target``, re-digesting every value.

    Parameters
    ----------
    source
        A 0.22 store: its directory (any template), its ``calls.db``, or a
        database URL of its ``sql`` template (then ``values`` names the
        directory of its values).
    progress
        Called as ``progress(done, total)`` after each call.
    limit
        Import at most this many calls now; a next run goes on from there.
    drop_versions
        Leave the 0.22 version out: that release recorded the version of a
        function's package when the decorator named none, where ours records
        none.
    secret_key
        The ``FLECHE_SECRET_KEY`` the store was signed with (hexadecimal,
        ``:`` between keys): entries must then prove their signature.

    Calls that cannot be read, digested or stored are reported in the
    returned :class:`ImportReport`, never raised.
    """
    store = source if isinstance(source, LegacyStore) else open_legacy(source, values, secret_key)
    try:
        keys = store.calls.keys()
        report = ImportReport(store.where, total=len(keys))
        done = _imported_before(target)
        for position, key in enumerate(keys):
            if limit is not None and report.imported >= limit:
                report.remaining = len(keys) - position
                break
            if key in done:
                report.resumed += 1
            else:
                _import_call(store, key, target, drop_versions, report)
            if progress is not None:
                progress(position + 1, len(keys))
        return report
    finally:
        store.close()


def _imported_before(target: CacheBase) -> set[str]:
    """The 0.22 keys of the calls an earlier import stored in ``target`` (the journal)."""
    template = QueryCall(metadata={PROVENANCE: {"release": _RELEASE}})
    return {call.metadata[PROVENANCE]["key"] for call in target.query(template, expired=True)}


def _value_loader(entries: Entries) -> Callable[[str], Any]:
    """Reads the 0.22 values of one call by key, parts of split containers included.

    What it read is kept for that call only: values can be large, and calls
    sharing one are far apart in the order of their keys.
    """

    @functools.cache
    def load(key: str) -> Any:
        return mend(entries.read(key), load)

    return load


def _import_call(
    store: LegacyStore,
    key: str,
    target: CacheBase,
    drop_versions: bool,
    report: ImportReport,
) -> None:
    try:
        try:
            legacy = store.calls.load(key)
        except Exception as err:
            raise _Failed("record", _reason(err)) from None
        call = _convert(legacy, _value_loader(store.values), drop_versions)
        try:
            record = call.digested()
        except Indigestible as err:
            raise _Failed("digest", _reason(err)) from None
        if target.contains(record.key()):
            report.kept += 1
            return
        try:
            target.save(LazyCall(record, _Loaded(call, record)))
        except Exception as err:
            raise _Failed("store", _reason(err)) from None
    except _Failed as failed:
        report.problems.append(Problem(key, failed.kind, str(failed)))
        return
    report.imported += 1
    report.code_keyed += legacy.code_digest is not None


def _convert(legacy: LegacyCall, load: Callable[[str], Any], drop_versions: bool) -> Call:
    """Our call for a 0.22 record, its values loaded from the old store."""
    arguments = {
        name: _value(load, key, f"argument {name!r}") for name, key in legacy.arguments.items()
    }
    result = None if legacy.result is None else _value(load, legacy.result, "the result")
    provenance: dict[str, Any] = {"release": _RELEASE, "key": legacy.key}
    code = None
    if legacy.code_digest is not None:
        # Our code digests cannot be made from theirs: a key no decorator computes.
        provenance["code_digest"] = str(legacy.code_digest)
        code = digest(("fleche 0.22 code digest", legacy.code_digest))
    runtime = legacy.metadata.get("runtime", {})
    return Call(
        name=legacy.name,
        # hash_module=False left the module out of 0.22 records, and out of our key.
        module=legacy.module or "",
        unkeyed=frozenset() if legacy.module is not None else frozenset({"module"}),
        arguments=arguments,
        result=result,
        metadata={**legacy.metadata, PROVENANCE: provenance},
        version=None if drop_versions else version_text(legacy.version),
        code=code,
        created=runtime.get("timestop") or runtime.get("timestart") or time.time(),
    )


def _value(load: Callable[[str], Any], key: str, what: str) -> Any:
    try:
        return load(key)
    except Exception as err:
        raise _Failed("value", f"{what} ({key[:12]}): {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return f"{type(err).__name__}: {' '.join(text.split())}"


class _Loaded:
    """The values of one converted call, by our digests (what :class:`LazyCall` reads)."""

    def __init__(self, call: Call, record: DigestedCall) -> None:
        self._values: Mapping[Digest, Any] = {
            **{record.arguments[n]: v for n, v in call.arguments.items()},
            record.result: call.result,
        }

    def load(self, key: Digest) -> Any:
        return self._values[key]
