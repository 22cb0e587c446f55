"""The @fleche decorator: hits, misses, keys, helpers and the never-lose-a-result rule."""

from __future__ import annotations

import dataclasses
import errno
import threading
import warnings

import numpy as np
import pytest

from fleche import (
    Cache,
    CacheWarning,
    D,
    Digest,
    Ignored,
    Indigestible,
    Required,
    Unstored,
    cache,
    fleche,
)
from fleche.digest import digest
from fleche.storage import CallMemory, ValueMemory


def counted(**options):
    """A decorated function that records each time its body runs."""
    runs: list[tuple] = []

    @fleche(**options)
    def simulate(temperature, steps=1000):
        runs.append((temperature, steps))
        return np.full(3, temperature * steps, dtype=float)

    return simulate, runs


def test_second_call_is_a_hit(memory):
    simulate, runs = counted()
    first = simulate(300)
    second = simulate(300)
    assert runs == [(300, 1000)]
    np.testing.assert_array_equal(first, second)


def test_defaults_and_keywords_give_the_same_key(memory):
    simulate, runs = counted()
    simulate(300)
    simulate(300, 1000)
    simulate(temperature=300, steps=1000)
    simulate(steps=1000, temperature=300)
    assert len(runs) == 1
    assert simulate.digest(300) == simulate.digest(temperature=300, steps=1000)


def test_int_and_float_arguments_are_different_calls(memory):
    simulate, runs = counted()
    simulate(1)
    simulate(1.0)
    simulate(True)
    assert len(runs) == 3


def test_none_result_is_cached(memory):
    runs = []

    @fleche
    def nothing(x):
        runs.append(x)

    assert nothing(1) is None and nothing(1) is None
    assert runs == [1]


def test_helpers(memory):
    simulate, runs = counted()
    assert not simulate.contains(300)
    with pytest.raises(KeyError):
        simulate.load(300)
    simulate(300)
    assert simulate.contains(300)
    np.testing.assert_array_equal(simulate.load(300), np.full(3, 300_000.0))
    call = simulate.call(300)
    assert call.arguments["temperature"] == 300 and call.name == "counted.<locals>.simulate"
    assert simulate.call(300).arguments == {"temperature": 300, "steps": 1000}
    assert isinstance(simulate.digest(300), Digest) and len(runs) == 1


def test_rerun_recomputes_and_overwrites(memory):
    results = iter([1, 2])

    @fleche
    def flaky(x):
        return next(results)

    assert flaky(0) == 1
    assert flaky.rerun(0) == 2
    assert flaky(0) == 2
    assert flaky.query().count() == 1


def test_version_changes_the_key(memory):
    a, _ = counted(version="1")
    b, _ = counted(version="2")
    assert a.digest(300) != b.digest(300)


def test_hash_module_and_version_off_still_query(memory):
    simulate, _ = counted(hash_module=False, hash_version=False, version="3")
    simulate(1)
    assert simulate.query().count() == 1
    assert simulate.query(temperature=1).only().arguments["steps"] == 1000


def test_ignored_arguments(memory):
    runs = []

    @fleche(ignore=("verbose",))
    def f(x, verbose=False, log: Ignored[object] = None):
        runs.append(x)
        return x

    f(1, verbose=True, log=object())
    f(1, verbose=False)
    assert runs == [1]
    assert f.call(1, True).arguments == {"x": 1}


def test_unknown_ignored_name_is_an_error():
    with pytest.raises(ValueError, match="not parameters"):
        fleche(ignore=("nope",))(lambda x: x)


def test_indigestible_argument_runs_uncached_with_warning(memory):
    runs = []

    @fleche
    def f(x):
        runs.append(x)
        return 42

    with pytest.warns(CacheWarning, match=r"arguments\['x'\]"):
        assert f(iter([1])) == 42
    assert len(runs) == 1 and f.query().count() == 0


def test_required_indigestible_argument_raises(memory):
    @fleche
    def f(x: Required[object]):
        return 1

    with pytest.raises(Indigestible, match=r"arguments\['x'\]"):
        f(iter([1]))


def test_unstorable_result_is_returned_with_warning():
    class Unstorable:
        def __init__(self):
            self.guard = threading.Lock()  # no digest: the result cannot be stored

    @fleche
    def f(x):
        return Unstorable()

    fresh = Cache(ValueMemory(), CallMemory())
    with cache(fresh):
        with pytest.warns(CacheWarning, match="uncached"):
            result = f(1)
    assert isinstance(result, Unstorable)
    assert not fresh.contains(f.digest(1))


class _FailingCalls(CallMemory):
    def put(self, value, key):
        raise OSError("disk full")


def test_failing_store_keeps_the_result_and_the_store():
    broken = Cache(ValueMemory(), _FailingCalls())
    runs = []

    @fleche(cache=broken)
    def f(x):
        runs.append(x)
        return x * 2

    with pytest.warns(CacheWarning, match="disk full"):
        assert f(2) == 4
    with pytest.warns(CacheWarning):
        assert f(2) == 4
    assert runs == [2, 2]


