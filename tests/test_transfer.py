"""The generic storage-to-storage transfer: between backends, between HDF5 layouts, interrupted."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from fleche import cache, fleche, open_cache
from fleche.call import QueryCall
from fleche.digest import digest
from fleche.storage import ValueBagOfHoldingH5File
from fleche.storage.hdf5_layout import GroupedFiles, PerKeyFiles
from fleche.storage.transfer import CallEntries, ValueEntries, copy_entries, copy_store

pd = pytest.importorskip("pandas")
pytest.importorskip("bagofholding")


@fleche
def simulate(temperature, steps=10):
    return {"energy": np.linspace(0, temperature, steps), "label": f"T={temperature}"}


@fleche
def summarize(run):
    return pd.DataFrame({"e": run["energy"], "n": np.arange(len(run["energy"]))})


def _fill(store, runs=6):
    with cache(store):
        for t in range(runs):
            summarize(simulate(300 + t))
    return store


def _open(tmp_path: Path, name: str, template: str):
    return open_cache({"template": template, "root": str(tmp_path / name)})


def _pair(store):
    return ValueEntries(store.values), CallEntries(store.calls)


def _snapshot(store) -> tuple[list[str], dict[str, object]]:
    """The value keys and the call records of ``store``."""
    return sorted(store.values.list()), {c.key(): c.digested_call for c in store.query()}


def _assert_holds(snapshot, target) -> None:
    """Every value and record of ``snapshot`` in ``target``: queries and loads agree."""
    values, records = snapshot
    assert values and set(values) <= set(target.values.list())
    for key in values:
        assert digest(target.values.load(key)) == key
    assert sorted(records) == sorted(c.key() for c in target.query())
    for key, record in records.items():
        assert target.calls.load(key) == record
    template = QueryCall(name="simulate", arguments={"temperature": 302})
    expected = [k for k, r in records.items() if template.digested().matches(r)]
    assert [c.key() for c in target.query(template)] == expected and len(expected) == 1
    with cache(target):
        assert summarize.contains(simulate(303)) and simulate.contains(301)


def _assert_same_content(source, target) -> None:
    _assert_holds(_snapshot(source), target)


def test_pickle_to_hdf5_to_sql_and_pickle_keeps_everything(tmp_path: Path) -> None:
    pickle = _fill(_open(tmp_path, "pickle", "pickle"))
    hdf5 = _open(tmp_path, "hdf5", "hdf5")
    tally = copy_store(_pair(pickle), _pair(hdf5))
    assert tally.calls.copied == 12 and not tally.values.failed and not tally.calls.failed
    _assert_same_content(pickle, hdf5)
    for template in ("sql", "pickle"):
        again = _open(tmp_path, f"again-{template}", template)
        copy_store(_pair(hdf5), _pair(again))
        _assert_same_content(pickle, again)


def test_a_second_copy_skips_everything_and_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    source = _fill(_open(tmp_path, "a", "pickle"))
    target = _open(tmp_path, "b", "sql")
    dry = copy_store(_pair(source), _pair(target), dry_run=True)
    assert dry.calls.copied == 12 and list(target.values.list()) == []
    copy_store(_pair(source), _pair(target))
    again = copy_store(_pair(source), _pair(target))
    assert (again.values.copied, again.calls.copied, again.calls.skipped) == (0, 0, 12)


def test_move_removes_from_the_source_only_what_the_target_holds(tmp_path: Path) -> None:
    source = _fill(_open(tmp_path, "a", "pickle"))
    before = _snapshot(source)
    target = _open(tmp_path, "b", "hdf5")
    tally = copy_store(_pair(source), _pair(target), remove=True)
    assert tally.calls.removed == 12 and tally.values.removed > 0
    assert list(source.calls.list()) == [] and list(source.values.list()) == []
    _assert_holds(before, target)


def test_a_record_whose_values_cannot_be_read_is_not_copied(tmp_path: Path) -> None:
    source = _fill(_open(tmp_path, "a", "pickle"), runs=2)
    record = next(c for c in source.calls.query(QueryCall(name="simulate")) if c.result)
    source.values.evict(record.result)  # the record now points at nothing
    target = _open(tmp_path, "b", "sql")
    tally = copy_store(_pair(source), _pair(target), remove=True)
    assert record.key() in tally.calls.failed and not target.calls.contains(record.key())
    assert source.calls.contains(record.key())  # what failed stays
    assert tally.values.removed == 0  # a record stayed behind: its values stay with it


class _Failing(ValueEntries):
    """A target that fails after ``limit`` writes, as an interrupted copy would."""

    def __init__(self, storage, limit):
        super().__init__(storage)
        self.limit = limit

    def write(self, items):
        for item in items:
            if self.limit == 0:
                raise RuntimeError("interrupted")
            self.limit -= 1
            super().write([item])


def test_an_interrupted_copy_loses_nothing_and_resumes(tmp_path: Path) -> None:
    source = _fill(_open(tmp_path, "a", "pickle"))
    before = _snapshot(source)
    target = _open(tmp_path, "b", "hdf5")
    with pytest.raises(RuntimeError, match="interrupted"):
        copy_store(
            (ValueEntries(source.values), CallEntries(source.calls)),
            (_Failing(target.values, 7), CallEntries(target.calls)),
            remove=True,
        )
    assert list(target.calls.list()) == []  # no record before all its values
    _assert_holds(before, source)  # nothing left the source
    tally = copy_store(_pair(source), _pair(target), remove=True)
    assert tally.values.skipped >= 7
    _assert_holds(before, target)


def _copy_forever(source: str, target: str) -> None:
    src = open_cache({"template": "pickle", "root": source})
    dst = open_cache({"template": "hdf5", "root": target})
    copy_store(_pair(src), _pair(dst), remove=True)


def test_a_killed_copy_loses_nothing_and_resumes(tmp_path: Path) -> None:
    source = _fill(_open(tmp_path, "a", "pickle"), runs=30)
    before = _snapshot(source)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_copy_forever, args=(str(tmp_path / "a"), str(tmp_path / "b")))
    process.start()
    target = _open(tmp_path, "b", "hdf5")
    while process.is_alive() and len(list(target.values.list())) < 20:
        pass
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL  # killed midway, not finished
    copy_store(_pair(source), _pair(target), remove=True)
    _assert_holds(before, target)


# -- HDF5 layouts: one class each, moved through the same transfer --------------------


def test_each_layout_is_a_class_chosen_by_prefix_length(tmp_path: Path) -> None:
    per_key = ValueBagOfHoldingH5File(tmp_path, prefix_length=0)
    grouped = ValueBagOfHoldingH5File(tmp_path, None, 3)
    assert per_key.layout == PerKeyFiles() and grouped.layout == GroupedFiles(3)
    key = per_key.save(np.arange(5.0))
    assert per_key.location(key)[0].suffix == "" and grouped.load(key).sum() == 10.0
    other = grouped.save("text")
    assert grouped.location(other)[0].name == f"{other[:3]}.h5"
    assert per_key.load(other) == "text"  # each reads every layout


@pytest.mark.parametrize("lengths", [(0, 2), (2, 0), (1, 5)])
def test_layout_to_layout_keeps_every_value_and_record(tmp_path: Path, lengths) -> None:
    first, second = lengths
    store = open_cache({"template": "hdf5", "root": str(tmp_path / "s"), "calls": "pickle"})
    before = _snapshot(_fill(store))
    values = store.values.refix(first)
    moved = values.refix(second)
    assert moved.relocate() == 0
    _assert_holds(before, type(store)(moved, store.calls))


def test_storage_to_storage_between_layouts_in_two_directories(tmp_path: Path) -> None:
    grouped = ValueBagOfHoldingH5File(tmp_path / "g", prefix_length=2)
    keys = [grouped.save(v) for v in ({"a": np.ones(3)}, "x" * 50, list(range(9)))]
    per_key = ValueBagOfHoldingH5File(tmp_path / "p", prefix_length=0)
    tally = copy_entries(ValueEntries(grouped), ValueEntries(per_key))
    assert tally.copied == len(list(grouped.list())) and not tally.failed
    assert [digest(per_key.load(k)) for k in keys] == keys


def test_moving_some_calls_leaves_the_values_other_records_may_share(tmp_path: Path) -> None:
    source = _fill(_open(tmp_path, "a", "pickle"))
    values = sorted(source.values.list())
    chosen = [c.key() for c in source.query(name="simulate")]
    target = _open(tmp_path, "b", "sql")
    tally = copy_store(_pair(source), _pair(target), chosen, remove=True)
    assert tally.calls.removed == len(chosen) == 6 and tally.values.removed == 0
    assert sorted(source.values.list()) == values
    for record in source.calls.query(QueryCall(name="summarize")):
        run = source.values.load(record.arguments["run"])  # its argument is still here
        assert digest(run) == record.arguments["run"]


def test_a_batch_is_written_at_its_end_and_not_at_all_if_it_fails(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, prefix_length=1)
    with values.batched():
        keys = [values.save(f"value {i}") for i in range(40)]
        assert list(values.list()) == []
    assert [values.load(k) for k in keys] == [f"value {i}" for i in range(40)]
    assert len(list(tmp_path.glob("*.h5"))) <= 16  # one shared file per first character
    with pytest.raises(RuntimeError), values.batched():
        lost = values.save("never written")
        raise RuntimeError("interrupted")
    assert not values.contains(lost)
