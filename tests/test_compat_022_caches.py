"""Code written for the fleche 0.22 release runs unchanged: caches, queries, configuration,
digest hooks (with a really installed plugin package), metadata recorders and signing.

Written from the public API page of that release (names and signatures), not from its tests.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fleche
from fleche.caches import (
    BaseCache,
    Cache,
    CachePool,
    CacheStack,
    CacheWrapper,
    FilteredCache,
    FilteringMixin,
    ReadOnlyCache,
    ReadOnlyMixin,
    RefreshingCache,
    Rejected,
    SizeLimitedCache,
    SizeLimitedMixin,
)
from fleche.call import Call, LazyCall, PreparedCall, QueryCall
from fleche.config import (
    cache_from_config,
    cache_to_config,
    load_cache_config,
    load_default_metadata,
    register_cache_type,
    storage_from_config,
    storage_to_config,
)
from fleche.digest import (
    Digest,
    Hook,
    Indigestible,
    add_hook,
    digest,
    digest_class,
    get_hooks,
    load_entry_points,
    remove_hook,
)
from fleche.errors import ConfigError, ReadOnlyError, SignatureError
from fleche.metadata import (
    CONFIGURABLE,
    Environment,
    Git,
    JSONValue,
    MetaData,
    Runtime,
    Tags,
    configurable,
    record,
)
from fleche.query import QueryIterator
from fleche.security import SignedBytes, get_secret_key, normalize_secret_key
from fleche.storage import (
    CallMemory,
    CallPickleFile,
    Sql,
    ValueMemory,
    ValuePickleFile,
)

DATA = Path(__file__).parent / "data"


def memory() -> Cache:
    return Cache(ValueMemory(), CallMemory())


def square_call(x: int, offset: int = 0) -> Call:
    return Call(
        name="square", module="tests", arguments={"x": x, "offset": offset}, result=x * x + offset
    )


@pytest.fixture
def store() -> Cache:
    cache = memory()
    for x in range(4):
        cache.save(square_call(x))
    cache.save(square_call(3, offset=1))
    return cache


# -- fleche.caches -------------------------------------------------------------------


def test_rejected_is_what_a_read_only_cache_raises(store):
    assert issubclass(ReadOnlyError, Rejected) and BaseCache is fleche.CacheBase
    for refusing in (ReadOnlyCache(store), store.readonly(), CachePool((store,))):
        with pytest.raises(Rejected):
            refusing.save(square_call(9))
        with pytest.raises(Rejected):
            refusing.evict(square_call(1).key())
    assert store.contains(square_call(1).key())


def test_base_cache_operations(store):
    key = store.save(square_call(5))
    assert isinstance(key, str) and key == square_call(5).key()
    call = store.load(key)
    assert isinstance(call, LazyCall) and call.result == 25 and call.arguments["x"] == 5
    assert store.load_value(call.digested_call.result) == 25
    short = store.shrink(key)
    assert isinstance(short, Digest) and len(short) < len(key) and store.expand(short) == key
    both = store.shrink(key, call.digested_call.result)
    assert isinstance(both, tuple) and [store.expand(s) for s in both] == [key, digest(25)]
    assert store.contains(key)
    store.evict(key)
    assert not store.contains(key)


def test_prepare_a_plain_call_then_commit(store):
    prepared = store.prepare(Call(name="cube", module="tests", arguments={"x": 2}))
    assert isinstance(prepared, PreparedCall)
    key = prepared.commit(8)
    assert store.load(key).result == 8 and store.load(key).arguments == {"x": 2}


def test_query_takes_template_fields_as_keywords(store):
    assert store.query(name="square").count() == 5
    assert store.query(name="nothing").empty()
    assert store.query(QueryCall(arguments={"x": 3})).count() == 2
    assert store.query(QueryCall(name="square"), arguments={"offset": 1}).only().result == 10


def test_transfer_with_pop_and_overwrite(store):
    other = memory()
    assert store.transfer(other) == 5
    assert store.transfer(other) == 0  # all there already
    assert store.transfer(other, overwrite=True) == 5
    third = memory()
    assert store.transfer(third, True) == 5  # positional pop, as in 0.22
    assert store.query().empty() and third.query().count() == 5


def test_push_readonly_filter_and_table(store):
    top = memory()
    stack = store.push(top)
    assert isinstance(stack, CacheStack) and stack.stack == (top, store)
    assert isinstance(store.readonly(), ReadOnlyCache)
    odd = store.filter(lambda call: call.arguments["x"] % 2 == 1)
    assert isinstance(odd, FilteredCache) and odd.query().count() == 3
    templated = store.filter(QueryCall(arguments={"x": 3}))
    assert templated.query().count() == 2
    table = store.table(arguments=("x",), results=True, shrink_keys=False)
    assert sorted(table["result"]) == [0, 1, 4, 9, 10]
    assert all(len(key) == 32 for key in table["key"])


def test_cache_positional_gc_returns_a_set(store):
    orphan = store.values.save("orphan")
    assert store.gc(grace=0) == {orphan}
    assert store.gc(grace=0) == set()


def test_redigest_moves_values_and_calls_stored_under_old_digests():
    cache = memory()
    old_x, old_result = Digest("ab" * 16), Digest("cd" * 16)
    cache.values.save(3, old_x)
    cache.values.save(9, old_result)
    plain = Call(name="square", module="tests", arguments={"x": 3}, result=9)
    stale = dataclasses.replace(plain.digested(), arguments={"x": old_x}, result=old_result)
    cache.calls.save(stale)
    assert not cache.contains(plain.key())
    assert cache.redigest() == 3  # two values and one call moved
    assert cache.load(plain.key()).result == 9 and cache.load(plain.key()).arguments["x"] == 3
    assert cache.redigest() == 0


def test_wrapper_and_policies_forward_to_the_inner_cache(store):
    wrapped = CacheWrapper(store)
    key = wrapped.save(square_call(7))
    assert store.load(key).result == 49 and wrapped.load(key).result == 49
    assert wrapped.query().count() == 6 and wrapped.expand(key[:8]) == key
    refreshing = RefreshingCache(store)
    assert refreshing.contains(key)
    with pytest.raises(KeyError):
        refreshing.load_result(key)


def test_mixins_fit_in_front_of_a_cache_class():
    class Frozen(ReadOnlyMixin, Cache):
        pass

    frozen = Frozen(ValueMemory(), CallMemory())
    with pytest.raises(Rejected):
        frozen.save(square_call(1))
    assert frozen.gc(dry_run=True) == set()

    @dataclasses.dataclass(frozen=True)
    class Evens(FilteringMixin, Cache):
        predicate: Callable[[LazyCall], bool] = lambda call: call.arguments["x"] % 2 == 0

    evens = Evens(ValueMemory(), CallMemory())
    for x in range(4):
        evens.save(square_call(x))
    assert sorted(call.arguments["x"] for call in evens.query()) == [0, 2]
    assert not evens.contains(square_call(1).key())


def test_stack_pool_and_size_limited_in_the_022_forms(store):
    top = memory()
    stack = CacheStack((top, store))
    assert stack.load_result(square_call(2).key()) == 4 and top.contains(square_call(2).key())
    pool = CachePool((memory(), store))
    assert pool.caches[1] is store and pool.query().count() == 5
    assert CacheStack(stack=(top, store)) == stack
    with pytest.raises(TypeError):
        CacheStack((top,), stack=(store,))
    by_keyword = SizeLimitedCache(values=ValueMemory(), calls=CallMemory(), max_size=3)
    assert by_keyword.max_calls == 3 and by_keyword.max_bytes is None
    limited = SizeLimitedCache(ValueMemory(), CallMemory(), 2)
    assert isinstance(limited, SizeLimitedMixin) and limited.max_calls == 2
    keys = [limited.save(square_call(x)) for x in range(4)]
    assert limited.query().count() == 2
    assert [limited.contains(k) for k in keys] == [False, False, True, True]


class DuckCache:
    """The cache interface by delegation, without subclassing anything of ours."""

    def __init__(self) -> None:
        self.inner = memory()
        self.read_only = False
        self.persistent = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Minimal(BaseCache):
    """A cache written against the 0.22 interface only: none of our extra operations."""

    def __init__(self) -> None:
        self.inner = memory()

    def save(self, call):
        return self.inner.save(call)

    def prepare(self, call, arguments=None, key=None):
        return self.inner.prepare(call, arguments, key)

    def load(self, key):
        return self.inner.load(key)

    def load_value(self, key):
        return self.inner.load_value(key)

    def evict(self, key):
        self.inner.evict(key)

    def expand(self, key):
        return self.inner.expand(key)

    def contains(self, key):
        return self.inner.contains(key)

    def query(self, template=None, **kwargs):
        return self.inner.query(template, **kwargs)


def test_a_cache_written_against_the_022_base_class(store):
    minimal = Minimal()
    stack = CacheStack((minimal, store))
    assert stack.load_result(square_call(2).key()) == 4  # copied up into the minimal cache
    assert minimal.load_result(square_call(2).key()) == 4 and minimal.now() > 0
    assert minimal.referenced() == set(minimal.load(square_call(2).key()).digested_call.values())
    with pytest.raises(Rejected, match="garbage"):
        minimal.gc()
    assert minimal.table(arguments=("x",))["x"].tolist() == [2]


def test_compositions_take_any_object_with_the_cache_interface(store):
    duck = DuckCache()
    stack = CacheStack([duck, store])
    assert stack.load(square_call(1).key()).result == 1
    assert duck.contains(square_call(1).key())  # copied up into the duck
    assert CachePool([duck, store]).query().count() == 5
    assert ReadOnlyCache(duck).contains(square_call(1).key())
    assert fleche.open_cache(duck) is duck


# -- fleche.query ----------------------------------------------------------------------


def test_query_iterator_without_a_cache(store):
    calls = list(store.query())
    query = QueryIterator(lambda: calls)
    assert query.cache is None and query.count() == 5 and query.count() == 5  # re-iterable
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.cache = store
    assert [c.arguments["x"] for c in query.sorted("x", reverse=True).take(2)] == [3, 3]
    assert [c.arguments["x"] for c in query.sorted(lambda c: c.result).skip(3)] == [3, 3]
    assert query.filter(lambda c: c.arguments["x"] > 1).count() == 3
    assert query.unique("x").count() == 4
    groups = query.groupby("x")
    assert set(groups) == {0, 1, 2, 3} and all(
        isinstance(g, QueryIterator) for g in groups.values()
    )
    assert sorted(groups[3].results()) == [9, 10]
    assert sorted(query.results()) == [0, 1, 4, 9, 10]
    assert query.latest() is not None and query.oldest() is not None
    with pytest.raises(ValueError, match="no cache"):
        query.evict()


def test_only_any_empty(store):
    assert store.query(arguments={"x": 2}).only().result == 4
    with pytest.raises(IndexError):
        store.query(arguments={"x": 99}).only()
    with pytest.raises(ValueError):
        store.query(arguments={"x": 3}).only()
    first = store.query(arguments={"x": 3}).any()
    assert isinstance(first, LazyCall) and first.arguments["x"] == 3
    assert store.query(arguments={"x": 99}).any() is None
    assert store.query(arguments={"x": 99}).empty() and not store.query().empty()


def test_query_evict_and_transfer(store):
    other = memory()
    assert store.query(arguments={"x": 3}).transfer(other, pop=True) == 2
    assert other.query().count() == 2 and store.query().count() == 3
    assert store.query(arguments={"x": 0}).evict() == 1 and store.query().count() == 2


def test_table_022_keywords_and_ours(store):
    short = store.query().table(arguments=("x",))
    assert sorted(short["x"]) == [0, 1, 2, 3, 3]
    assert all(len(key) < 32 for key in short["key"])  # shrink_keys by default
    assert all(store.load_value(d) in (0, 1) for d in short["offset"])  # a digest, not loaded
    assert all(len(r) < 32 for r in short["result"])
    ours = store.query().table()
    assert sorted(ours["result"]) == [0, 1, 4, 9, 10] and all(len(k) == 32 for k in ours["key"])
    assert all(len(d) == 32 for d in store.query().table(values=False)["result"])


# -- fleche.config -----------------------------------------------------------------------


@pytest.fixture
def project(isolated_config: Path) -> Path:
    """A scratch project directory, the working one, with no configuration around it."""
    return Path.cwd()


def toml(directory: Path, text: str) -> None:
    (directory / "fleche.toml").write_text(text)


def roundtrip(cache: Any) -> Any:
    """``cache_to_config`` then ``cache_from_config`` gives an equal cache."""
    config = cache_to_config(cache)
    assert cache_from_config(config) == cache
    return config


def test_array_of_tables_is_a_stack(project):
    toml(
        project,
        """
