"""gc of containers in pickle files: their parts known from the children log, never lost.

The value storage of pickle files logs the parts of each container it
writes (:mod:`fleche.storage.children_log`); gc follows the log instead of
opening every value, builds it once for a store written without one, and
keeps the parts of a container being written right now, however old.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from fleche import Cache, Call
from fleche.digest import digest
from fleche.storage import Sql, ValuePickleFile

from .test_compositions import Clock

HOUR = 3600.0


def open_store(root: Path, clock: Clock | None = None) -> Cache:
    options = {} if clock is None else {"clock": clock}
    return Cache(ValuePickleFile(root=root / "values"), Sql(url=str(root / "calls.db")), **options)


def call(x, result) -> Call:
    return Call(name="f", module="tests", arguments={"x": x}, result=result)


def file_of(root: Path, key: str) -> Path:
    return root / "values" / key[:3] / key[3:]


def age(root: Path, key: str, seconds: float = 2 * HOUR) -> None:
    """Make a value look written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(file_of(root, key), (then, then))


def test_gc_keeps_every_referenced_value_and_part_and_removes_the_rest(tmp_path):
    store = open_store(tmp_path)
    kept = {"a": np.arange(10), "b": [np.ones(3), "x" * 300]}
    gone = {"c": np.zeros(4), "d": [np.full(2, 7.0)]}
    store.save(call(1, kept))
    evicted = store.save(call(2, gone))
    store.evict(evicted)
    parts_kept = [digest(kept), digest(kept["a"]), digest(kept["b"]), digest(kept["b"][0])]
    parts_gone = [digest(gone), digest(gone["c"]), digest(gone["d"]), digest(gone["d"][0])]
    assert store.gc(grace=0) == {digest(2), *parts_gone}
    assert all(store.values.contains(key) for key in parts_kept)
    assert not any(store.values.contains(key) for key in parts_gone)
    assert store.load_result(store.save(call(1, kept)))["b"][1] == "x" * 300


def test_gc_knows_the_parts_of_a_container_without_reading_it(tmp_path):
    store = open_store(tmp_path)
    result = {"a": np.arange(10)}
    store.save(call(1, result))
    file_of(tmp_path, digest(result)).write_bytes(b"garbled")  # unreadable now
    store.gc(grace=0)
    assert store.values.contains(digest(result["a"]))  # kept: the log names it


def test_gc_of_a_store_written_without_the_log_opens_it_once(tmp_path):
    store = open_store(tmp_path)
    result = {"a": np.arange(10), "b": [np.ones(2)]}
    store.save(call(1, result))
    store.values.save([np.zeros(3)])  # unreferenced, with a part of its own
    shutil.rmtree(tmp_path / "values" / "children")  # as an older fleche wrote it
    assert store.gc(grace=0) == {digest([np.zeros(3)]), digest(np.zeros(3))}
    kept = [digest(result["a"]), digest(result["b"]), digest(result["b"][0])]
    assert all(store.values.contains(key) for key in kept)
    file_of(tmp_path, digest(result["b"])).write_bytes(b"garbled")
    assert open_store(tmp_path).gc(grace=0) == set()  # the log that gc wrote names its part
    assert store.values.contains(digest(result["b"][0]))


def test_a_full_verify_of_a_store_without_the_log_writes_it(tmp_path):
    store = open_store(tmp_path)
    result = {"a": np.arange(10)}
    store.save(call(1, result))
    shutil.rmtree(tmp_path / "values" / "children")  # as an older fleche wrote it
    assert store.verify().ok
    file_of(tmp_path, digest(result)).write_bytes(b"garbled")
    assert store.gc(grace=0) == set()  # the container is not opened: the log names its part
    assert store.values.contains(digest(result["a"]))


def test_a_young_container_keeps_its_old_parts(tmp_path):
    """A container stored right now by another process, its call not recorded yet."""
    clock = Clock()
    store = open_store(tmp_path, clock)
    shared = np.arange(100)
    store.values.save(shared)
    age(tmp_path, digest(shared))
    container = store.values.save([shared, "run 2"])  # young: its call is still running
    assert store.gc() == set()
    assert store.values.contains(digest(shared))
    clock.now += 2 * HOUR  # the run died long ago: both go
    assert store.gc() == {container, digest(shared)}


def test_a_logged_container_not_yet_on_disk_keeps_its_old_parts(tmp_path):
    """gc lists the values, then a writer logs a container and writes it: its parts stay."""
    clock = Clock()
    store = open_store(tmp_path, clock)
    shared = np.arange(100)
    container = store.values.save([shared, "run 2"])
    age(tmp_path, digest(shared))
    file_of(tmp_path, container).unlink()  # as if listed before it was renamed into place
    assert store.gc() == set()
    assert store.values.contains(digest(shared))
    clock.now += 2 * HOUR
    assert store.gc() == {digest(shared)}


def _writer(root: Path, start: int, count: int) -> None:
    store = open_store(root)
    for i in range(start, start + count):
        store.save(call(i, {"shared": np.arange(1000), "own": [np.full(3, i)]}))


def test_gc_running_beside_writers_never_removes_what_they_store(tmp_path):
    store = open_store(tmp_path)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(tmp_path, n * 100, 40)) for n in range(2)]
    for w in writers:
        w.start()
    while any(w.is_alive() for w in writers):
        store.gc()
    for w in writers:
        assert w.join() is None and w.exitcode == 0
    store.gc()
    for i in [*range(40), *range(100, 140)]:
        key = call(i, None).digested().key()
        assert store.load_result(key)["shared"].sum() == sum(range(1000))
