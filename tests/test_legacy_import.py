"""Importing stores written by the real fleche 0.22 release.

The release runs in a virtual environment of its own (``.ci/legacy-venv``
makes it; this process never imports it) and fills a store of each of its
templates with ``tests/legacy_stores/write_store.py``.  After an import,
the same calls made with our package must all be hits with equal results.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy
import pandas
import pytest
from filelock import FileLock

from fleche import Cache, QueryCall, cache, open_cache
from fleche.cli import main
from fleche.legacy import PROVENANCE, import_store, open_legacy
from fleche.legacy.stores import PickleFiles, SqlCalls
from fleche.legacy.unpickling import loads
from fleche.storage import CallMemory, ValueMemory

HERE = Path(__file__).parent
STORES = HERE / "legacy_stores"
VENV = Path(os.environ.get("FLECHE_LEGACY_VENV", "~/.cache/fleche-legacy-venv-0.22.2")).expanduser()

sys.path.insert(0, str(STORES))  # the workload module, under the same name as in the 0.22 run
workload = importlib.import_module("legacy_workload")
#: Recorded with hash_code=True: its 0.22 code digest cannot be matched, so it runs once more.
RECOMPUTED = [("coded", 1)]

TEMPLATES = {
    "sql-hdf5": {"template": "sql"},
    "sql-pickle": {"template": "sql", "values": "pickle"},
    "pickle": {"template": "pickle"},
    "cloudpickle": {"template": "cloudpickle"},
    "dill": {"template": "dill"},
    "hdf5": {"template": "bagofholding_hdf"},
    "postgres": {"template": "sql", "values": "pickle"},
}


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    """The 0.22 release's interpreter, installed once (under a lock) by .ci/legacy-venv."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{VENV}.lock"):
        made = subprocess.run(
            ["bash", str(HERE.parent / ".ci" / "legacy-venv"), str(VENV)],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    if made.returncode != 0:
        pytest.skip(
            "the fleche 0.22 release could not be installed (no network?): "
            + " ".join(made.stderr.split()[-40:])
        )
    return VENV / "bin" / "python"


def _postgres_url() -> str:
    """A fresh schema on the test server, so the 0.22 tables meet no others."""
    url = os.environ.get("FLECHE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("FLECHE_TEST_POSTGRES_URL is not set: start a server with .ci/start-postgres")
    import sqlalchemy

    schema = f"legacy_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    return str(
        sqlalchemy.make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


def write_legacy_store(
    python: Path, root: Path, config: dict[str, Any], secret_key: str = ""
) -> None:
    """Run the workload under the 0.22 release, in ``root``, into a store of that configuration."""
    environment = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FLECHE_")
    }
    if secret_key:
        environment["FLECHE_SECRET_KEY"] = secret_key
    root.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [str(python), str(STORES / "write_store.py"), json.dumps(config)],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"the 0.22 release failed to write {config}:\n{run.stderr}"


@pytest.fixture(scope="session", params=list(TEMPLATES))
def legacy_store(request, legacy_python, tmp_path_factory) -> dict[str, Any]:
    """A store of one 0.22 template, filled once per session: ``source`` (and ``values``) to import."""
    config = dict(TEMPLATES[request.param])
    root = tmp_path_factory.mktemp(request.param) / "store"
    if request.param == "postgres":
        config["url"] = _postgres_url()
    write_legacy_store(legacy_python, root, {"root": str(root), **config})
    if "url" in config:
        return {"source": config["url"], "values": root / "values"}
    return {"source": root, "values": None}


@pytest.fixture
def store_copy(legacy_store, tmp_path) -> Path:
    """A copy of a file-based 0.22 store, to damage."""
    if legacy_store["values"] is not None:
        pytest.skip("a database store is not copied")
    return Path(shutil.copytree(legacy_store["source"], tmp_path / "copy"))


def fresh() -> Cache:
    return Cache(ValueMemory(), CallMemory())


def run_workload(target: Cache) -> list:
    """Make every call of the workload with our package; returns what it really computed."""
    workload.COMPUTED.clear()
    with cache(target):
        results = [function(*args, **kwargs) for function, args, kwargs in workload.CALLS]
    computed = list(workload.COMPUTED)
    for (function, args, kwargs), got in zip(workload.CALLS, results, strict=True):
        assert_same(got, function.__wrapped__(*args, **kwargs))
    return computed


def assert_same(got: Any, expected: Any) -> None:
    if isinstance(expected, pandas.DataFrame):
        pandas.testing.assert_frame_equal(got, expected)
    elif isinstance(expected, numpy.ndarray):
        numpy.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


def test_every_imported_call_is_a_hit_with_equal_results(legacy_store) -> None:
    target = fresh()
    report = import_store(legacy_store["source"], target, values=legacy_store["values"])
    assert report.ok, report.summary()
    assert (report.total, report.imported) == (len(workload.CALLS), len(workload.CALLS))
    assert report.code_keyed == 1
    assert run_workload(target) == RECOMPUTED


def test_argument_names_metadata_and_provenance_are_kept(legacy_store) -> None:
    target = fresh()
    import_store(legacy_store["source"], target, values=legacy_store["values"])
    for position, (function, args, kwargs) in enumerate(workload.CALLS):
        template = QueryCall(name=function.__name__, metadata={"tags": {"position": position}})
        call = target.query(template).only()
        assert set(call.arguments) == set(inspect.signature(function).parameters)
        assert call.metadata["tags"] == {
            "position": position,
            "parity": "even" if position % 2 == 0 else "odd",
        }
        assert set(call.metadata["runtime"]) >= {"timestart", "timestop", "walltime"}
        assert len(call.metadata[PROVENANCE]["key"]) == 64
        assert_same(call.result, function.__wrapped__(*args, **kwargs))
    described = target.query(QueryCall(name="describe", metadata={"tags": {"position": 3}})).only()
    assert described.arguments["options"] == {"solver": "cg", "tol": 1e-6}
    assert target.query(QueryCall(name="versioned")).only().version == "3"  # versions are text


def test_versions_can_be_dropped(legacy_store) -> None:
    target = fresh()
    import_store(legacy_store["source"], target, values=legacy_store["values"], drop_versions=True)
    assert target.query(QueryCall(name="versioned")).only().version is None
    assert run_workload(target) == [("versioned", "hello"), *RECOMPUTED]


def test_an_interrupted_import_resumes_without_duplicates(legacy_store) -> None:
    target = fresh()
    source, values = legacy_store["source"], legacy_store["values"]
    first = import_store(source, target, values=values, limit=3)
    assert (first.imported, first.remaining) == (3, len(workload.CALLS) - 3)

    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_store(source, target, values=values, progress=interrupt)
    seen = []
    last = import_store(source, target, values=values, progress=lambda *p: seen.append(p))
    assert last.resumed == 5 and last.imported == len(workload.CALLS) - 5
    assert seen[-1] == (len(workload.CALLS), len(workload.CALLS))
    assert target.query().count() == len(workload.CALLS)
    again = import_store(source, target, values=values)
    assert (again.imported, again.resumed) == (0, len(workload.CALLS))
    assert run_workload(target) == RECOMPUTED


def _break_record(store: Path, key: str) -> str:
    """Make the record of call ``key`` unreadable; returns the key the report names."""
    legacy = open_legacy(store)
    try:
        if isinstance(legacy.calls, SqlCalls):
            with sqlite3.connect(store / "calls.db") as connection:
                connection.execute("UPDATE calls SET version = '{' WHERE key = ?", (key,))
            return key
        records = legacy.calls.records
        path = records.root / (
            key if isinstance(records, PickleFiles) else f"{key[: records.prefix]}.h5"
        )
        path.write_bytes(b"not a record")
        return key if isinstance(records, PickleFiles) else path.name
    finally:
        legacy.close()


def _break_value(store: Path, key: str) -> None:
    """Make the result of call ``key`` unreadable."""
    legacy = open_legacy(store)
    value = legacy.calls.load(key).result
    legacy.close()
    values = legacy.values
    name = (
        value
        if isinstance(values, PickleFiles) or values.prefix == 0
        else f"{value[: values.prefix]}.h5"
    )
    (values.root / name).write_bytes(b"\x80\x04 broken")


def test_unreadable_entries_are_reported_and_the_rest_imported(store_copy: Path) -> None:
    before = fresh()
    import_store(store_copy, before)
    keys = {c.name: c.metadata[PROVENANCE]["key"] for c in before.query()}
    named = _break_record(store_copy, keys["describe"])
    _break_value(store_copy, keys["table"])
    report = import_store(store_copy, fresh())
    assert not report.ok
    assert set(report.counts()) == {"record", "value"}
    problems = {p.key: p for p in report.problems}
    assert problems[named].kind == "record"
    assert problems[keys["table"]].kind == "value"
    assert "the result" in problems[keys["table"]].detail
    assert report.imported + len(report.problems) == report.total == len(workload.CALLS)
    assert f"{len(report.problems)} calls not imported" in report.summary()
    assert f"{keys['table'][:12]} value: the result" in report.summary()


def test_the_command_imports_reports_and_resumes(store_copy: Path, tmp_path: Path, capsys) -> None:
    into = str(tmp_path / "ours")
    assert main(["import-legacy", str(store_copy), "--into", into, "--limit", "2"]) == 0
    assert "imported 2 of" in capsys.readouterr().out
    assert main(["import-legacy", str(store_copy), "--into", into, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["imported"], data["resumed"], data["ok"]) == (len(workload.CALLS) - 2, 2, True)
    assert run_workload(open_cache(into)) == RECOMPUTED

    legacy = open_legacy(store_copy)
    key = legacy.calls.keys()[0]
    legacy.close()
    _break_value(store_copy, key)
    assert main(["import-legacy", str(store_copy), "--into", str(tmp_path / "other")]) == 1
    assert "1 calls not imported: 1 value missing or unreadable" in capsys.readouterr().out


def test_a_path_that_is_no_store_is_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["import-legacy", str(tmp_path), "--into", str(tmp_path / "ours")]) == 2
    assert "not a fleche 0.22 store" in capsys.readouterr().err


def test_a_call_the_target_already_holds_is_kept(legacy_store) -> None:
    target = fresh()
    with cache(target):
        ours = workload.scale(1)
    stored = target.query(QueryCall(name="scale")).only().key()
    report = import_store(legacy_store["source"], target, values=legacy_store["values"])
    assert (report.kept, report.imported) == (1, len(workload.CALLS) - 1)
    kept = target.load(stored)
    assert kept.result == ours and PROVENANCE not in kept.metadata


SIGNING = "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="session")
def signed_store(legacy_python, tmp_path_factory) -> Path:
    """A 0.22 pickle store whose entries are signed (``FLECHE_SECRET_KEY``), and compressed."""
    root = tmp_path_factory.mktemp("signed") / "store"
    tables = {
        part: {"type": "pickle", "root": str(root / part), "compress": True}
        for part in ("values", "calls")
    }
    write_legacy_store(legacy_python, root, tables, secret_key=SIGNING)
    return root


def test_signatures_are_checked_when_the_key_is_given(signed_store: Path) -> None:
    target = fresh()
    report = import_store(signed_store, target, secret_key=f"{'ab' * 16}:{SIGNING}")
    assert report.ok and report.imported == len(workload.CALLS)
    assert run_workload(target) == RECOMPUTED
    wrong = import_store(signed_store, fresh(), secret_key="ab" * 16)
    assert wrong.counts() == {"record": len(workload.CALLS)}
    assert "signature does not match" in wrong.problems[0].detail
    assert import_store(signed_store, fresh()).ok  # no key given: signatures are not read
    with pytest.raises(ValueError, match="not a 0.22 secret key"):
        import_store(signed_store, fresh(), secret_key="not hex")


def test_a_class_of_the_old_package_is_refused_by_name() -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"fleche\.caches\.Cache of the fleche 0\.22"):
        loads(b"cfleche.caches\nCache\n.")


def test_a_database_password_is_never_shown(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as failed:  # nothing listens on port 1
        open_legacy("postgresql+psycopg://me:s3cret@127.0.0.1:1/runs", values=tmp_path)
    assert "me:***@127.0.0.1" in str(failed.value) and "s3cret" not in str(failed.value)
