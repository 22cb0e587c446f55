"""Tamper torture: a damaged entry reads as a miss with a warning, never as a wrong value.

Every persistent backend of ``tests/backends.py`` gets the same seeded
trials.  Each trial stores two calls of a decorated function, damages one
entry on the medium (a bit flip at a random offset, a truncation, two keys'
files swapped, an empty file, or the valid file of another value put under
the key) and calls the function again.  The rules checked, per trial:

* the call returns the right value and raises nothing;
* if the damage was read (the call computed again), a
  :class:`~fleche.errors.CorruptEntryWarning` said so;
* the recompute repaired the store: a fresh instance of the store, as
  another process would open, serves the right value without computing.

The damaged entry is a result value, a call record (its file, or the
result digest in its SQL row) or the child array of a destructured result.  ``run_trials`` returns
a :class:`Tally` so the counts can be reported per backend.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleche import Cache, cache, fleche
from fleche.digest import Digest, digest
from fleche.errors import CorruptEntryWarning
from fleche.testing.storage import Backend

from ..backends import BACKENDS, raw_object_store

MODES = ("bit flip", "truncation", "swap", "zero length", "foreign")
TARGETS = ("result", "record", "child")
TRIALS = 140
#: Keys of a trial's partner call (the other half of a swap, the foreign file).
PARTNER = 1_000_000

PERSISTENT = [b for b in BACKENDS if b.corrupt is not None]

computed: Counter[int] = Counter()


def expected(i: int) -> Any:
    """The value of call ``i``: an array, or a dict holding one (stored as a node and a child)."""
    array = np.random.default_rng(i).random(8 + i % 56)
    return array if i % 2 else {"array": array, "index": i}


@fleche
def produce(i: int) -> Any:
    computed[i] += 1
    return expected(i)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@dataclasses.dataclass
class Tally:
    """What the trials of one backend came to: ``survived + lost + wrong == trials``."""

    backend: str
    trials: int = 0
    #: The damage changed nothing that is read (e.g. padding, or two keys in one shared file).
    survived: int = 0
    #: Read as a miss and computed again.
    lost: int = 0
    #: Trials in which some call returned a wrong value: what must never happen.
    wrong: int = 0
    #: Every rule broken, one line each (wrong values included).
    failures: list[str] = dataclasses.field(default_factory=list)

    def row(self) -> str:
        return (
            f"{self.backend}: {self.trials} trials, {self.survived} survived, "
            f"{self.lost} lost, {self.wrong} wrong values, {len(self.failures)} rule(s) broken"
        )


def open_store(backend: Backend, root: Path) -> Cache:
    """A new instance of the backend's store under ``root``, as another process would open it."""
    (root / "calls").mkdir(parents=True, exist_ok=True)
    return Cache(backend.values(root / "values"), backend.calls(root / "calls"))


def file_of(storage: Any, key: Digest) -> Path:
    """The file holding ``key``: its HDF5 file (maybe shared), else its one file."""
    if hasattr(storage, "location"):
        return storage.location(key)[0]
    return storage._path(key)


def flip_bit(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def truncate(path: Path, rng: random.Random) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(1, len(data))])


def swap(path: Path, other: Path) -> None:
    first, second = path.read_bytes(), other.read_bytes()
    path.write_bytes(second)
    other.write_bytes(first)


def tamper(mode: str, path: Path, other: Path, rng: random.Random) -> None:
    """Damage ``path`` the way ``mode`` says (``other`` is the file of the partner key)."""
    if mode == "bit flip":
        flip_bit(path, rng)
    elif mode == "truncation":
        truncate(path, rng)
    elif mode == "swap":
        swap(path, other)
    elif mode == "zero length":
        path.write_bytes(b"")
    else:  # "foreign": a valid file of another value under this key
        path.write_bytes(other.read_bytes())


def target_keys(store: Cache, target: str, i: int) -> tuple[Any, Digest, Digest]:
    """The storage holding the damaged entry, its key in trial ``i`` and the partner's key."""
    if target == "record":
        return store.calls, produce.digest(i), produce.digest(i + PARTNER)
    value, partner = expected(i), expected(i + PARTNER)
    if target == "child" and isinstance(value, dict):
        return store.values, digest(value["array"]), digest(partner["array"])
    return store.values, digest(value), digest(partner)


def damage(store: Cache, target: str, mode: str, i: int, rng: random.Random) -> None:
    """Damage the ``target`` entry of call ``i`` on the medium: its file, or its SQL row."""
    storage, key, other = target_keys(store, target, i)
    if in_database(storage, key, other):
        tamper_small(storage.database.small_values(), mode, key, other, rng)
    elif hasattr(storage, "_path") or hasattr(storage, "location"):
        tamper(mode, file_of(storage, key), file_of(storage, other), rng)
    elif hasattr(storage, "endpoint"):
        tamper_objects(storage, mode, key, other, rng)
    else:
        tamper_row(storage.url, mode, key, other, rng)


def in_database(storage: Any, key: Digest, other: Digest) -> bool:
    """Whether both entries are small values kept in the call database (storage/small_values.py)."""
    database = getattr(storage, "database", None)
    if database is None:
        return False
    table = database.small_values()
    return table.get(key) is not None and table.get(other) is not None