def test_exception_in_body_stores_nothing(memory):
    @fleche
    def boom(x):
        raise ValueError("no")

    with pytest.raises(ValueError):
        boom(1)
    assert not boom.contains(1)
    assert memory.gc() == {digest(1)}  # the argument was pinned only while the body ran


def test_short_digest_argument_is_expanded(memory):
    @fleche
    def total(values):
        return float(np.sum(values))

    data = np.arange(10.0)
    key = memory.values.save(data)
    short = memory.shrink(key)
    assert total(D(short)) == 45.0
    assert total(data) == 45.0
    assert total.query().count() == 1  # the digest stood for the value: one call


def test_digest_argument_key_equals_value_key(memory):
    @fleche
    def f(x):
        return x

    data = [1, 2, 3]
    memory.values.save(data)
    assert f.digest(digest(data)) == f.digest(data)


def test_metadata_recorded(memory):
    simulate, _ = counted()
    simulate(300)
    meta = simulate.record(300).metadata
    assert meta["runtime"]["walltime"] >= 0
    assert meta["environment"]["python"]


def test_tags_queryable(memory):
    from fleche import tags

    simulate, _ = counted()
    with tags(project="x"):
        simulate(1)
    simulate(2)
    found = simulate.query(metadata={"tags": {"project": "x"}})
    assert [c.arguments["temperature"] for c in found] == [1]


def test_void_cache_always_computes():
    simulate, runs = counted()
    with cache("void"):
        simulate(1)
        simulate(1)
        assert not simulate.contains(1)
    assert len(runs) == 2


def test_memory_cache_by_name_is_process_wide():
    with cache("memory") as first:
        pass
    with cache("memory") as second:
        pass
    assert first is second


def test_unknown_cache_name_is_an_error():
    from fleche import ConfigError

    with pytest.raises(ConfigError, match="no-such-cache"):
        cache("no-such-cache")


def test_cache_is_sticky_and_scoped():
    from fleche import active_cache

    a = Cache(ValueMemory(), CallMemory())
    b = Cache(ValueMemory(), CallMemory())
    before = active_cache()
    with cache(a):
        assert active_cache() is a
        with cache(b):
            assert active_cache() is b
        assert active_cache() is a
    assert active_cache() is before


@dataclasses.dataclass(frozen=True)
class Settings:
    temperature: float
    solver: str = "rk4"


def test_dataclass_arguments(memory):
    runs = []

    @fleche
    def run(settings):
        runs.append(settings)
        return settings.temperature

    run(Settings(300.0))
    run(Settings(300.0, "rk4"))
    run(Settings(300.0, "euler"))
    assert len(runs) == 2


def test_var_arguments(memory):
    runs = []

    @fleche
    def f(*args, **kwargs):
        runs.append(1)
        return (args, kwargs)

    assert f(1, 2, a=3) == ((1, 2), {"a": 3})
    assert f(1, 2, a=3) == ((1, 2), {"a": 3})
    f(1, 2, a=4)
    assert len(runs) == 2


def test_no_warnings_on_plain_use(memory):
    simulate, _ = counted()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(5)
        simulate(5)


# ---------------------------------------------------------------------- unstored arguments


def test_unstored_argument_is_keyed_by_digest_without_a_copy(memory):
    runs = []

    @fleche(unstored=("frames",))
    def mean(frames, scale=1.0):
        runs.append(scale)
        return float(frames.mean()) * scale

    frames = np.arange(1000.0)
    assert mean(frames) == mean(frames) == 499.5 and runs == [1.0]  # the second call hits
    assert mean(frames + 1) == 500.5 and len(runs) == 2  # another value, another key
    assert not memory.values.contains(digest(frames))  # keyed, never copied
    assert memory.values.contains(digest(1.0))  # the other arguments are stored as usual

    call = mean.query(frames=frames).only()  # queries match by the value's digest
    assert call.arguments["frames"] == digest(frames)  # the digest stands for the value
    assert call.arguments["scale"] == 1.0
    assert memory.verify().ok  # a value the record says it does not keep is not "missing"

    target = Cache(ValueMemory(), CallMemory())
    assert mean.query().transfer(target) == 2
    assert target.verify().ok and not target.values.contains(digest(frames))


def test_unstored_annotation_and_conflicts():
    @fleche
    def total(frames: Unstored[np.ndarray], offset=0):
        return float(frames.sum()) + offset

    assert total.unstored == {"frames"}
    with pytest.raises(ValueError, match="both ignored and unstored"):
        fleche(ignore=("x",), unstored=("x",))(lambda x: x)
    with pytest.raises(ValueError, match="not parameters"):
        fleche(unstored=("nope",))(lambda x: x)


class _FullDisk(CallMemory):
    def put(self, value, key):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_reported_once_not_at_every_call():
    full = Cache(ValueMemory(), _FullDisk())

    @fleche(cache=full)
    def double(x):
        return 2 * x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [double(x) for x in range(5)] == [0, 2, 4, 6, 8]  # every result returned
    (warning,) = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert "No space left" in str(warning.message) and "not reported again" in str(warning.message)
    other = Cache(ValueMemory(), _FailingCalls())  # other failures are reported every time

    @fleche(cache=other)
    def triple(x):
        return 3 * x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [triple(x) for x in range(3)] == [0, 3, 6]
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 3
