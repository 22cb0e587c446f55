"""Scripts written for the fleche 0.22 release: the top level, calls, the decorator and state.

Written from the 0.22 public API page (names, signatures and described
behaviour), section by section; each test uses the names the way such a
script does.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import fleche
from fleche import Cache, CacheStack, cache, meta
from fleche.storage import CallMemory, ValueMemory
from fleche.wrapper import Ignored, Required, process_ignore_required_args


def fresh() -> Cache:
    return Cache(ValueMemory(), CallMemory())


# -- fleche (top level) -----------------------------------------------------------


def test_digest_is_the_submodule():
    import fleche.digest as module

    assert fleche.digest is module
    assert inspect.ismodule(fleche.digest)
    assert fleche.digest.digest([1, 2]) == module.digest([1, 2])
    from fleche.digest import DIGEST_LENGTH, Digest

    assert isinstance(fleche.digest.digest(1), Digest) and DIGEST_LENGTH == 32


def test_the_digest_module_called_digests_as_before():
    from fleche import digest

    assert digest([1, 2]) == fleche.digest.digest([1, 2])


@pytest.mark.parametrize("text", ["a3f9c1", "A3F9C1", "0", "f" * 32])
def test_D_takes_hex_text_as_a_digest(text):
    assert fleche.D(text) == fleche.Digest(text) == text.lower()


@pytest.mark.parametrize("value", ["hello", "", 12, [1, 2], None, "a3f9 c1"])
def test_D_digests_anything_else(value):
    assert fleche.D(value) == fleche.digest.digest(value)


def test_D_refuses_a_hex_text_too_long_to_be_a_digest():
    with pytest.raises(ValueError, match="32"):
        fleche.D("ab" * 32)  # a 0.22 digest: convert the store instead


def test_top_level_names():
    for name in ("fleche", "cache", "meta", "tags", "project", "BoundWrapper", "Ignored",
                 "Required", "D", "wrap_executor", "get_cache", "get_metadata"):  # fmt: skip
        assert hasattr(fleche, name), name


# -- the decorator -----------------------------------------------------------------


def test_decorator_bare_and_called(memory):
    @fleche.fleche
    def bare(x):
        return x + 1

    @fleche.fleche()
    def called(x):
        return x + 2

    @fleche.fleche(version="2", meta=(), hash_version=False, hash_module=False, hash_code=True,
                   require=None, ignore=None, isolate=False)  # fmt: skip
    def everything(x):
        return x + 3

    assert (bare(1), called(1), everything(1)) == (2, 3, 4)
    assert bare.contains(1) and called.contains(1) and everything.contains(1)
    assert list(inspect.signature(fleche.fleche).parameters)[0] == "_func"


def test_ignore_and_require_take_none_or_names(memory):
    @fleche.fleche(ignore=["log"], require=None)
    def run(x, log=None):
        return x

    assert run.digest(1, log="a") == run.digest(1, log="b")


def test_isolate_runs_each_call_in_a_fresh_directory_that_is_removed(memory, tmp_path):
    seen = []

    @fleche.fleche(isolate=True)
    def write(name):
        Path(name).write_text("scratch")
        seen.append(os.getcwd())
        return sorted(os.listdir("."))

    here = os.getcwd()
    assert write("a.txt") == ["a.txt"]
    assert write("b.txt") == ["b.txt"]  # not the directory of the first call
    assert os.getcwd() == here
    assert len(set(seen)) == 2 and here not in seen
    assert not any(Path(d).exists() for d in seen)


def test_isolate_restores_the_directory_when_the_body_raises(memory):
    @fleche.fleche(isolate=True)
    def fail():
        raise RuntimeError(os.getcwd())

    here = os.getcwd()
    with pytest.raises(RuntimeError) as info:
        fail()
    assert os.getcwd() == here and not Path(str(info.value.args[0])).exists()


def test_isolate_for_coroutines(memory):
    @fleche.fleche(isolate=True)
    async def where():
        return os.getcwd()

    here = os.getcwd()
    assert asyncio.run(where()) != here and os.getcwd() == here


@fleche.fleche
def area(width, height=2.0):
    return width * height


def test_helpers(memory):
    call = area.call(3.0)
    assert isinstance(call, fleche.Call)
    assert call.name == "area" and call.module == __name__
    assert dict(call.arguments) == {"width": 3.0, "height": 2.0} and call.result is None
    assert call.to_lookup_key() == area.digest(3.0)
    assert not area.contains(3.0)
    with pytest.raises(KeyError):
        area.load(3.0)
    assert area(3.0) == 6.0
    assert area.contains(3.0) and area.load(3.0) == 6.0
    assert area.query(3.0).only().result == 6.0
    assert area.query(width=3.0, metadata={}).count() == 1


def test_helpers_again_at_f_fleche(memory):
    area(4.0)
    helpers = area.fleche
    assert helpers.digest(4.0) == area.digest(4.0)
    assert helpers.contains(4.0) and helpers.load(4.0) == 8.0
    assert helpers.call(4.0) == area.call(4.0)
    assert helpers.query(4.0).count() == 1
    assert helpers.rerun(4.0) == 8.0
    assert isinstance(helpers.bind(), fleche.BoundWrapper)


def test_query_positional_and_none_as_wildcard(memory):
    area(1.0, 1.0)
    area(1.0, 3.0)
    area(2.0, 3.0)
    assert area.query(1.0).count() == 2
    assert area.query(None, 3.0).count() == 2
    assert area.query(width=None, height=None).count() == 3
    assert area.query(1.0, height=3.0).only().result == 3.0


def test_query_matches_none_itself_with_exactly(memory):
    @fleche.fleche
    def maybe(x=None):
        return x

    maybe(None)
    maybe(1)
    assert maybe.query(x=fleche.Exactly(None)).only().arguments["x"] is None


def test_rerun_recomputes_nested_decorated_calls(memory):
    runs = []

    @fleche.fleche
    def inner(x):
        runs.append(("inner", x))
        return x * 10

    @fleche.fleche
    def outer(x):
        runs.append(("outer", x))
        return inner(x) + 1

    assert outer(1) == 11 and outer(1) == 11
    assert runs == [("outer", 1), ("inner", 1)]
    assert outer.rerun(1) == 11
    assert runs[2:] == [("outer", 1), ("inner", 1)]
    outer(1)
    inner(1)
    assert len(runs) == 4  # the rerun stored over the old calls: hits again


def test_wrapped_and_digest_of_the_decorated_function():
    def plain(x):
        return x

    decorated = fleche.fleche(plain)
    assert decorated.__wrapped__ is plain
    assert fleche.digest.digest(decorated) == fleche.digest.digest(plain)


def test_bind_captures_cache_and_metadata_for_another_thread():
    store = fresh()
    with cache(store), fleche.tags(project="p"):
        bound = area.bind(5.0)
    assert isinstance(bound, fleche.BoundWrapper)
    assert not hasattr(bound, "fleche")  # a plain callable
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(bound).result() == 10.0
    with cache(store):
        assert area.record(5.0).metadata["tags"] == {"project": "p"}


def test_process_ignore_required_args():
    def f(x: Required[int], log: Ignored[object] = None, y=0, z=0):
        return x

    profile = process_ignore_required_args(f, ["y"], ["z"])
    assert isinstance(profile, fleche.call.FunctionProfile)
    assert profile.ignored == {"log", "y"} and profile.required == {"x", "z"}
    assert profile.qualname == f.__qualname__ and profile.module == __name__
    with pytest.raises(ValueError, match="both ignored and required"):
        process_ignore_required_args(f, ["x"], None)


# -- fleche.state --------------------------------------------------------------------


def test_cache_without_argument_is_the_active_cache():
    store = fresh()
    with cache(store):
        assert cache() is store is fleche.state.get_cache()


def test_cache_switches_at_once_and_back_after_with():
    first, second = fresh(), fresh()
    with cache(first):
        cache(second)  # sticky, until the block of the outer switch ends
        assert fleche.get_cache() is second
        with cache(first):
            assert fleche.get_cache() is first
        assert fleche.get_cache() is second


def test_cache_by_name():
    with cache("memory") as store:
        assert fleche.get_cache() is store and not store.persistent


def test_cache_stack_puts_the_new_cache_in_front():
    below, front = fresh(), fresh()
    with cache(below), cache(front, stack=True) as stacked:
        assert isinstance(stacked, CacheStack)
        assert list(stacked.layers) == [front, below]
        area(6.0)
    assert below.contains(area.digest(6.0)) and front.contains(area.digest(6.0))


class Seed:
    name = "seed"

    def start(self):
        return None

    def stop(self, token):
        return {"value": 7}


def test_meta_replaces_and_stacks(memory):
    defaults = fleche.get_metadata()
    with meta(Seed()):
        assert [m.name for m in fleche.get_metadata()] == ["seed"]
    with meta(Seed(), stack=True):
        assert fleche.get_metadata() == (*defaults, *fleche.get_metadata()[-1:])
        assert fleche.get_metadata()[-1].name == "seed"
    assert fleche.get_metadata() == defaults


def test_tags_and_project_are_recorded(memory):
    with fleche.project("alpha"), fleche.tags(stage="fit"):
        area(7.0)
    assert area.record(7.0).metadata["tags"] == {"project": "alpha", "stage": "fit"}


def test_bound_wrapper_reinstalls_cache_and_metadata_and_pickles():
    store = fresh()
    with cache(store), meta(Seed()):
        bound = fleche.BoundWrapper.bind(area)
    assert (bound.func, bound.cache) == (area, store)
    assert [m.name for m in bound.meta] == ["seed"]
    with cache(fresh()):
        assert bound(8.0) == 16.0
        assert not area.contains(8.0)  # stored in the bound cache, not the active one
    assert set(store.load(area.digest(8.0)).metadata) == {"seed"}
    with pytest.raises(AttributeError):
        bound.cache = fresh()  # frozen
    assert pickle.loads(pickle.dumps(bound)).func is area


def test_bound_wrapper_by_position():
    store = fresh()
    bound = fleche.BoundWrapper(area, store, ())
    assert bound(9.0) == 18.0 and store.contains(area.digest(9.0))


# -- fleche.call ---------------------------------------------------------------------

from fleche.call import (  # noqa: E402  (the section's own imports, as a 0.22 script has them)
    AnyCall,
    AnyQueryType,
    Call,
    DigestedCall,
    FunctionProfile,
    LazyArguments,
    LazyCall,
    PreparedCall,
    QueryCall,
    StrQueryType,
    bind,
)


def simulate(temperature, steps=10, *, log=None):
    return temperature * steps


def test_function_profile_of():
    profile = FunctionProfile.of(simulate)
    assert profile.qualname == "simulate" and profile.module == __name__
    assert profile.version is None and profile.code_digest is None
    assert profile.ignored == frozenset() == profile.required
    assert list(profile.signature.parameters) == ["temperature", "steps", "log"]
    with pytest.raises(AttributeError):
        profile.version = "2"  # frozen


def test_function_profile_by_position_strips_and_checks():
    profile = FunctionProfile(
        inspect.signature(simulate), "simulate", __name__, "1", None, frozenset({"log"}),
        frozenset({"steps"}),
    )  # fmt: skip
    bound = inspect.signature(simulate).bind(300, 5, log="x")
    assert profile.strip_for_key(bound) == {"temperature": 300, "steps": 5}
    assert profile.strip_for_key({"temperature": 1, "log": 2}) == {"temperature": 1}
    assert profile.check_required((300,), {}) == ["steps"]
    assert profile.check_required((300,), {"steps": 3}) == []


def test_bind():
    assert bind(simulate, (300,), {}) == {"temperature": 300}
    assert bind(simulate, (300,), {}, apply_defaults=True) == {
        "temperature": 300, "steps": 10, "log": None,
    }  # fmt: skip
    assert bind(simulate, (), {"steps": 3}, partial=True) == {"steps": 3}
    with pytest.raises(TypeError):
        bind(simulate, (), {"steps": 3})


def test_call_by_position_in_the_0_22_order():
    call = Call("f", {"x": 1}, {"tags": {"a": 1}}, "mod", "2", None, 42)
    assert (call.name, call.arguments, call.metadata) == ("f", {"x": 1}, {"tags": {"a": 1}})
    assert (call.module, call.version, call.code_digest, call.result) == ("mod", "2", None, 42)
    assert Call("f", {"x": 1}).metadata == {} and Call("f", {"x": 1}).result is None


def test_call_code_digest_is_code():
    code = fleche.digest.digest("code")
    call = Call("f", {}, code_digest=code)
    assert call.code == call.code_digest == code
    assert Call(name="f", module="m", arguments={}, code=code).code_digest == code


def test_call_from_call_binds_with_defaults():
    call = Call.from_call(simulate, 300)
    assert call.name == "simulate" and call.module == __name__
    assert dict(call.arguments) == {"temperature": 300, "steps": 10, "log": None}


def test_call_lookup_key_and_digest():
    call = Call("f", {"x": 1}, module="m", result=2)
    digested = call.digest()
    assert isinstance(digested, DigestedCall)
    assert digested.arguments == {"x": fleche.digest.digest(1)}
    assert digested.result == fleche.digest.digest(2)
    assert call.to_lookup_key() == digested.to_lookup_key() == call.key()


def test_call_stash_saves_the_values():
    values = ValueMemory()
    record = Call("f", {"x": [1, 2]}, module="m", result="out").stash(values)
    assert values.load(record.arguments["x"]) == [1, 2]
    assert values.load(record.result) == "out"
    again = Call("g", {"x": record.arguments["x"]}, module="m").stash(values)
    assert again.arguments == record.arguments
    assert values.load(record.arguments["x"]) == [1, 2]  # a digest stands for its value


def test_digested_call_by_position_in_the_0_22_order():
    d = fleche.digest.digest
    record = DigestedCall("f", {"x": d(1)}, d(2), {"tags": {}}, "m", "1", None)
    assert (record.result, record.metadata, record.module, record.version) == (
        d(2), {"tags": {}}, "m", "1",
    )  # fmt: skip


def test_digested_call_equals_and_digests_like_the_call():
    d = fleche.digest.digest
    call = Call("f", {"x": d(1)}, module="m", result=d(2))
    record = DigestedCall("f", {"x": d(1)}, d(2), module="m")
    assert record == call and call == record
    assert record != Call("f", {"x": d(1)}, module="m", result=d(3))
    assert d(record) == d(call)
    values = Call("f", {"x": 1}, module="m", result=2)
    assert d(values.digest()) == d(values)  # a digest stands for its value


def test_digested_call_fetch_and_lazy_call():
    store = fresh()
    call = Call("f", {"x": [1, 2]}, module="m", result={"r": 3})
    key = store.save(call)
    record = store.load(key).detach()
    lazy = record.fetch(store)
    assert isinstance(lazy, LazyCall)
    assert lazy.arguments["x"] == [1, 2] and lazy.result == {"r": 3}
    assert lazy.to_lookup_key() == key == record.to_lookup_key()
    assert lazy.detach() is record
    loaded = lazy.fetch()
    assert isinstance(loaded, Call) and loaded.arguments == {"x": [1, 2]}
    assert loaded.code_digest is None and lazy.code_digest is None


def test_lazy_arguments_load_on_access_and_give_back_missing_digests():
    loads = []
    values = {fleche.digest.digest(1): 1}

    def load(key):
        loads.append(key)
        return values[key]

    missing = fleche.digest.digest(2)
    arguments = LazyArguments({"a": fleche.digest.digest(1), "b": missing}, load)
    assert loads == [] and list(arguments) == ["a", "b"] and len(arguments) == 2
    assert arguments["a"] == 1 and arguments["a"] == 1
    assert loads == [fleche.digest.digest(1)]  # once
    assert arguments["b"] == missing and type(arguments["b"]) is fleche.Digest
    with pytest.raises(KeyError):
        arguments["c"]


def test_a_stored_call_with_a_pruned_argument_lists_its_digest():
    store = fresh()
    key = store.save(Call("f", {"x": [1, 2]}, module="m", result=3))
    argument = store.load(key).detach().arguments["x"]
    store.values.evict(argument)
    assert store.load(key).arguments["x"] == argument


def prepared_in(store: Cache, x: int) -> PreparedCall:
    record = Call("f", {"x": x}, module="m").stash(store.values)
    return PreparedCall(record, store)


def test_prepared_call_commits_once():
    store = fresh()
    prepared = prepared_in(store, 1)
    assert prepared.to_lookup_key() == Call("f", {"x": 1}, module="m").key()
    key = prepared.commit("result", {"tags": {"a": 1}})
    assert key == prepared.to_lookup_key()
    assert store.load_result(key) == "result"
    assert store.load(key).metadata["tags"] == {"a": 1}
    with pytest.raises(RuntimeError):
        prepared.commit("again")
    assert store.load_result(key) == "result"


def test_prepared_call_abandons_idempotently_and_as_a_context_manager():
    store = fresh()
    with prepared_in(store, 2) as prepared:
        prepared.abandon()
        prepared.abandon()
    assert not store.contains(prepared.to_lookup_key())
    with prepared_in(store, 3) as prepared:
        prepared.commit(9)
    assert store.load_result(prepared.to_lookup_key()) == 9


def test_prepared_call_resolves_short_argument_digests():
    store = fresh()
    full = store.values.save([1, 2, 3])
    record = DigestedCall("f", {"x": fleche.Digest(full[:6])}, module="m")
    prepared = PreparedCall(record, store)
    assert prepared.record.arguments == {"x": full}
    assert prepared.resolve(store.values).arguments == {"x": full}
    assert prepared.commit("r") == DigestedCall("f", {"x": full}, module="m").key()
    assert prepared_in(store, 4).resolve(store.values).arguments["x"] == fleche.digest.digest(4)


def test_query_call_by_position_and_from_call():
    template = QueryCall("simulate", {"steps": 5}, None, __name__)
    assert (template.name, template.arguments, template.module) == (
        "simulate", {"steps": 5}, __name__,
    )  # fmt: skip
    assert QueryCall(code_digest=fleche.digest.digest(1)).code == fleche.digest.digest(1)
    assert QueryCall.from_call(simulate, steps=5) == QueryCall(
        "simulate", {"steps": 5}, module=__name__
    )
    assert QueryCall.from_call(simulate).arguments is None  # every parameter a wildcard


def test_query_call_matches():
    store = fresh()
    for t in (1, 2):
        store.save(Call.from_call(simulate, t).replace(result=t * 10))
    template = QueryCall.from_call(simulate, 2)
    found = [c for c in store.query() if template.digested().matches(c.detach())]
    assert [c.result for c in found] == [20]
    assert store.query(template).only().result == 20


def test_aliases():
    store = fresh()
    key = store.save(Call("f", {}, module="m"))
    lazy = store.load(key)
    for kind in (Call("f", {}), lazy.detach(), lazy):
        assert isinstance(kind, AnyCall)
    assert isinstance(QueryCall(), AnyQueryType)
    assert isinstance("name", StrQueryType) and isinstance(None, StrQueryType)


def test_a_version_that_is_not_text_is_keyed_and_stored_as_text(tmp_path):
    # 0.22 scripts write @fleche(version=3); SQL stores keep versions as text.
    from fleche.storage import Sql, ValuePickleFile

    store = Cache(ValuePickleFile(tmp_path / "values"), Sql(str(tmp_path / "calls.db")))

    @fleche.fleche(version=3)
    def triple(x):
        return 3 * x

    with cache(store):
        assert triple(2) == 6
        assert triple.version == "3" and triple.contains(2)
        assert triple.digest(2) == fleche.fleche(version="3")(triple.__wrapped__).digest(2)


def test_call_from_a_decorated_function_has_its_lookup_key():
    @fleche.fleche(version=1, ignore=("verbose",))
    def simulate(temperature, steps=10, verbose=False):
        return temperature * steps

    call = Call.from_call(simulate, 300, verbose=True)
    assert call.to_lookup_key() == simulate.digest(300)
    assert call.version == "1" and "verbose" not in call.arguments


def test_lazy_call_from_its_fields_and_a_cache():
    # 0.22: LazyCall(name, _arguments, _result, _cache, metadata, module, version, code_digest)
    from fleche.call import LazyCall

    store = Cache(ValueMemory(), CallMemory())

    @fleche.fleche
    def double(x):
        return 2 * x

    with cache(store):
        double(3)
        record = double.record(3).digested()
    lazy = LazyCall(record.name, dict(record.arguments), record.result, store, {}, record.module)
    assert lazy.arguments["x"] == 3 and lazy.result == 6
    assert lazy.to_lookup_key() == double.digest(3)
