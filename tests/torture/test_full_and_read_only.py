"""Stores on a file system that fills up, or that is read-only: calls still answer, rightly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fleche import CacheWarning, cache, open_cache

from ..test_unavailable_store import mounted  # noqa: F401 - the fixture
from .test_killed_writers import SHARED, _store, expected, payload

ARGUMENTS = 12


@pytest.mark.parametrize("backend", SHARED, ids=str)
def test_a_store_filling_its_disk_keeps_answering_rightly(backend, mounted):  # noqa: F811
    root = mounted("-o", "size=2m")  # room for about four results
    store = _store(backend, root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cache(store):
            for x in range(ARGUMENTS):  # no exception reaches the calls
                assert np.array_equal(payload(x), expected(x))
            for x in range(ARGUMENTS):  # stored or not, each answers rightly again
                assert np.array_equal(payload(x), expected(x))
    assert all(issubclass(w.category, CacheWarning) for w in caught)
    stored = list(store.query())
    assert 0 < len(stored) < ARGUMENTS  # some fitted, then the disk was full
    for call in stored:  # what was stored before the disk filled is intact
        assert np.array_equal(call.result, expected(call.arguments["x"]))


@pytest.mark.parametrize("template", ["sql", "pickle", "hdf5"])
def test_a_read_only_store_answers_from_what_it_holds(template, mounted, tmp_path):  # noqa: F811
    if template == "hdf5":
        pytest.importorskip("bagofholding")
    with cache(open_cache({"template": template, "root": str(tmp_path / "store")})):
        for x in range(0, ARGUMENTS, 2):
            payload(x)
    store = mounted("--bind", str(tmp_path / "store"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cache(str(store)):
            for x in range(ARGUMENTS):
                assert np.array_equal(payload(x), expected(x))
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    reader = open_cache({"template": template, "root": str(store), "read_only": True})
    assert reader.query().count() == ARGUMENTS // 2