def tamper_small(table: Any, mode: str, key: Digest, other: Digest, rng: random.Random) -> None:
    """Damage the row of ``key`` in the table of small values as :func:`tamper` damages a file."""
    with tempfile.TemporaryDirectory() as scratch:
        files = {k: Path(scratch) / k for k in (key, other)}
        for k, file in files.items():
            file.write_bytes(table.get(k))
        tamper(mode, files[key], files[other], rng)
        for k, file in files.items():
            table.put(k, file.read_bytes(), replace=True)


def tamper_objects(storage: Any, mode: str, key: Digest, other: Digest, rng: random.Random) -> None:
    """Damage the object of ``key`` in an object store as :func:`tamper` damages a file."""
    import obstore

    raw = raw_object_store(storage.url, storage.endpoint)
    with tempfile.TemporaryDirectory() as scratch:
        files = {k: Path(scratch) / k for k in (key, other)}
        for k, file in files.items():
            file.write_bytes(bytes(obstore.get(raw, f"{k[:3]}/{k[3:]}").bytes()))
        tamper(mode, files[key], files[other], rng)
        for k, file in files.items():
            obstore.put(raw, f"{k[:3]}/{k[3:]}", file.read_bytes())


def tamper_row(url: str, mode: str, key: Digest, other: Digest, rng: random.Random) -> None:
    """Damage the result digest in the SQL record of ``key`` the way ``mode`` says."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        url if "://" in url else f"sqlite:///{url}", poolclass=sqlalchemy.NullPool
    )
    read = sqlalchemy.text('SELECT result FROM calls WHERE "key" = :key')
    write = sqlalchemy.text('UPDATE calls SET result = :result WHERE "key" = :key')
    with engine.begin() as db:
        mine, theirs = (db.execute(read, {"key": k}).scalar_one() for k in (key, other))
        position = rng.randrange(len(mine))
        new = {
            "bit flip": mine[:position] + f"{int(mine[position], 16) ^ 1:x}" + mine[position + 1 :],
            "truncation": mine[: rng.randrange(1, len(mine))],
            "zero length": "",
        }.get(mode, theirs)  # "swap" and "foreign": the partner's result
        db.execute(write, {"key": key, "result": new})
        if mode == "swap":
            db.execute(write, {"key": other, "result": mine})
    engine.dispose()


def call_checked(i: int, problems: list[str]) -> tuple[bool, bool]:
    """Call ``produce(i)``, noting broken rules; returns (computed again, corrupt-entry warned)."""
    before = computed[i]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = produce(i)
        except Exception as err:  # noqa: BLE001 - any escape is a broken rule
            problems.append(f"call {i} raised {type(err).__name__}: {err}")
            return False, False
    if not same(expected(i), out):
        problems.append(f"call {i} returned a wrong value")
    return computed[i] > before, any(issubclass(w.category, CorruptEntryWarning) for w in caught)


def trial(backend: Backend, root: Path, n: int, rng: random.Random, tally: Tally) -> None:
    """One trial: store, damage, read back, and check that the recompute repaired the store."""
    mode, target = MODES[n % len(MODES)], TARGETS[(n // len(MODES)) % len(TARGETS)]
    i = 2 * n + rng.randrange(2)  # odd: an array; even: a dict whose array is a child
    calls = [i, i + PARTNER] if mode == "swap" else [i]
    store = open_store(backend, root)
    problems: list[str] = []
    with cache(store):
        produce(i), produce(i + PARTNER)
        damage(store, target, mode, i, rng)
        outcomes = [call_checked(j, problems) for j in calls]
    wrong = bool(problems)
    for j, (again, warned) in zip(calls, outcomes, strict=True):
        if again and not warned:
            problems.append(f"call {j} was computed again without a CorruptEntryWarning")
    with cache(open_store(backend, root)):  # a new instance: what the store now holds
        for j in calls:
            if call_checked(j, problems) != (False, False):
                problems.append(f"the next hit of call {j} was not served by the store")
    tally.trials += 1
    tally.wrong += wrong
    tally.lost += not wrong and any(again for again, _ in outcomes)
    tally.survived += not wrong and not any(again for again, _ in outcomes)
    tally.failures += [f"trial {n} ({mode} of the {target} of call {i}): {p}" for p in problems]


def run_trials(backend: Backend, root: Path, trials: int = TRIALS, seed: int = 2026) -> Tally:
    """``trials`` seeded tamper trials of ``backend`` in a store under ``root``."""
    rng = random.Random(f"{backend.name}-{seed}")
    tally = Tally(backend.name)
    computed.clear()
    for n in range(trials):
        trial(backend, root, n, rng, tally)
    return tally


@pytest.mark.parametrize("persistent", PERSISTENT, ids=str)
def test_tampered_entries_are_misses_never_wrong_values(
    persistent: Backend, tmp_path: Path
) -> None:
    tally = run_trials(persistent, tmp_path)
    assert tally.trials == TRIALS
    assert not tally.failures, tally.row() + "\n" + "\n".join(tally.failures[:20])


if __name__ == "__main__":  # python3 -m tests.torture.test_tamper: the table for an issue note
    import tempfile

    warnings.simplefilter("ignore")
    for each in PERSISTENT:
        with tempfile.TemporaryDirectory() as scratch:
            try:
                print(run_trials(each, Path(scratch)).row())
            except pytest.skip.Exception as skipped:
                print(f"{each.name}: skipped ({skipped})")