[[layered]]
values.type = "memory"
calls.type = "memory"

[[layered]]
values.type = "cloudpickle"
values.root = "store/values"
calls.type = "cloudpickle"
calls.root = "store/calls"
""",
    )
    stack = load_cache_config("layered")
    assert isinstance(stack, CacheStack)
    lower = stack.layers[1]
    assert lower.values == ValuePickleFile(root=project / "store/values", serializer="cloudpickle")
    assert lower.calls == CallPickleFile(root=project / "store/calls", serializer="cloudpickle")
    assert isinstance(roundtrip(stack), list)


def test_pool_table(project):
    toml(
        project,
        """
[[shared.pool]]
template = "pickle"
root = "mine"

[[shared.pool]]
template = "dill"
root = "theirs"
read_only = true
""",
    )
    pool = load_cache_config("shared")
    assert isinstance(pool, CachePool) and isinstance(pool.caches[1], ReadOnlyCache)
    assert pool.caches[1].cache.values.serializer == "dill"
    assert list(roundtrip(pool)) == ["pool"]


@pytest.mark.parametrize("template", ["memory", "pickle", "cloudpickle", "dill", "sql"])
def test_templates(project, template):
    toml(
        project,
        f'[c]\ntemplate = "{template}"\n' + ("" if template == "memory" else 'root = "s"\n'),
    )
    cache = load_cache_config("c")
    assert isinstance(cache, Cache)
    if template != "memory":
        assert cache.values.root == project / "s/values"
    if template in ("cloudpickle", "dill"):
        assert cache.calls.serializer == template
    if template == "sql":
        assert isinstance(cache.calls, Sql)
    roundtrip(cache)


def test_hdf5_template_and_storage(tmp_path):
    pytest.importorskip("bagofholding")
    from fleche.storage import CallBagOfHoldingH5File, ValueBagOfHoldingH5File

    cache = cache_from_config({"template": "bagofholding_hdf", "root": str(tmp_path / "x")})
    assert isinstance(cache.values, ValueBagOfHoldingH5File)
    assert isinstance(cache.calls, CallBagOfHoldingH5File)
    roundtrip(cache)
    sql_hdf = cache_from_config(
        {"template": "sql", "root": str(tmp_path / "y"), "values": "bagofholding_hdf"}
    )
    assert isinstance(sql_hdf.values, ValueBagOfHoldingH5File) and isinstance(sql_hdf.calls, Sql)


def test_max_size_read_only_and_urls(project, monkeypatch):
    toml(
        project,
        """
