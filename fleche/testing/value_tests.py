"""The conformance tests every value storage passes."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

from ..digest import Digest, digest
from ..errors import AmbiguousDigestError, CorruptEntryWarning
from .backend import Backend, check_to_config, require, values_of

__all__ = ["SAMPLES", "ValueStorageTests"]


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
        values = values_of(backend, tmp_path)
        key = values.save(value)
        assert key == digest(value)
        assert _equal(values.load(key), value)

    def test_numpy_and_pandas_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        np = pytest.importorskip("numpy")
        pd = pytest.importorskip("pandas")
        values = values_of(backend, tmp_path)
        array = np.arange(1000, dtype="float64").reshape(10, 100)
        frame = pd.DataFrame({"x": np.arange(5), "y": list("abcde")})
        nested = {"array": array, "frame": frame, "scale": 2.0}
        for value in (array, frame, nested):
            loaded = values.load(values.save(value))
            assert digest(loaded) == digest(value)

    def test_shared_children_stored_once(self, backend: Backend, tmp_path: Path) -> None:
        np = pytest.importorskip("numpy")
        values = values_of(backend, tmp_path)
        big = np.ones(10_000)
        values.save({"run": 1, "data": big})
        before = set(values.list())
        values.save({"run": 2, "data": big})
        added = set(values.list()) - before
        assert digest(big) in before
        assert len(added) == 1  # only the new container; the array is shared

    def test_save_is_idempotent(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        k1 = values.save([1, 2, 3])
        keys = set(values.list())
        assert values.save([1, 2, 3]) == k1
        assert set(values.list()) == keys

    def test_missing_is_key_error(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        with pytest.raises(KeyError):
            values.load(digest("never stored"))
        assert not values.contains(digest("never stored"))

    def test_contains_and_evict(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        key = values.save("value")
        assert values.contains(key) and values.contains(key[:6])
        values.evict(key[:8])
        assert not values.contains(key)
        values.evict(key)  # absent: nothing to do, no error
        values.evict(digest("never stored")[:10])

    def test_save_over_a_stored_key_keeps_the_first(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        key = digest("first")
        assert values.save("first", key) == key
        assert values.save("second", key) == key
        assert values.load(key) == "first"

    def test_digest_in_a_container_is_a_reference(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        inner = values.save([1.5, "x" * 300])
        outer = {"data": inner, "scale": 2}
        key = values.save(outer)
        assert key == digest({"data": [1.5, "x" * 300], "scale": 2})
        assert values.load(key) == {"data": [1.5, "x" * 300], "scale": 2}
        values.evict(inner)
        with pytest.raises(KeyError):
            values.load(key)  # a part is missing: a miss, never a bare digest

    def test_a_bare_digest_names_its_value(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        absent = digest("never stored")
        assert values.save(absent) == absent  # what a missing lazy argument hands back
        assert not values.contains(absent)  # never stored as its own value
        key = values.save("stored")
        assert values.save(key) == key and values.load(key) == "stored"

    def test_to_config_rebuilds_the_storage(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        check_to_config(values, "value", values.save("configured"))

    def test_expand_and_shrink(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        keys = [values.save(i) for i in range(300)]
        for key in keys[:50]:
            short = values.shrink(key)
            assert 4 <= len(short) < len(key)
            assert values.expand(short) == key
            assert values.expand(key) == key
        with pytest.raises(KeyError):
            values.expand(_absent_prefix(keys))

    def test_ambiguous_prefix_names_candidates(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
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
        values = values_of(backend, tmp_path)
        keys = {values.save(i) for i in range(20)}
        assert keys <= set(values.list())

    def test_pickle_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        key = values.save("kept")
        clone = pickle.loads(pickle.dumps(values))
        if type(values).persistent:
            assert clone.load(key) == "kept"
        clone.save("again")

    def test_corrupt_entry_reads_as_miss(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "corrupt")
        values = values_of(backend, tmp_path)
        key = values.save("soon damaged" * 10)
        backend.corrupt(values, key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(KeyError):
                values.load(key)
        assert any(issubclass(w.category, CorruptEntryWarning) for w in caught)

    def test_load_many_gives_what_load_gives(self, backend: Backend, tmp_path: Path) -> None:
        values = values_of(backend, tmp_path)
        stored = [*SAMPLES, "large " * 1000]  # a value too large to keep beside the records
        keys = [values.save(value) for value in stored]
        absent = digest("never stored")
        loaded = values.load_many([*keys, absent, keys[0]])
        assert set(loaded) == set(keys)
        assert all(_equal(loaded[key], value) for key, value in zip(keys, stored, strict=True))

    def test_load_many_leaves_a_corrupt_entry_out(self, backend: Backend, tmp_path: Path) -> None:
        require(backend, "corrupt")
        values = values_of(backend, tmp_path)
        kept, damaged = values.save("kept"), values.save("soon damaged" * 10)
        backend.corrupt(values, damaged)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert values.load_many([kept, damaged]) == {kept: "kept"}
        assert any(issubclass(w.category, CorruptEntryWarning) for w in caught)


def _absent_prefix(keys: list[Digest]) -> str:
    for n in range(16**4):
        prefix = f"{n:04x}"
        if not any(k.startswith(prefix) for k in keys):
            return prefix
    raise AssertionError("every 4-character prefix is taken")
