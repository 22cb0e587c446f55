"""fleche.toml discovery, precedence, the embedded default, open_cache and round trips."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from fleche import (
    Cache,
    CachePool,
    CacheStack,
    ConfigError,
    ReadOnlyCache,
    SizeLimitedCache,
    active_cache,
    cache,
    fleche,
    from_config,
    open_cache,
    to_config,
)
from fleche.config import default_cache, embedded_default, load_configuration, named_cache
from fleche.storage import (
    CallMemory,
    CallPickleFile,
    CallVoid,
    Sql,
    ValueMemory,
    ValuePickleFile,
    ValueVoid,
)


@pytest.fixture(autouse=True)
def isolated(isolated_config: Path) -> Path:
    """Every test here runs in a scratch configuration (see conftest.py); the user directory."""
    return isolated_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- discovery ----------------------------------------------------------------------


def test_closer_files_win_and_relative_paths_follow_their_file(tmp_path, monkeypatch, isolated):
    top = tmp_path / "work"
    write(
        top / "fleche.toml",
        '[default]\ncache = "shared"\n[shared]\ntemplate = "pickle"\nroot = "far"\n'
        '[project]\ntemplate = "memory"\n',
    )
    write(top / "a" / "fleche.toml", '[project]\ntemplate = "sql"\nroot = "store"\n')
    write(
        isolated / "fleche.toml", '[personal]\ntemplate = "memory"\n[shared]\ntemplate = "void"\n'
    )
    deep = top / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    configuration = load_configuration()
    assert configuration.files == (
        top / "a" / "fleche.toml",
        top / "fleche.toml",
        isolated / "fleche.toml",
    )
    assert {"project", "shared", "personal"} <= set(configuration.names())
    project = named_cache("project")
    assert project.values.root == top / "a" / "store" / "values"
    assert project.calls.url == str(top / "a" / "store" / "calls.db")
    shared = default_cache()
    assert (
        shared.values.root == top / "far" / "values"
    )  # the farther project file beats the user file
    assert isinstance(named_cache("personal").values, ValueMemory)


def test_root_true_stops_the_walk(tmp_path, monkeypatch, isolated):
    top = tmp_path / "work"
    write(top / "fleche.toml", "[outer]\ntemplate = 'memory'\n")
    write(top / "inner" / "fleche.toml", "root = true\n[inner]\ntemplate = 'memory'\n")
    write(isolated / "fleche.toml", "[personal]\ntemplate = 'memory'\n")
    monkeypatch.chdir(top / "inner")
    assert load_configuration().names() == ["inner", "memory", "void"]
    with pytest.raises(ConfigError, match="outer"):
        named_cache("outer")


def test_user_configuration_alone(isolated):
    write(
        isolated / "fleche.toml",
        "[default]\ncache = 'mine'\n[mine]\ntemplate = 'pickle'\nroot = 'store'\n",
    )
    mine = default_cache()
    assert mine.values.root == isolated / "store" / "values"


def test_fleche_config_names_the_closest_file(tmp_path, monkeypatch):
    explicit = write(tmp_path / "elsewhere" / "settings.toml", "[cluster]\ntemplate = 'memory'\n")
    write(tmp_path / "work" / "fleche.toml", "[cluster]\ntemplate = 'void'\n")
    monkeypatch.setenv("FLECHE_CONFIG", str(explicit))
    assert isinstance(named_cache("cluster").values, ValueMemory)
    monkeypatch.setenv("FLECHE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="FLECHE_CONFIG"):
        load_configuration()


# -- precedence and the default ------------------------------------------------------------


def test_embedded_default_is_pickle_values_and_sqlite_calls_under_dot_fleche(tmp_path):
    default = default_cache()
    work = tmp_path / "work"
    assert isinstance(default, Cache)
    assert (
        isinstance(default.values, ValuePickleFile)
        and default.values.root == work / ".fleche" / "values"
    )
    assert isinstance(default.calls, Sql) and default.calls.url == str(
        work / ".fleche" / "calls.db"
    )
    assert default is embedded_default()


def test_precedence_argument_over_environment_over_file(tmp_path, monkeypatch):
    write(
        tmp_path / "work" / "fleche.toml",
        "[default]\ncache = 'filed'\n[filed]\ntemplate = 'memory'\n[env]\ntemplate = 'memory'\n",
    )
    filed, env = named_cache("filed"), named_cache("env")
    assert default_cache() is filed
    monkeypatch.setenv("FLECHE_CACHE", "env")
    assert default_cache() is env
    explicit = Cache(ValueMemory(), CallMemory())
    with cache(explicit):
        assert active_cache() is explicit
    monkeypatch.setenv("FLECHE_CACHE", "nowhere")
    with pytest.raises(ConfigError, match="FLECHE_CACHE"):
        default_cache()


def test_a_named_stack_end_to_end(tmp_path):
    write(
        tmp_path / "work" / "fleche.toml",
        """