[limited]
values.type = "memory"
calls.type = "memory"
max_size = 2
read_only = true

[plain]
values = { type = "pickle", root = "v", compress = true }
calls = { type = "sql", url = "calls.db" }

[nothing]
values.type = "void"
calls.type = "void"
""",
    )
    limited = load_cache_config("limited")
    assert isinstance(limited, ReadOnlyCache) and isinstance(limited.cache, SizeLimitedCache)
    assert limited.cache.max_calls == 2
    assert cache_to_config(limited)["max_size"] == 2
    home = project / "home"
    monkeypatch.setenv("HOME", str(home))
    tilde = cache_from_config(
        {"values": {"type": "memory"}, "calls": {"type": "sql", "url": "sqlite:///~/calls.db"}}
    )
    assert tilde.calls.url == f"sqlite:///{home / 'calls.db'}"
    plain = load_cache_config("plain")
    assert plain.values == ValuePickleFile(root=project / "v", compression="zlib")
    assert plain.calls == Sql(url=str(project / "calls.db"))
    roundtrip(plain)
    roundtrip(load_cache_config("nothing"))


def test_default_section_metadata_and_root(project):
    toml(project.parent, '[parent]\ntemplate = "memory"\n')
    toml(
        project,
        '[default]\ncache = "mine"\nmetadata = ["Runtime", "Git"]\n\n[mine]\ntemplate = "memory"\n',
    )
    assert load_cache_config("parent") is not None  # inherited from the directory above
    recorders = load_default_metadata()
    assert [type(r) for r in recorders] == [Runtime, Git]
    assert isinstance(load_cache_config(), Cache)
    toml(project, '[default]\nroot = true\nmetadata = ["Nope"]\n')
    with pytest.raises(ConfigError, match="parent"):
        load_cache_config("parent")  # the search stopped at the closer file
    with pytest.raises(ConfigError, match="Nope"):
        load_default_metadata()


def test_default_metadata_without_configuration(project):
    toml(project, "[default]\nroot = true\n")
    assert {type(r) for r in load_default_metadata()} == {Runtime, Environment, Git, Tags}


def test_storage_from_and_to_config(project):
    values = storage_from_config({"type": "pickle", "root": "v"}, "value")
    calls = storage_from_config({"type": "dill", "root": "c"}, "call")
    assert values == ValuePickleFile(root=project / "v") and calls == CallPickleFile(
        root=project / "c", serializer="dill"
    )
    for storage in (values, calls, ValueMemory(storage={}), Sql()):
        kind = "call" if storage is calls or isinstance(storage, Sql) else "value"
        assert storage_from_config(storage_to_config(storage), kind) == storage
    with pytest.raises(ConfigError, match="call storage only"):
        storage_from_config({"type": "sql"}, "value")
    signed = storage_from_config({"type": "pickle", "root": "s", "secret_key": ["0a0b"]}, "value")
    assert signed.secret_key == (b"\n\x0b",)


@dataclasses.dataclass(frozen=True)
class FakeRemote(CacheWrapper):
    """Stands for a cache type registered by another module (the SSH cache)."""

    host: str = "far"

    def to_config(self) -> dict[str, Any]:
        return {"type": "test-fake", "host": self.host}


def test_cache_types_are_registered_not_hard_coded(project):
    from fleche.remote import SshCache

    assert cache_from_config({"type": "ssh", "host": "far"}) == SshCache("far")
    with pytest.raises(ConfigError, match="unknown cache type 'no-such-type'"):
        cache_from_config({"type": "no-such-type", "host": "far"})
    register_cache_type(
        "test-fake", lambda table, base: FakeRemote(memory(), table["host"]), replace=True
    )
    built = cache_from_config({"type": "test-fake", "host": "there"})
    assert built == FakeRemote(memory(), "there")
    assert cache_to_config(built) == {"type": "test-fake", "host": "there"}
    assert cache_to_config(CacheStack([memory(), built])) == [
        {"template": "memory"},
        built.to_config(),
    ]
    assert Cache.from_config({"template": "memory"}) == memory()


# -- fleche.metadata -------------------------------------------------------------------------


class Counter022(MetaData):
    """A recorder written against the 0.22 protocol."""

    name = "counter"

    def pre(self, call: Any) -> dict[str, Any]:
        return {"seen": call}

    def post(self, pre: dict[str, Any], call: Any) -> dict[str, Any]:
        return {"same_call": pre["seen"] is call, "n": 1}

    @property
    def keys(self) -> frozenset[str]:
        return frozenset({"same_call", "n"})


def test_record_runs_both_kinds_of_recorder():
    call = object()
    _, stop = record((Counter022(), Runtime(), Tags({"project": "x"}), Tags({"phase": 1})), call)
    recorded = stop()
    assert recorded["counter"] == {"same_call": True, "n": 1}
    assert set(recorded["runtime"]) == Runtime().keys
    assert recorded["tags"] == {"project": "x", "phase": 1}  # recorders of one name merge


def test_022_recorders_run_around_decorated_calls(memory):
    @fleche.fleche
    def double(x):
        return 2 * x

    with fleche.meta(Counter022()):
        double(4)
    assert double.query(x=4).only().metadata["counter"]["n"] == 1


def test_configurable_and_builtin_recorders():
    @configurable
    class Marker(MetaData):
        name = "marker"

        def pre(self, call):
            return {}

        def post(self, pre, call):
            return {"here": True}

    try:
        assert CONFIGURABLE["Marker"] is Marker
        assert {"Runtime", "Environment", "Git"} <= set(CONFIGURABLE)
    finally:
        del CONFIGURABLE["Marker"]
    for recorder in (Runtime(), Environment(), Git()):
        pre = recorder.pre(None)
        assert set(recorder.post(pre, None)) <= recorder.keys
    assert Tags({"a": 1}, name="labels").post(Tags({"a": 1}).pre(None), None) == {"a": 1}
    assert Tags({"a": 1}, name="labels").name == "labels"
    assert JSONValue is not None


# -- fleche.security ----------------------------------------------------------------------------


def test_normalize_secret_key():
    assert normalize_secret_key(b"raw") == [b"raw"]
    assert normalize_secret_key("0a0b:ff") == [b"\n\x0b", b"\xff"]
    assert normalize_secret_key([b"raw", "0a"]) == [b"raw", b"\n"]
    with pytest.raises(ConfigError, match="hexadecimal"):
        normalize_secret_key("not hex")


def test_get_secret_key(monkeypatch):
    monkeypatch.setenv("FLECHE_SECRET_KEY", "0102:0304")
    assert get_secret_key() == [b"\x01\x02", b"\x03\x04"]
    monkeypatch.delenv("FLECHE_SECRET_KEY")
    assert get_secret_key() == []


def test_signed_bytes_round_trip_tamper_and_rotation():
    old, new = SignedBytes("aa"), SignedBytes(["bb", "aa"])
    signed = old.dumps(b"payload")
    assert new.loads(signed) == b"payload"  # the old key still verifies
    with pytest.raises(SignatureError):
        SignedBytes("bb").loads(signed)
    with pytest.raises(SignatureError):
        old.loads(signed[:-1] + b"X")
    with pytest.raises(SignatureError):
        old.loads(b"short")


# -- fleche.digest hooks, with a really installed plugin package ------------------------------------


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``tests/data/fleche_test_hooks`` installed by pip into a directory put on ``sys.path``.

    Installed with ``--target`` rather than into the interpreter's own
    site-packages: the environment is shared, and a plugin left installed
    there would load into every other fleche process.  Entry points are
    read once before the install, so finding the plugin proves they are
    read again before a value is refused.
    """
    load_entry_points()
    source = tmp_path_factory.mktemp("plugin-source") / "fleche_test_hooks"
    shutil.copytree(DATA / "fleche_test_hooks", source)
    target = tmp_path_factory.mktemp("plugin-site")
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target)]
    errors = []
    for isolation in (["--no-build-isolation", "--no-index"], []):  # offline first
        done = subprocess.run([*base, *isolation, str(source)], capture_output=True, text=True)
        if done.returncode == 0:
            break
        errors.append(done.stderr.strip().splitlines()[-1:] or ["?"])
    else:
        pytest.skip(f"pip could not install the test plugin: {errors}")
    sys.path.insert(0, str(target))
    import fleche_test_hooks

    yield fleche_test_hooks
    sys.path.remove(str(target))


