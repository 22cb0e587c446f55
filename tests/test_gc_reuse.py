"""gc and a call reusing an old value at the same moment: the value is kept.

gc finds a value unreferenced and old, then removes it.  A call that stores
the same value in between finds it stored and does not write it again; it
marks it in use instead, and gc's removal (set aside, age read again) keeps
it.  Each step is run by hand here, in the order a race would take; one test
sleeps a second, for the record gc keeps of a container's parts to age.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fleche import Cache, Call
from fleche.caches.maintenance import horizon, remove_values, unreferenced
from fleche.storage import Sql, ValueMemory, ValuePickleFile
from fleche.sweep import remove_strays

GRACE = 60.0
OLD = 1_000_000.0  # epoch seconds: long before any horizon


def _store(root: Path) -> Cache:
    return Cache(ValuePickleFile(root / "values"), Sql(url=str(root / "calls.db")))


def _age(values: ValuePickleFile) -> None:
    """Make every stored value look written long ago."""
    for key in values.list():
        os.utime(values._path(key), (OLD, OLD))


def test_a_value_reused_while_gc_runs_is_kept(tmp_path):
    cache = _store(tmp_path)
    argument = np.arange(1000.0)
    old = cache.values.save(argument)
    _age(cache.values)
    since = horizon(cache, GRACE)
    dead, _ = unreferenced(cache, GRACE)
    assert old in dead
    key = cache.save(Call("f", {"x": argument}, module="m", result=1.0))  # the reuse
    assert remove_values(cache, dead, False, since) == set()
    assert np.array_equal(cache.load(key).arguments["x"], argument)


def test_a_part_reused_by_a_new_container_while_gc_runs_is_kept(tmp_path):
    cache = _store(tmp_path)
    shared = np.arange(5000.0)  # large enough to be stored apart from its container
    old = cache.values.save({"a": shared})
    (part,) = cache.values.children(old)
    _age(cache.values)
    time.sleep(1.1)  # the gc log's record of the container's parts ages too
    since = horizon(cache, 1.0)
    dead, _ = unreferenced(cache, 1.0)
    assert {old, part} <= set(dead)
    key = cache.save(Call("f", {}, module="m", result={"b": shared}))
    assert remove_values(cache, dead, False, since) == {old}
    assert np.array_equal(cache.load(key).result["b"], shared)


def test_what_nobody_reuses_is_removed(tmp_path):
    cache = _store(tmp_path)
    old = cache.values.save("nobody")
    _age(cache.values)
    assert cache.gc(grace=GRACE) == {old}
    assert not cache.values.contains(old)


def test_evict_unused_sets_a_file_aside_and_puts_it_back_when_in_use(tmp_path):
    values = ValuePickleFile(tmp_path)
    key = values.save("content")
    path = values._path(key)
    os.utime(path, (OLD, OLD))
    assert values.evict_unused(key, OLD - 1) is False  # written after the horizon
    assert values.load(key) == "content"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing left aside
    assert values.evict_unused(key, OLD + 1) is True
    assert not values.contains(key)
    assert values.evict_unused(key, OLD + 1) is False  # already gone


@pytest.mark.parametrize("written", [OLD, None], ids=["old", "age unknown"])
def test_the_default_reads_the_age_again(written):
    class Aged(ValueMemory):
        def stored_at(self, key):
            return written

    values = Aged()
    key = values.save("content")
    assert values.evict_unused(key, OLD - 1) is (written is None)
    assert values.evict_unused(key, OLD + 1) is (written is not None)


@pytest.mark.parametrize("taken", [False, True], ids=["place empty", "place taken"])
def test_an_entry_a_killed_gc_left_aside_is_put_back_by_the_next_sweep(tmp_path, taken):
    cache = _store(tmp_path)
    key = cache.values.save("precious")
    path = cache.values._path(key)
    aside = path.with_name(f".{path.name}.0a1b2c3d4e5f0.aside")
    os.rename(path, aside)  # where a gc killed between its rename and its check leaves it
    os.utime(aside, (OLD, OLD))
    if taken:
        cache.values.save("precious")  # written anew meanwhile
    assert remove_strays(cache, grace=GRACE) == [aside]
    assert not aside.exists()
    assert cache.values.load(key) == "precious"