[project]
template = "sql"
root = "store"

[fast]
template = "stack"
layers = [{ template = "memory", max_bytes = 100_000 }, "project"]
""",
    )
    runs = []

    @fleche
    def square(x):
        runs.append(x)
        return x * x

    with cache("fast") as active:
        assert isinstance(active, CacheStack)
        assert isinstance(active.layers[0], SizeLimitedCache)
        assert active.layers[1] is named_cache("project")
        assert square(4) == 16 and square(4) == 16
    assert runs == [4]
    with cache("project"):
        assert square(4) == 16 and runs == [4]


# -- errors name the file and the key -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[p]\ntemplate = 'sql'\nroot = 's'\nrooot = 'x'\n", "[p].rooot", "unknown key"),
        ("[p]\ntemplate = 'sqlite'\n", "[p].template", "unknown template 'sqlite'"),
        ("[p]\nroot = 'x'\n", "[p]", "no 'template'"),
        (
            "[p]\ntemplate = 'stack'\nlayers = ['memory', 'nope']\n",
            "[p].layers[1]",
            "unknown cache name 'nope'",
        ),
        (
            "[p]\ntemplate = 'stack'\nlayers = ['q']\n[q]\ntemplate = 'pool'\ncaches = ['p']\n",
            "[q].caches[0]",
            "cycle",
        ),
        ("[memory]\ntemplate = 'memory'\n", "memory", "reserved"),
        ("cache = 'x'\n", "cache", "unknown top-level key"),
        ("[default]\ncahce = 'x'\n", "[default].cahce", "unknown key"),
        ("[p]\ntemplate = 'memory'\nttl = 'forever'\n", "[p].ttl", "duration"),
        ("[p]\ntemplate = 'memory'\npolicy = 'lru'\n", "[p].policy", "max_bytes"),
        ("[p]\ntemplate = 'memory'\nread_only = 'yes'\n", "[p].read_only", "expected bool"),
        (
            "[p]\nvalues = { type = 'ValueMemory' }\ncalls = { type = 'Nope' }\n",
            None,
            "unknown storage type 'Nope'",
        ),
        (
            "[p]\nvalues = { type = 'ValueMemory', colour = 1 }\ncalls = { type = 'CallMemory' }\n",
            None,
            "colour",
        ),
    ],
)
def test_configuration_errors_name_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path / "work" / "fleche.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_configuration()
        named_cache("p")
    assert info.value.file == str(path) and str(path) in str(info.value)
    if key is not None:
        assert info.value.key == key and key in str(info.value)


def test_bad_toml_names_the_file(tmp_path):
    path = write(tmp_path / "work" / "fleche.toml", "[p\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_configuration()
    assert info.value.file == str(path)


def test_unknown_cache_name_is_an_error_not_a_fallback():
    with pytest.raises(ConfigError, match="unknown cache name 'projekt'.*memory"):
        cache("projekt")


# -- open_cache ------------------------------------------------------------------------------


def test_open_cache_by_path_url_table_and_file(tmp_path):
    work = tmp_path / "work"
    fresh = open_cache("./runs")
    assert isinstance(fresh.calls, Sql) and fresh.values.root == work / "runs" / "values"
    assert open_cache(work / "runs") is fresh  # one object per description
    fresh.save(_call())
    assert open_cache(str(work / "runs")).load_result(_call().key()) == 2
    by_db = open_cache(work / "runs" / "calls.db")
    assert by_db.load_result(_call().key()) == 2
    by_url = open_cache(f"sqlite:///{work / 'runs' / 'calls.db'}")
    assert by_url.load_result(_call().key()) == 2
    pickled = from_config({"template": "pickle", "root": "p"})
    pickled.save(_call())
    assert isinstance(open_cache("./p").calls, CallPickleFile)
    write(
        work / "other" / "fleche.toml",
        "[default]\ncache = 'x'\n[x]\ntemplate = 'pickle'\nroot = 'data'\n",
    )
    assert open_cache(work / "other").values.root == work / "other" / "data" / "values"
    assert (
        open_cache(work / "other" / "fleche.toml").values.root == work / "other" / "data" / "values"
    )
    assert isinstance(open_cache({"template": "memory"}).values, ValueMemory)
    assert open_cache("memory") is open_cache("memory")


def test_open_cache_refuses_what_it_cannot_place(tmp_path):
    write(tmp_path / "work" / "junk" / "notes.txt", "hello")
    with pytest.raises(ConfigError, match="not a fleche store"):
        open_cache("./junk")
    with pytest.raises(ConfigError, match="values a home"):
        open_cache("postgresql+psycopg://user@host/db")
    with pytest.raises(TypeError):
        open_cache(42)


def _call():
    from fleche import Call

    return Call(name="f", module="tests", arguments={"x": 1}, result=2)


# -- round trips ----------------------------------------------------------------------------


def _round_trip_cases(root: Path):
    def memory():
        return Cache(ValueMemory(), CallMemory())

    pickle_store = Cache(
        ValuePickleFile(root=root / "p" / "values", compression="zlib"),
        CallPickleFile(root=root / "p" / "calls", compression="zlib"),
    )
    sql_store = Cache(
        ValuePickleFile(root=root / "s" / "values"), Sql(url=str(root / "s" / "calls.db")), ttl=3600
    )
    elsewhere = Cache(
        ValuePickleFile(root=root / "e" / "values"), Sql(url=str(root / "db" / "calls.db"))
    )
    explicit = Cache(ValuePickleFile(root=root / "v", fsync=True), CallPickleFile(root=root / "c"))
    return {
        "memory": memory(),
        "void": Cache(ValueVoid(), CallVoid()),
        "pickle": pickle_store,
        "sql": sql_store,
        "sql-url": elsewhere,
        "explicit": explicit,
        "read-only": ReadOnlyCache(sql_store),
        "size-limited-memory": SizeLimitedCache(memory(), max_bytes=1000, policy="fifo"),
        "size-limited-file": SizeLimitedCache(
            sql_store, max_bytes=10**9, index=root / "s" / "size-index.db"
        ),
        "stack": CacheStack(
            [SizeLimitedCache(memory(), max_bytes=10**6), sql_store], retry_after=5
        ),
        "pool": CachePool([ReadOnlyCache(pickle_store), sql_store]),
    }


def test_every_serialisable_cache_round_trips(tmp_path):
    for name, original in _round_trip_cases(tmp_path).items():
        table = to_config(original)
        assert _toml_ready(table), name
        assert from_config(table) == original, name
        assert pickle.loads(pickle.dumps(original)) == original, name
        relative = to_config(original, relative_to=tmp_path)
        assert from_config(relative, base=tmp_path) == original, name


def test_round_trip_of_hdf5_templates(tmp_path):
    pytest.importorskip("bagofholding")
    for calls in ("sql", "pickle"):
        table = {"template": "hdf5", "root": str(tmp_path / calls), "calls": calls}
        built = from_config(table)
        assert to_config(built) == (
            table if calls == "pickle" else {"template": "hdf5", "root": table["root"]}
        )
        assert from_config(to_config(built)) == built


def _toml_ready(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _toml_ready(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_toml_ready(v) for v in value)
    return isinstance(value, str | int | float | bool)


def test_what_cannot_be_configured_says_so(tmp_path):
    store = Cache(ValueMemory(), CallMemory())
    with pytest.raises(ConfigError, match="FilteredCache"):
        to_config(store.filter(lambda call: True))
    with pytest.raises(ConfigError, match="clock"):
        to_config(Cache(ValueMemory(), CallMemory(), clock=lambda: 0.0))
    signed = Cache(
        ValuePickleFile(root=tmp_path / "v", secret_key="k"), CallPickleFile(root=tmp_path / "c")
    )
    with pytest.raises(ConfigError, match="FLECHE_SECRET_KEY"):
        to_config(signed)


# -- store layouts (issue 11, item 1) ------------------------------------------------------


def test_a_store_records_its_layout_and_is_reopened_with_it(tmp_path):
    pytest.importorskip("bagofholding")
    root = tmp_path / "h5"
    made = open_cache({"template": "hdf5", "root": str(root), "calls": "pickle"})
    made.save(_call())
    import json

    assert json.loads((root / "fleche-store.json").read_text()) == {
        "calls": "pickle",
        "fleche_store": 1,
        "template": "hdf5",
    }
    reopened = open_cache(str(root))
    assert type(reopened.values) is type(made.values) and type(reopened.calls) is CallPickleFile
    assert reopened.load_result(_call().key()) == 2
    with pytest.raises(ConfigError, match="created as a hdf5"):
        from_config({"template": "pickle", "root": str(root)})


def test_a_store_without_a_record_is_recognised_by_its_content(tmp_path):
    from fleche.store_layout import sniff

    assert sniff(tmp_path) is None
    (tmp_path / "values" / "ab" / "cd").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no calls.db"):
        sniff(tmp_path)
    (tmp_path / "calls.db").write_bytes(b"")
    assert sniff(tmp_path) == {"template": "hdf5", "calls": "sql"}
    (tmp_path / "values" / "abc").mkdir()
    with pytest.raises(ConfigError, match="both pickle"):
        sniff(tmp_path)
    (tmp_path / "values" / "ab" / "cd").rmdir()
    (tmp_path / "values" / "ab").rmdir()
    assert sniff(tmp_path) == {"template": "sql"}


def test_a_read_only_store_gets_no_record(tmp_path):
    root = tmp_path / "store"
    open_cache(str(root)).save(_call())
    (root / "fleche-store.json").unlink()
    assert open_cache({"template": "sql", "root": str(root), "read_only": True}).contains(
        _call().key()
    )
    assert not (root / "fleche-store.json").exists()