def test_entry_point_hooks_of_an_installed_package(plugin, caplog):
    with caplog.at_level(logging.ERROR, logger="fleche.digest"):
        a = digest(plugin.Atom("H", (0, 0, 0)))
    assert a != digest(plugin.Atom("H", (0, 0, 1))) and a == digest(plugin.Atom("H", (0, 0, 0)))
    assert "broken" in caplog.text  # the failing entry point was logged, not raised
    water = plugin.Molecule([plugin.Atom("O", (0, 0, 0)), plugin.Atom("H", (1, 0, 0))])
    assert isinstance(digest(water), Digest)
    assert any(hook.type is plugin.Atom for hook in get_hooks())


def test_hooks_added_by_hand_win_and_come_first(plugin):
    from_plugin = digest(plugin.Shadowed(1))
    add_hook(Hook(plugin.Shadowed, lambda shadowed: ("by hand", shadowed.value)))
    try:
        assert digest(plugin.Shadowed(1)) != from_plugin
        assert get_hooks()[0] == Hook(plugin.Shadowed, get_hooks()[0].digest)
    finally:
        remove_hook(plugin.Shadowed)
    assert digest(plugin.Shadowed(1)) == from_plugin


def test_add_hook_022_forms_newest_first():
    class Celsius:
        def __init__(self, degrees):
            self.degrees = degrees

    class Kelvin(Celsius):
        pass

    add_hook((Celsius, lambda c: c.degrees))
    add_hook(Hook(Kelvin, lambda k: k.degrees + 273.15))
    try:
        hooks = get_hooks()
        assert [h.type for h in hooks[:2]] == [Kelvin, Celsius]
        assert digest(Kelvin(1)) != digest(Celsius(1))
        negative = digest(Celsius(-1))
        add_hook((Celsius, lambda c: -c.degrees))  # the 0.22 forms replace
        assert digest(Celsius(1)) == negative
    finally:
        remove_hook(Celsius)
        remove_hook(Kelvin)


def test_indigestible_names_the_value_and_digest_class():
    guard = threading.Lock()  # refused by every digest rule: a lock carries no value
    with pytest.raises(Indigestible) as caught:
        digest({"deep": [guard]})
    assert caught.value.args[0] is guard and "lock" in str(caught.value)

    class Opaque:
        pass

    assert isinstance(digest_class(Opaque), Digest) and digest_class(Opaque) != digest_class(Call)
    with pytest.raises(TypeError):
        digest_class(Opaque())
