"""Verify's bulk reads: every value file examined once, in one pass, as a load would."""

from __future__ import annotations

import os
import warnings

import numpy as np

from fleche import Cache, CorruptEntryWarning
from fleche.digest import digest
from fleche.storage import CallMemory, ValuePickleFile

from .backends import corrupt_file


def test_examine_many_gives_what_examine_gives(tmp_path):
    values = ValuePickleFile(tmp_path)
    keys = sorted(
        [values.save(i) for i in range(600)]
        + [values.save({"a": np.arange(3), "b": [1, 2]}), values.save([1, "y" * 300])]
    )
    assert list(values.examine_many(keys)) == [(key, values.examine(key)) for key in keys]


def test_examine_many_reports_each_failure_as_a_load_would(tmp_path):
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


def test_examine_many_skips_files_unchanged_since(tmp_path):
    values = ValuePickleFile(tmp_path)
    old, new = values.save("old"), values.save("new")
    os.utime(values._path(old), (1000.0, 1000.0))
    assert dict(values.examine_many([new, old], since=2000.0)) == {new: (new, []), old: None}


def test_verify_finds_damage_among_many_values(tmp_path):
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
