"""The ``fleche`` command, run through ``main(argv)`` against stores under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fleche import cache, fleche, open_cache
from fleche.digest import digest


@fleche
def load(n):
    return np.arange(n, dtype=float)


@fleche
def scale(data, factor=2.0):
    return data * factor


@fleche
def power(x, p=2):
    return x**p


@fleche
def power_renamed(x, p=2):
    return x**p


def add_tag(record):
    """A migration for ``fleche transform``: tag every record."""
    return record.replace(metadata={**record.metadata, "tags": {"migrated": True}})


def fill(store):
    """A small workflow: three loads, their scaled versions, a few powers."""
    with cache(store):
        for n in (2, 3, 4):
            scale(load(n))
        for x in (1, 2, 3):
            power(x)
        power(2, p=3)
    return store


@pytest.fixture
def sql_store(tmp_path):
    """A filled store in the sql layout, active for the test."""
    path = tmp_path / "store"
    store = fill(open_cache(str(path)))
    with cache(store):
        yield path, store


@pytest.fixture(params=["sql", "pickle", "hdf5", "postgres"])
def any_store(request, tmp_path, monkeypatch):
    """A filled store of each kind, active, and the global options naming it."""
    template = request.param
    if template == "hdf5":
        pytest.importorskip("bagofholding")
        (tmp_path / "fleche.toml").write_text(
            'root = true\n[h5]\ntemplate = "hdf5"\nroot = "h5store"\n'
        )
        monkeypatch.chdir(tmp_path)
        options, store = ["--cache", "h5"], open_cache("h5")
    elif template == "postgres":
        from .backends import postgres_calls

        url, values = postgres_calls(tmp_path / "pg").url, str(tmp_path / "pg-values")
        options = ["--cache", url, "--values", values]
        store = open_cache({"template": "sql", "url": url, "root": values})
    else:
        options = ["--cache", str(tmp_path / template)]
        store = open_cache({"template": template, "root": options[1]})
    with cache(fill(store)):
        yield options, store


def test_every_backend_lists_shows_verifies_and_traces(run, any_store):
    options, store = any_store
    code, out, _ = run(*options, "ls", "--json", "--limit", "0")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 10
    assert {r["function"] for r in rows} == {f"{__name__}.{f}" for f in ("load", "scale", "power")}
    key = scale.digest(load(3))
    code, out, _ = run("show", key[:8], *options, "--json")
    assert code == 0 and json.loads(out)["key"] == key
    code, out, _ = run(*options, "query", "power", "--where", "x=2", "--json")
    assert len(json.loads(out)) == 2
    code, out, _ = run(*options, "verify")
    assert code == 0 and "no problems" in out
    result = digest(scale(load(3)))
    code, out, _ = run(*options, "lineage", result[:10])
    assert code == 0 and f"{__name__}.load" in out and "n: value" in out


def test_ls_table_filter_and_limit(run, sql_store):
    path, _ = sql_store
    code, out, _ = run("--cache", path, "ls")
    assert code == 0
    assert "10 calls stored" in out and f"{__name__}.power" in out and "x=3, p=2" in out
    code, out, _ = run("--cache", path, "ls", "power", "--json")
    assert [r["function"] for r in json.loads(out)] == [f"{__name__}.power"] * 4
    code, out, _ = run("--cache", path, "ls", f"{__name__}.scale", "--limit", "1")
    assert "and 2 more" in out
    code, out, _ = run("--cache", path, "ls", "nothing_like_this", "--json")
    assert code == 0 and json.loads(out) == []


def test_show_a_call_and_a_value(run, sql_store):
    path, store = sql_store
    key, result = power.digest(3), digest(power(3))
    code, out, _ = run("--cache", path, "show", key[:6])
    assert code == 0 and f"{__name__}.power" in out and "runtime.walltime" in out
    code, out, _ = run("--cache", path, "--json", "show", result)
    data = json.loads(out)
    assert data["kind"] == "value" and data["type"] == "int" and data["summary"] == "9"
    assert [c["key"] for c in data["produced_by"]] == [key]


def test_bad_prefix_is_one_line_and_exit_2(run, sql_store):
    path, _ = sql_store
    code, out, err = run("--cache", path, "show", "ffffffffffffffff")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(
        "fleche: error: no stored call or value starts with"
    )
    code, _, err = run("--cache", path, "show", "xyz")
    assert code == 2 and "not a digest" in err and err.count("\n") == 1


def test_ambiguous_prefix_lists_the_candidates(run, sql_store):
    path, store = sql_store
    keys = sorted([*store.calls.list(), *store.values.list()])
    prefix, candidates = next(
        (k[0], [c for c in keys if c[0] == k[0]])
        for k in keys
        if sum(c[0] == k[0] for c in keys) > 1
    )
    code, _, err = run("--cache", path, "lineage", prefix)
    assert code == 2 and err.count("\n") == 1 and "ambiguous" in err
    for candidate in candidates:
        assert candidate in err


def test_missing_store_and_usage_errors(run, tmp_path):
    code, _, err = run("--cache", tmp_path / "nowhere", "ls")
    assert code == 2 and "no store at" in err
    assert run("show")[0] == 2  # argparse: the digest is missing
    assert run()[0] == 2
    assert run("--help")[0] == 0


def test_query_by_literals_digests_and_metadata(run, sql_store):
    path, store = sql_store
    code, out, _ = run("--cache", path, "query", "power", "--where", "x=2", "--json")
    assert sorted(r["summary"] for r in json.loads(out)) == ["x=2, p=2", "x=2, p=3"]
    code, out, _ = run(
        "--cache", path, "query", "power", "--where", "x=2", "--where", "p=3", "--json"
    )
    assert len(json.loads(out)) == 1
    code, out, _ = run("--cache", path, "query", "power", "--where", "x='2'", "--json")
    assert json.loads(out) == []  # the string '2' is not the int 2
    short = store.shrink(digest(load(4)))
    code, out, _ = run("--cache", path, "query", "scale", "--where", f"data=@{short}", "--json")
    assert [r["arguments"]["data"] for r in json.loads(out)] == [digest(load(4))]
    code, out, _ = run("--cache", path, "query", "power", "--meta", "runtime.nothing=1", "--json")
    assert json.loads(out) == []
    code, _, err = run("--cache", path, "query", "power", "--where", "novalue")
    assert code == 2 and "NAME=VALUE" in err


def test_stats(run, sql_store):
    path, _ = sql_store
    code, out, _ = run("--cache", path, "stats", "--json")
    data = json.loads(out)
    counts = {row["function"].rsplit(".", 1)[1]: row["calls"] for row in data["functions"]}
    assert counts == {"load": 3, "scale": 3, "power": 4}
    stores = {row["store"]: row for row in data["storages"]}
    assert stores["calls"]["entries"] == 10 and stores["values"]["bytes"] > 0
    code, out, _ = run("--cache", path, "stats")
    assert code == 0 and "distinct results" in out


def test_prune_then_gc(run, sql_store):
    path, store = sql_store
    code, out, _ = run("--cache", path, "prune", "--older-than", "30d", "--json")
    assert json.loads(out)["calls"] == []
    code, out, _ = run("--cache", path, "prune", "--func", "scale", "--dry-run", "--json")
    assert len(json.loads(out)["calls"]) == 3 and store.query().count() == 10
    code, out, _ = run("--cache", path, "prune", "--func", "scale")
    assert code == 0 and "removed 3 calls" in out and store.query().count() == 7
    code, out, _ = run("--cache", path, "gc", "--grace", "0", "--dry-run", "--json")
    orphans = json.loads(out)["values"]
    # the scaled arrays, and the default factor no other call uses
    assert sorted(orphans) == sorted(
        [*(digest(np.arange(n, dtype=float) * 2.0) for n in (2, 3, 4)), digest(2.0)]
    )
    code, out, _ = run("--cache", path, "gc")  # all of them younger than the default grace
    assert "removed 0 unreferenced values" in out
    assert "4 unreferenced values younger than the grace period are kept" in out
    code, out, _ = run("--cache", path, "gc", "--grace", "0")
    assert "removed 4 unreferenced values" in out and "kept" not in out
    assert not any(store.values.contains(k) for k in orphans)
    assert run("--cache", path, "prune", "--older-than", "soon")[0] == 2


def test_verify_reports_then_fixes(run, tmp_path):
    path = tmp_path / "pickled"
    store = fill(open_cache({"template": "pickle", "root": str(path)}))
    with cache(store):
        victim, key = digest(power(3)), power.digest(3)
    file = next(f for f in (path / "values").rglob("*") if f.is_file() and f.name in victim)
    file.write_bytes(b"garbage")
    code, out, _ = run("--cache", path, "verify", "--json")
    data = json.loads(out)
    assert code == 1 and not data["ok"]
    assert {p["key"] for p in data["problems"]} >= {victim}
    code, out, _ = run("--cache", path, "verify", "--fix")
    assert code == 1 and "removed" in out
    assert run("--cache", path, "verify")[0] == 0
    assert not store.contains(key)


def test_verify_since_rereads_only_recent_values(run, tmp_path):
    path = tmp_path / "pickled"
    fill(open_cache({"template": "pickle", "root": str(path)}))
    file = next(f for f in (path / "values").rglob("*") if f.is_file())
    file.write_bytes(b"garbage")
    os.utime(file, (1.0e9, 1.0e9))  # written long ago, as far as its time says
    assert run("--cache", path, "verify", "--since", "1d")[0] == 0
    code, out, _ = run("--cache", path, "verify", "--json")
    assert code == 1 and json.loads(out)["started"] > 1.0e9


def test_verify_changed_rereads_what_changed_since_the_last_verify_with_a_bar(
    run, tmp_path, monkeypatch
):
    path = tmp_path / "pickled"
    store = fill(open_cache({"template": "pickle", "root": str(path)}))
    assert run("--cache", path, "verify")[0] == 0
    with cache(store):
        victim, key = digest(power(7)), power.digest(7)  # written after that verify
    (path / "values" / victim[:3] / victim[3:]).write_bytes(b"garbage")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # stderr is a terminal: a progress bar
    code, out, err = run("--cache", path, "verify", "--changed", "--json")
    assert code == 1 and {p["key"] for p in json.loads(out)["problems"]} == {victim, key}
    assert "verifying" in err
    assert run("--cache", path, "verify", "--changed")[0] == 0  # nothing written since


def test_rename_function_keeps_the_calls(run, sql_store):
    path, store = sql_store
    old, new = f"{__name__}.power", f"{__name__}.power_renamed"
    code, out, _ = run("--cache", path, "rename-function", old, new, "--dry-run")
    assert "would change 4 records, 4 of them under a new key" in out
    assert power.contains(3)
    code, out, _ = run("--cache", path, "rename-function", old, new)
    assert code == 0
    assert power_renamed.contains(3) and power_renamed.contains(2, p=3)
    assert not power.contains(3)
    code, _, err = run("--cache", path, "rename-function", old, new)
    assert code == 2 and "no stored call" in err


def test_rename_module_and_transform(run, sql_store):
    path, store = sql_store
    code, out, _ = run("--cache", path, "rename-module", __name__, "moved.elsewhere", "--json")
    assert json.loads(out) == {"dry_run": False, "changed": 10, "rekeyed": 10}
    code, out, _ = run("--cache", path, "ls", "--json", "--limit", "0")
    assert {r["function"].rsplit(".", 1)[0] for r in json.loads(out)} == {"moved.elsewhere"}
    code, out, _ = run("--cache", path, "transform", f"{__name__}:add_tag", "--json")
    assert json.loads(out)["changed"] == 10 and json.loads(out)["rekeyed"] == 0
    code, out, _ = run(
        "--cache", path, "query", "moved.elsewhere.power", "--meta", "tags.migrated=True", "--json"
    )
    assert len(json.loads(out)) == 4
    assert run("--cache", path, "transform", "no.such:thing")[0] == 2


def test_export_import_across_backends(run, sql_store, tmp_path):
    path, store = sql_store
    archive = tmp_path / "store.zip"
    code, out, _ = run("--cache", path, "export", archive, "--json")
    assert code == 0 and json.loads(out)["calls"] == 10
    assert "fleche-archive.json" in zipfile.ZipFile(archive).namelist()
    target = tmp_path / "copy"
    code, out, _ = run("--cache", target, "import", archive, "--json")
    assert json.loads(out)["imported"] == 10
    copy = open_cache(str(target))
    with cache(copy):
        assert np.array_equal(scale.load(load(4)), np.arange(4.0) * 2)
        assert power.load(2, p=3) == 8
    code, out, _ = run("--cache", target, "import", archive, "--json")
    assert json.loads(out) == {
        "archive": str(archive),
        "format_version": 1,
        "imported": 0,
        "kept": 10,
    }
    code, out, _ = run(
        "--cache", path, "export", tmp_path / "powers.zip", "--func", "power", "--json"
    )
    assert json.loads(out)["calls"] == 4
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    code, _, err = run("--cache", target, "import", tmp_path / "junk.zip")
    assert code == 2 and "not a fleche archive" in err


def test_lineage_tree_dot_and_used_by(run, sql_store):
    path, store = sql_store
    result = digest(scale(load(2)))
    code, out, _ = run("--cache", path, "lineage", result)
    assert code == 0 and f"{__name__}.scale" in out and "data: value" in out
    code, out, _ = run("--cache", path, "lineage", result, "--dot")
    assert out.startswith("digraph lineage {") and "->" in out
    code, out, _ = run("--cache", path, "lineage", result, "--json")
    assert json.loads(out)["root"] == result
    code, out, _ = run("--cache", path, "lineage", digest(load(2)), "--used-by", "--json")
    data = json.loads(out)
    assert data["direction"] == "used_by" and {c["function"] for c in data["calls"]} == {
        f"{__name__}.scale"
    }


def test_explain(run, sql_store):
    path, _ = sql_store
    code, out, _ = run("--cache", path, "explain", f"{__name__}:power", "3")
    assert code == 0 and "is stored" in out
    code, out, _ = run("--cache", path, "explain", f"{__name__}.power", "3", "p=4", "--json")
    data = json.loads(out)
    assert data["status"] == "missing" and not data["stored"]
    assert run("--cache", path, "explain", f"{__name__}:add_tag")[0] == 2


def test_config_says_which_store_and_why(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLECHE_CACHE", raising=False)
    monkeypatch.delenv("FLECHE_CONFIG", raising=False)
    (tmp_path / "fleche.toml").write_text(
        'root = true\n[default]\ncache = "proj"\n[proj]\ntemplate = "sql"\nroot = "s"\n'
    )
    code, out, _ = run("config", "--json")
    data = json.loads(out)
    assert code == 0 and data["files"] == [str(tmp_path / "fleche.toml")]
    assert "[default] cache 'proj'" in data["active"]["why"] and "proj" in data["names"]
    monkeypatch.setenv("FLECHE_CACHE", "memory")
    code, out, _ = run("config", "--json")
    assert "FLECHE_CACHE" in json.loads(out)["active"]["why"]
    code, out, _ = run("--cache", "memory", "config")
    assert "named by --cache 'memory'" in out


def test_configuration_errors_are_one_line_unless_debug(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLECHE_CACHE", raising=False)
    (tmp_path / "fleche.toml").write_text(
        'root = true\n[proj]\ntemplate = "sql"\nroot = "s"\nbogus = 1\n'
    )
    code, _, err = run("--cache", "proj", "ls")
    assert code == 2 and err.count("\n") == 1 and "bogus" in err and "Traceback" not in err
    code, _, err = run("--cache", "proj", "ls", "--debug")
    assert code == 2 and "Traceback" in err


def test_demo_runs_twice_in_the_working_directory(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("demo")
    assert code == 0
    assert "first pass" in out and "(computed)" in out and "(answered from the store)" in out
    assert "fleche.demo.diffuse" in out and "lineage of the fit" in out
    assert (tmp_path / ".fleche" / "calls.db").is_file()
    code, out, _ = run("demo")
    assert "(computed)" not in out


def test_python_dash_m_fleche(sql_store):
    path, _ = sql_store
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "fleche", "--cache", str(path), "ls", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 10


# -- a store opened by its path keeps its layout (issue 11, item 1) ----------------------


@pytest.mark.parametrize("calls", ["sql", "pickle"])
@pytest.mark.parametrize("manifest", [True, False], ids=["recorded", "recognised"])
def test_verify_fix_keeps_every_call_of_a_healthy_hdf5_store(run, tmp_path, calls, manifest):
    pytest.importorskip("bagofholding")
    path = tmp_path / "h5"
    store = fill(open_cache({"template": "hdf5", "root": str(path), "calls": calls}))
    keys = set(store.calls.list())
    assert (path / "fleche-store.json").is_file()
    if not manifest:  # a store made before layouts were recorded
        (path / "fleche-store.json").unlink()
    code, out, _ = run("--cache", path, "verify", "--fix")
    assert code == 0 and "no problems" in out
    assert (
        set(open_cache({"template": "hdf5", "root": str(path), "calls": calls}).calls.list())
        == keys
    )


def test_verify_fix_lists_many_removals_until_confirmed(run, tmp_path):
    path = tmp_path / "store"
    store = fill(open_cache(str(path)))
    for key in list(store.values.list())[:8]:  # lose a few values (not most: that is systematic)
        store.values.evict(key)
    held = run("--cache", path, "verify", "--fix", "--json")
    data = json.loads(held[1])
    assert held[0] == 1 and data["held"] and not any(p["fixed"] for p in data["problems"])
    assert len(list(store.calls.list())) == 10
    code, out, _ = run("--cache", path, "verify", "--fix", "--yes")
    assert code == 1 and "removed" in out
    assert run("--cache", path, "verify")[0] == 0


def test_verify_never_removes_calls_whose_values_all_went_missing(tmp_path):
    store = fill(open_cache(str(tmp_path / "store")))
    for key in list(store.values.list()):
        store.values.evict(key)
    report = store.verify(fix=True)
    assert report.by_kind("missing value") and not report.fixed
    assert "kept" in str(report) and len(list(store.calls.list())) == 10


def test_explain_takes_stored_values_by_prefix(run, sql_store):
    path, store = sql_store
    data = store.shrink(digest(load(3)))
    code, out, _ = run("--cache", path, "explain", f"{__name__}:scale", f"@{data}")
    assert code == 0 and "is stored" in out, out
    code, out, _ = run("--cache", path, "explain", f"{__name__}:scale", f"data=@{data}", "--json")
    assert json.loads(out)["stored"]
    assert run("--cache", path, "explain", f"{__name__}:scale", "@ffffffffff")[0] == 2


def test_output_into_a_closed_pipe_ends_quietly(sql_store):
    path, _ = sql_store
    reader, writer = os.pipe()
    os.close(reader)  # like `| head` that has already read all it wanted
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fleche", "--cache", str(path), "ls", "--json"],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        )
    finally:
        os.close(writer)
    assert done.returncode in (0, 141) and done.stderr == ""


@pytest.mark.parametrize("command", ["ls", "show", "query", "stats", "lineage", "verify"])
def test_reading_commands_create_no_store(run, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLECHE_CACHE", raising=False)
    monkeypatch.setenv("FLECHE_CONFIG", str(tmp_path / "fleche.toml"))
    (tmp_path / "fleche.toml").write_text('root = true\n[named]\ntemplate = "sql"\nroot = "nr"\n')
    (tmp_path / "empty").mkdir()
    argument = {"show": ["abcd"], "query": ["f"], "lineage": ["abcd"]}.get(command, [])
    for options, where in [
        ([], tmp_path / ".fleche"),
        (["--cache", "empty"], tmp_path / "empty"),
        (["--cache", "named"], tmp_path / "nr"),
    ]:
        code, out, err = run(*options, command, *argument)
        assert code == 2 and f"no fleche store at {where}" in err, (options, err)
    assert sorted(os.listdir(tmp_path)) == ["empty", "fleche.toml"]
    assert os.listdir(tmp_path / "empty") == []


def test_help_texts_show_no_markup(capsys):
    from fleche.cli import parser

    top = parser()
    commands = next(a for a in top._actions if a.dest == "==SUPPRESS==" or a.choices)
    for name in [None, *commands.choices]:
        with pytest.raises(SystemExit):
            top.parse_args(["--help"] if name is None else [name, "--help"])
        text = capsys.readouterr().out
        for markup in ("``", ":class:", ":func:", ":mod:", ":meth:", ":doc:"):
            assert markup not in text, (name, markup)


@fleche
def column_sums(frame):
    return frame.sum()


def test_ls_summarises_tables_by_shape_and_show_prints_dates(run, tmp_path):
    import re

    pandas = pytest.importorskip("pandas")
    store = open_cache(str(tmp_path / "store"))
    with cache(store):
        column_sums(pandas.DataFrame({"alpha": range(100), "beta": range(100)}))
    code, out, _ = run("--cache", tmp_path / "store", "ls")
    assert code == 0 and "frame=DataFrame(shape=(100, 2)" in out
    key = column_sums.digest(pandas.DataFrame({"alpha": range(100), "beta": range(100)}))
    code, out, _ = run("--cache", tmp_path / "store", "show", key[:8])
    started = next(line for line in out.splitlines() if "runtime.started" in line)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", started), started
