"""``fleche copy SRC DST`` end to end, through ``main(argv)`` as the other CLI tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fleche import cache, fleche, open_cache


@fleche
def measure(x):
    return {"samples": np.arange(x, dtype=float), "x": x}


@pytest.fixture
def source(tmp_path):
    """A filled pickle store: five calls."""
    path = tmp_path / "source"
    store = open_cache({"template": "pickle", "root": str(path)})
    with cache(store):
        for x in range(5):
            measure(x)
    return path


def _calls(run, path) -> list[dict]:
    code, out, _ = run("--cache", path, "ls", "--json")
    assert code == 0
    return sorted(json.loads(out), key=lambda row: row["key"])


@pytest.mark.parametrize("template", ["hdf5", "sql", "pickle"])
def test_copy_into_a_new_store_of_any_template(run, source, tmp_path, template) -> None:
    if template == "hdf5":
        pytest.importorskip("bagofholding")
    target = tmp_path / "target"
    code, out, err = run("copy", source, target, "--template", template, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["calls"]["copied"] == 5 and report["values"]["failed"] == {}
    assert _calls(run, target) == _calls(run, source)
    with cache(open_cache(str(target))):
        assert measure.contains(3)
        np.testing.assert_array_equal(measure(3)["samples"], np.arange(3.0))


def test_dry_run_copies_nothing_and_a_second_copy_skips_all(run, source, tmp_path) -> None:
    target = tmp_path / "target"
    code, out, _ = run("copy", source, target, "--template", "sql", "--dry-run")
    assert code == 0 and "would copy" in out and "5 calls" in out
    assert _calls(run, target) == []
    assert run("copy", source, target)[0] == 0
    code, out, _ = run("copy", source, target, "--json")
    report = json.loads(out)
    assert (report["calls"]["copied"], report["calls"]["skipped"]) == (0, 5)


def test_move_empties_the_source(run, source, tmp_path) -> None:
    target = tmp_path / "target"
    before = _calls(run, source)
    code, out, _ = run("copy", source, target, "--template", "pickle", "--move")
    assert code == 0 and "removed" in out
    assert _calls(run, source) == [] and _calls(run, target) == before


def test_copying_a_store_onto_itself_is_refused(run, source) -> None:
    code, _, err = run("copy", source, source)
    assert code == 2 and "same store" in err
    assert len(_calls(run, source)) == 5


def test_an_unknown_source_is_refused(run, tmp_path) -> None:
    code, _, err = run("copy", tmp_path / "nowhere", tmp_path / "target")
    assert code == 2 and "no store" in err
    assert not (tmp_path / "target").exists()


# -- export / import: the same transfer, through an archive ------------------------


def test_export_from_hdf5_and_import_into_pickle_keeps_every_call(run, source, tmp_path) -> None:
    pytest.importorskip("bagofholding")
    hdf5 = tmp_path / "hdf5"
    assert run("copy", source, hdf5, "--template", "hdf5")[0] == 0
    archive = tmp_path / "store.zip"
    code, out, _ = run("--cache", hdf5, "export", archive, "--json")
    assert code == 0 and json.loads(out)["calls"] == 5
    target = tmp_path / "target"
    open_cache({"template": "pickle", "root": str(target)})
    code, out, _ = run("--cache", target, "import", archive, "--json")
    assert code == 0 and json.loads(out)["imported"] == 5
    assert _calls(run, target) == _calls(run, source)


def test_export_leaves_out_a_call_whose_value_is_gone(run, source, tmp_path) -> None:
    store = open_cache(str(source))
    record = next(iter(store.query(name="measure"))).digested_call
    store.values.evict(record.result)
    code, out, _ = run("--cache", source, "export", tmp_path / "a.zip", "--json")
    report = json.loads(out)
    assert code == 1 and report["calls"] == 4
    assert [s["key"] for s in report["skipped"]] == [record.key()]
