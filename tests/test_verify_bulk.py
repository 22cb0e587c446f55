"""Verify's bulk reads: every value file examined in one pass, on reader threads, in order."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest

from fleche import Cache, CorruptEntryWarning
from fleche.digest import digest
from fleche.storage import CallMemory, ValuePickleFile, form_check
from fleche.storage.read_ahead import read_ahead

from .backends import corrupt_file


@pytest.fixture(params=[0, 2], ids=["here", "threads"])
def readers(request, monkeypatch):
    """Files read by this thread, or by reader threads."""
    monkeypatch.setattr(form_check, "READERS", request.param)
    return request.param


def test_examine_many_gives_what_examine_gives(tmp_path, readers):
    values = ValuePickleFile(tmp_path)
    keys = sorted(
        [values.save(i) for i in range(600)]
        + [values.save({"a": np.arange(3), "b": [1, 2]}), values.save([1, "y" * 300])]
    )
    assert list(values.examine_many(keys)) == [(key, values.examine(key)) for key in keys]


def test_examine_many_reports_each_failure_as_a_load_would(tmp_path, readers):
    values = ValuePickleFile(tmp_path)
    keys = sorted(values.save(i) for i in range(600))
    torn, gone = keys[400], keys[500]
    corrupt_file(values, torn)
    os.unlink(values._path(gone))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = dict(values.examine_many(keys))
    assert [str(w.message) for w in caught if torn in str(w.message)] and len(caught) == 1
    assert type(found[torn]) is KeyError and type(found[gone]) is KeyError
    assert all(found[key] == (key, []) for key in keys if key not in (torn, gone))


def test_examine_many_reads_large_values_in_turn(tmp_path, readers):
    # Past about 32 MB of values a chunk is not read ahead: its rest is read in turn.
    values = ValuePickleFile(tmp_path)
    big = [values.save(np.full(3_000_000, float(i))) for i in range(3)]  # 24 MB each
    keys = sorted(big + [values.save(i) for i in range(300)])
    old = values.save("old")
    os.utime(values._path(old), (1000.0, 1000.0))
    found = dict(values.examine_many([*keys, old], since=2000.0))
    assert found == {**{key: (key, []) for key in keys}, old: None}


def test_examine_many_skips_files_unchanged_since(tmp_path, readers):
    values = ValuePickleFile(tmp_path)
    old, new = values.save("old"), values.save("new")
    os.utime(values._path(old), (1000.0, 1000.0))
    assert dict(values.examine_many([new, old], since=2000.0)) == {new: (new, []), old: None}


def test_verify_finds_damage_past_the_first_chunks(tmp_path, readers):
    store = Cache(ValuePickleFile(tmp_path / "values"), CallMemory())
    keys = sorted(store.values.save(i) for i in range(1000))
    corrupt_file(store.values, keys[900])
    store.values.save(7, digest("not its key"))  # stored under a key its content does not match
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        report = store.verify()
    kinds = {p.key: p.kind for p in report.problems}
    assert kinds == {keys[900]: "corrupt value", digest("not its key"): "digest mismatch"}
    assert report.values == 1001


def test_read_ahead_keeps_order_and_stays_bounded():
    started = []

    def work(n):
        started.append(n)
        time.sleep(0.001 * (n % 3))  # later chunks may finish first
        return n * n

    taken = []
    for result in read_ahead(work, range(50), threads=3, ahead=4):
        taken.append(result)
        assert len(started) <= len(taken) + 4 + 1  # never more than ``ahead`` untaken
        time.sleep(0.002)  # a slow consumer: the readers must wait, not run ahead
    assert taken == [n * n for n in range(50)] and sorted(started) == list(range(50))


def test_read_ahead_raises_at_the_failing_chunk_and_stops_early():
    started = []

    def work(n):
        started.append(n)
        if n == 5:
            raise ValueError("chunk 5")
        return n

    results = read_ahead(work, range(1000), threads=2, ahead=3)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="chunk 5"):
        next(results)
    assert len(started) < 20  # nothing like the 1,000 chunks was submitted
