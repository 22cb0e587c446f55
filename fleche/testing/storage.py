"""The storage conformance suite: every backend passes the same tests.

A backend is added to the suite by one :class:`Backend` entry (see
``tests/backends.py``): factories for its value and call storages and,
optionally, a function that damages a stored entry on the medium so the
suite can prove a corrupt entry reads as a miss.  The test classes here use
the fixtures ``backend`` and ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..caches import Cache
from ..call import Call, DigestedCall, QueryCall
from ..digest import Digest, digest
from ..errors import AmbiguousDigestError, ConfigError, CorruptEntryWarning
from ..storage.base import CallStorage, ValueStorage
from ..wrapper import fleche

__all__ = ["Backend", "CallStorageTests", "CacheTests", "ValueStorageTests"]


@dataclasses.dataclass(frozen=True)
class Backend:
    """How the suite builds one storage composition.

    ``values``/``calls`` build a storage rooted in a directory (``None`` when
    the backend has no such half).  ``corrupt(storage, key)`` damages the
    entry under ``key`` directly on the medium (torn or tampered bytes).
    ``processes`` says whether several processes may share one store.
    """

    name: str
    values: Callable[[Path], ValueStorage] | None = None
    calls: Callable[[Path], CallStorage] | None = None
    corrupt: Callable[[Any, Digest], None] | None = None
    processes: bool = False

    def __str__(self) -> str:
        return self.name


def _check_to_config(storage: Any, kind: str, key: Digest) -> None:
    """``storage.to_config()`` rebuilds an equal storage (reading the same entries, if persistent)."""
    if getattr(storage, "secret_key", None):
        with pytest.raises(ConfigError, match="secret keys are never written"):
            storage.to_config()
        return
    table = storage.to_config()
    rebuilt = storage_from_table(table, kind)
    assert type(rebuilt) is type(storage) and rebuilt.to_config() == table
    if type(storage).persistent:
        assert rebuilt.load(key) == storage.load(key)


def require(backend: Backend, capability: str) -> None:
    """Skip the test, saying why, when ``backend`` lacks ``capability``."""
    if not getattr(backend, capability, None):
        pytest.skip(f"{backend.name} has no {capability}")


def _values(backend: Backend, root: Path) -> ValueStorage:
    require(backend, "values")
    return backend.values(root)


def _calls(backend: Backend, root: Path) -> CallStorage:
    require(backend, "calls")
    return backend.calls(root)


SAMPLES: list[Any] = [
    None,
    0,
    -(2**70),
    1.5,
    float("inf"),
    "text",
    b"\x00bytes",
    [1, "two", 3.0],
    (1, (2, (3,))),
    {"a": 1, "b": [1, 2, {"c": None}]},
    {Digest("0" * 32): "digests as dict keys are kept as they are"},
    [],
    {},
]


def _equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and digest(a) == digest(b)


class ValueStorageTests:
    """Behaviour every value storage shares."""

    @pytest.mark.parametrize("value", SAMPLES, ids=repr)
    def test_round_trip(self, backend: Backend, tmp_path: Path, value: Any) -> None:
        values = _values(backend, tmp_path)
        key = values.save(value)
        assert key == digest(value)
        assert _equal(values.load(key), value)

    def test_numpy_and_pandas_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        np = pytest.importorskip("numpy")
        pd = pytest.importorskip("pandas")
        values = _values(backend, tmp_path)
        array = np.arange(1000, dtype="float64").reshape(10, 100)
        frame = pd.DataFrame({"x": np.arange(5), "y": list("abcde")})
        nested = {"array": array, "frame": frame, "scale": 2.0}
        for value in (array, frame, nested):
            loaded = values.load(values.save(value))
            assert digest(loaded) == digest(value)

    def test_shared_children_stored_once(self, backend: Backend, tmp_path: Path) -> None:
        np = pytest.importorskip("numpy")
        values = _values(backend, tmp_path)
        big = np.ones(10_000)
        values.save({"run": 1, "data": big})
        before = set(values.list())
        values.save({"run": 2, "data": big})
        added = set(values.list()) - before
        assert digest(big) in before
        assert len(added) == 1  # only the new container; the array is shared

    def test_save_is_idempotent(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        k1 = values.save([1, 2, 3])
        keys = set(values.list())
        assert values.save([1, 2, 3]) == k1
        assert set(values.list()) == keys

    def test_missing_is_key_error(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        with pytest.raises(KeyError):
            values.load(digest("never stored"))
        assert not values.contains(digest("never stored"))

    def test_contains_and_evict(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        key = values.save("value")
        assert values.contains(key) and values.contains(key[:6])
        values.evict(key[:8])
        assert not values.contains(key)
        values.evict(key)  # absent: nothing to do, no error
        values.evict(digest("never stored")[:10])

    def test_save_over_a_stored_key_keeps_the_first(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        key = digest("first")
        assert values.save("first", key) == key
        assert values.save("second", key) == key
        assert values.load(key) == "first"

    def test_digest_in_a_container_is_a_reference(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        inner = values.save([1.5, "x" * 300])
        outer = {"data": inner, "scale": 2}
        key = values.save(outer)
        assert key == digest({"data": [1.5, "x" * 300], "scale": 2})
        assert values.load(key) == {"data": [1.5, "x" * 300], "scale": 2}
        values.evict(inner)
        with pytest.raises(KeyError):
            values.load(key)  # a part is missing: a miss, never a bare digest

    def test_a_bare_digest_names_its_value(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        absent = digest("never stored")
        assert values.save(absent) == absent  # what a missing lazy argument hands back
        assert not values.contains(absent)  # never stored as its own value
        key = values.save("stored")
        assert values.save(key) == key and values.load(key) == "stored"

    def test_to_config_rebuilds_the_storage(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        _check_to_config(values, "value", values.save("configured"))

    def test_expand_and_shrink(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        keys = [values.save(i) for i in range(300)]
        for key in keys[:50]:
            short = values.shrink(key)
            assert 4 <= len(short) < len(key)
            assert values.expand(short) == key
            assert values.expand(key) == key
        with pytest.raises(KeyError):
            values.expand(_absent_prefix(keys))

    def test_ambiguous_prefix_names_candidates(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        keys = [values.save(i) for i in range(40)]
        first = keys[0][0]
        sharing = sorted(k for k in keys if k[0] == first)
        if len(sharing) < 2:  # make two keys share a first character
            extra = next(i for i in range(100, 10_000) if digest(i)[0] == first)
            sharing = sorted([*sharing, values.save(extra)])
        with pytest.raises(AmbiguousDigestError) as info:
            values.expand(first)
        assert set(sharing) <= set(info.value.candidates)
        assert info.value.needed >= 2
        assert isinstance(info.value, ValueError)

    def test_list_streams_every_key(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        keys = {values.save(i) for i in range(20)}
        assert keys <= set(values.list())

    def test_pickle_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        values = _values(backend, tmp_path)
        key = values.save("kept")
        clone = pickle.loads(pickle.dumps(values))
        if type(values).persistent:
            assert clone.load(key) == "kept"
        clone.save("again")

    def test_corrupt_entry_reads_as_miss(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "corrupt")
        values = _values(backend, tmp_path)
        key = values.save("soon damaged" * 10)
        backend.corrupt(values, key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(KeyError):
                values.load(key)
        assert any(issubclass(w.category, CorruptEntryWarning) for w in caught)


def storage_from_table(table: dict[str, Any], kind: str) -> Any:
    """The storage a ``to_config`` table describes, built as ``fleche.config`` builds it."""
    from ..config import from_config

    cache = from_config(
        {kind + "s": table, ("calls" if kind == "value" else "values"): {"type": "memory"}}
    )
    return cache.values if kind == "value" else cache.calls


def _absent_prefix(keys: list[Digest]) -> str:
    for n in range(16**4):
        prefix = f"{n:04x}"
        if not any(k.startswith(prefix) for k in keys):
            return prefix
    raise AssertionError("every 4-character prefix is taken")


def _call(i: int, result: Any = None) -> Call:
    return Call(
        name="simulate",
        module="tests.model",
        arguments={"temperature": i, "steps": 10},
        result=result,
    )


class CallStorageTests:
    """Behaviour every call storage shares."""

    def test_save_load(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        call = _call(300, result=[1.0, 2.0])
        key = calls.save(call)
        assert key == call.key()
        record = calls.load(key)
        assert isinstance(record, DigestedCall)
        assert record.arguments == {"temperature": digest(300), "steps": digest(10)}
        assert record.result == digest([1.0, 2.0])
        assert (record.name, record.module) == ("simulate", "tests.model")
        assert calls.load(key[:8]) == record

    def test_metadata_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        call = dataclasses.replace(
            _call(1), metadata={"tags": {"project": "x", "n": 3}, "runtime": {"walltime": 0.5}}
        )
        record = calls.load(calls.save(call))
        assert record.metadata == {"tags": {"project": "x", "n": 3}, "runtime": {"walltime": 0.5}}

    def test_save_twice_overwrites(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        key = calls.save(_call(1, result="old"))
        assert calls.save(_call(1, result="new")) == key
        assert calls.load(key).result == digest("new")
        assert list(calls.list()).count(key) == 1

    def test_query_template(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        for i in range(10):
            calls.save(_call(i, result=i % 3))
        calls.save(Call(name="other", module="tests.model", arguments={"temperature": 3}))
        assert {r.arguments["temperature"] for r in calls.query(QueryCall(name="simulate"))} == {
            digest(i) for i in range(10)
        }
        found = list(calls.query(QueryCall(arguments={"temperature": 3})))
        assert len(found) == 2
        assert (
            len(list(calls.query(QueryCall(name="simulate", arguments={"temperature": digest(3)}))))
            == 1
        )
        assert len(list(calls.query(QueryCall(name="simulate", result=0)))) == 4
        assert list(calls.query(QueryCall(arguments={"pressure": 1}))) == []

    def test_query_metadata(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        calls.save(dataclasses.replace(_call(1), metadata={"tags": {"project": "x"}}))
        calls.save(dataclasses.replace(_call(2), metadata={"tags": {"project": "y"}}))
        calls.save(_call(3))
        hits = list(calls.query(QueryCall(metadata={"tags": {"project": "x"}})))
        assert [r.arguments["temperature"] for r in hits] == [digest(1)]
        assert len(list(calls.query(QueryCall(metadata={"tags": {}})))) == 2

    def test_query_none_argument(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        calls.save(Call(name="f", module="m", arguments={"x": None}))
        calls.save(Call(name="f", module="m", arguments={"x": 0}))
        hits = list(calls.query(QueryCall(name="f", arguments={"x": None})))
        assert [r.arguments["x"] for r in hits] == [digest(None)]

    def test_transform_rekeys(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        keys = [calls.save(_call(i)) for i in range(5)]
        moved = calls.transform(lambda c: c.replace(module="tests.renamed"))
        assert moved == 5
        assert not any(calls.contains(k) for k in keys)
        assert {calls.load(k).module for k in calls.list()} == {"tests.renamed"}

    def test_transform_interrupted_loses_nothing(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        for i in range(6):
            calls.save(_call(i))
        seen = []

        def rename(call: DigestedCall) -> Call:
            if len(seen) == 3:
                raise RuntimeError("interrupted")
            seen.append(call)
            return call.replace(module="tests.renamed")

        with pytest.raises(RuntimeError):
            calls.transform(rename)
        assert len(list(calls.list())) == 6
        calls.transform(lambda c: c.replace(module="tests.renamed"))
        assert {calls.load(k).module for k in calls.list()} == {"tests.renamed"}
        assert len(list(calls.list())) == 6

    def test_evict_and_expand(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        key = calls.save(_call(7))
        other = calls.save(_call(8))
        assert calls.expand(calls.shrink(key)) == key
        assert calls.shrink(key, other) == (calls.shrink(key), calls.shrink(other))
        assert calls.shrink(key=key) == calls.shrink(key)  # the storage spec names it
        calls.evict(key)
        assert not calls.contains(key)
        with pytest.raises(KeyError):
            calls.load(key)
        calls.evict(key)  # absent: nothing to do, no error

    def test_query_with_a_call_template(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        for i in range(4):
            calls.save(_call(i, result=i % 2))
        calls.save(Call(name="other", module="tests.model", arguments={"temperature": 1}))
        wildcard = Call(name=None, module=None, arguments=None)
        assert len(list(calls.query(wildcard))) == 5
        named = Call(name="simulate", module=None, arguments=None, result=1)
        assert {r.arguments["temperature"] for r in calls.query(named)} == {digest(1), digest(3)}
        exact = _call(2, result=0)
        assert [r.key() for r in calls.query(exact)] == [exact.key()]
        assert [r.key() for r in calls.query(exact.digested())] == [exact.key()]

    def test_to_config_rebuilds_the_storage(self, backend: Backend, tmp_path: Path) -> None:
        calls = _calls(backend, tmp_path)
        _check_to_config(calls, "call", calls.save(_call(1)))


# -- whole caches ----------------------------------------------------------------


def _cache(backend: Backend, root: Path) -> Cache:
    return Cache(_values(backend, root / "values"), _calls(backend, root / "calls"))


def _square(x: int) -> int:
    return x * x


def _hammer(cache: Cache, worker: int, n: int) -> None:
    """A worker process: ``n`` decorated calls into one shared store."""
    f = fleche(cache=cache)(_square)
    for i in range(n):
        assert f((i + worker) % n) == ((i + worker) % n) ** 2


def _save_forever(cache: Cache) -> None:
    f = fleche(cache=cache)(_square)
    i = 0
    while True:
        f(i)
        i += 1


class CacheTests:
    """A whole :class:`Cache` on the backend: the decorator end to end, processes, crashes."""

    def test_decorator_end_to_end(self, backend: Backend, tmp_path: Path) -> None:
        cache = _cache(backend, tmp_path)
        runs = []

        @fleche(cache=cache)
        def simulate(temperature: float, steps: int = 10) -> dict[str, Any]:
            runs.append(temperature)
            return {"temperature": temperature, "energy": [temperature * s for s in range(steps)]}

        first = simulate(300.0)
        assert simulate(300.0) == first and runs == [300.0]
        simulate(310.0)
        assert simulate.contains(300.0) and not simulate.contains(320.0)
        assert simulate.load(310.0)["temperature"] == 310.0
        assert simulate.query(temperature=300.0).only().result == first
        assert simulate.query().count() == 2
        assert cache.load_value(cache.shrink(simulate.record(300.0).digested_call.result)) == first

    def test_processes_share_a_store(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "processes")
        context = multiprocessing.get_context("spawn")
        cache = _cache(backend, tmp_path)  # pickled into each worker: constructor arguments only
        workers = [context.Process(target=_hammer, args=(cache, w, 200)) for w in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
            assert w.exitcode == 0
        cache = _cache(backend, tmp_path)
        f = fleche(cache=cache)(_square)
        assert all(f.contains(i) and f.load(i) == i * i for i in range(200))
        assert cache.query().count() == 200

    def test_killed_writer_leaves_a_readable_store(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "processes")
        context = multiprocessing.get_context("spawn")
        cache = _cache(backend, tmp_path)
        writer = context.Process(target=_save_forever, args=(cache,))
        writer.start()
        deadline = time.monotonic() + 60
        while cache.query().count() < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        cache = _cache(backend, tmp_path)
        done = list(cache.query())
        assert len(done) >= 20
        for call in done:
            assert call.result == call.arguments["x"] ** 2


def value_state_machine(make: Callable[[], ValueStorage]) -> type:
    """A hypothesis state machine driving a value storage beside a dict model.

    ``make`` builds a fresh, empty storage; the returned class is a
    ``unittest.TestCase`` (``.TestCase``) that pytest collects.
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

    leaves = st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    values = st.recursive(
        leaves,
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3)
        ),
        max_leaves=8,
    )

    class ValueMachine(RuleBasedStateMachine):
        keys = Bundle("keys")

        def __init__(self) -> None:
            super().__init__()
            self.storage = make()
            self.model: dict[Digest, Any] = {}

        @rule(target=keys, value=values)
        def save(self, value: Any) -> Digest:
            key = self.storage.save(value)
            assert key == digest(value)
            self.model[key] = value
            return key

        @rule(key=keys)
        def load(self, key: Digest) -> None:
            if key in self.model:
                assert digest(self.storage.load(key)) == key
            else:  # evicted, or dropped from the model; if it loads, it is right
                try:
                    assert digest(self.storage.load(key)) == key
                except KeyError:
                    pass

        @rule(key=keys)
        def evict(self, key: Digest) -> None:
            if key not in self.model:
                return
            # values holding the evicted one as a stored child cannot load any more
            for other in list(self.model):
                if other != key and key in self._descendants(other):
                    del self.model[other]
            self.storage.evict(key)
            del self.model[key]
            with pytest.raises(KeyError):
                self.storage.load(key)

        def _descendants(self, key: Digest) -> set[Digest]:
            found: set[Digest] = set()
            todo = list(self.storage.children(key))
            while todo:
                child = todo.pop()
                if child not in found:
                    found.add(child)
                    todo.extend(self.storage.children(child))
            return found

        @rule(key=keys)
        def short_names(self, key: Digest) -> None:
            if key in self.model:
                assert self.storage.expand(self.storage.shrink(key)) == key

        @invariant()
        def contains_model(self) -> None:
            for key in self.model:
                assert self.storage.contains(key)

    return ValueMachine
