"""Large arrays in pickle files: out-of-band buffers, one copy on a hit, old entries still read."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fleche.digest import digest
from fleche.errors import CorruptEntryWarning
from fleche.serializers import CloudpickleSerializer, Compressed, PickleSerializer
from fleche.storage import ValuePickleFile

np = pytest.importorskip("numpy")

#: An entry written by fleche 0.1.0 before out-of-band buffers: an in-band
#: pickle of ``np.arange(9000.0).reshape(90, 100)``, large enough (72 KB)
#: for the large-file read path.
WRITTEN_BEFORE = Path(__file__).parent / "data" / "pickle_files_v1"


def big() -> Any:
    return np.random.default_rng(0).random(50_000)  # 400 KB


@dataclasses.dataclass(frozen=True)
class InBandPickle:
    """What the pickle serializer wrote before: the whole array inside the stream."""

    name: ClassVar[str] = "pickle"

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=5)

    def loads(self, data: Any) -> Any:
        return pickle.loads(data)


def test_an_entry_written_before_still_loads(tmp_path: Path) -> None:
    root = tmp_path / "values"
    shutil.copytree(WRITTEN_BEFORE, root)
    expected = np.arange(9000, dtype="float64").reshape(90, 100)
    loaded = ValuePickleFile(root).load(digest(expected))
    assert np.array_equal(loaded, expected) and loaded.flags.writeable


@pytest.mark.parametrize("secret_key", [(), "k"], ids=["unsigned", "signed"])
def test_in_band_entries_load_and_are_checked(tmp_path: Path, secret_key: Any) -> None:
    old = ValuePickleFile(tmp_path, serializer=InBandPickle(), secret_key=secret_key)
    key = old.save(big())
    values = ValuePickleFile(tmp_path, secret_key=secret_key)
    assert np.array_equal(values.load(key), big())
    path = values._path(key)
    data = bytearray(path.read_bytes())
    data[-1000] ^= 1
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyError):
            ValuePickleFile(tmp_path, secret_key=secret_key).load(key)
    assert any(issubclass(w.category, CorruptEntryWarning) for w in caught)


def test_large_buffers_go_after_the_stream_small_values_stay_plain(tmp_path: Path) -> None:
    values = ValuePickleFile(tmp_path)
    large, small = values.save(big()), values.save(np.arange(10.0))
    assert b"\xffFLB" in values._path(large).read_bytes()[:64]
    assert values._path(small).read_bytes().endswith(pickle.dumps(np.arange(10.0), protocol=5))


def test_a_hit_is_aligned_writable_and_its_own(tmp_path: Path) -> None:
    values = ValuePickleFile(tmp_path)
    key = values.save({"x": big(), "y": big() * 2})
    first, second = values.load(key), values.load(key)
    for array in (first["x"], first["y"]):
        assert array.flags.aligned and array.flags.writeable
    first["x"][:] = 0
    assert np.array_equal(second["x"], big()) and np.array_equal(values.load(key)["x"], big())


def test_read_only_arrays_stay_read_only(tmp_path: Path) -> None:
    array = big()
    array.flags.writeable = False
    values = ValuePickleFile(tmp_path)
    loaded = values.load(values.save(array))
    assert np.array_equal(loaded, array) and not loaded.flags.writeable


@pytest.mark.parametrize(
    "serializer",
    [PickleSerializer(), Compressed(PickleSerializer(), "zlib"), "cloudpickle"],
    ids=["pickle", "zlib", "cloudpickle"],
)
def test_round_trip_from_bytes_and_from_a_writable_buffer(serializer: Any) -> None:
    if serializer == "cloudpickle":
        pytest.importorskip("cloudpickle")
        serializer = CloudpickleSerializer()
    value = {
        "x": big(),
        "strided": big()[::2],
        "fortran": np.asfortranarray(big().reshape(250, 200)),
    }
    data = serializer.dumps(value)
    for given in (data, bytearray(data)):
        loaded = serializer.loads(given)
        assert all(np.array_equal(loaded[k], v) for k, v in value.items())
        assert loaded["fortran"].flags.f_contiguous and loaded["x"].flags.writeable
    shared = np.frombuffer(buffer := bytearray(data), dtype=np.uint8)
    zero_copy = serializer.loads(buffer)["x"]
    assert np.shares_memory(zero_copy, shared) == (not isinstance(serializer, Compressed))
    assert not np.shares_memory(serializer.loads(data)["x"], np.frombuffer(data, dtype=np.uint8))


def test_a_truncated_frame_is_an_error_not_a_value() -> None:
    data = PickleSerializer().dumps(big())
    with pytest.raises(ValueError, match="truncated"):
        PickleSerializer().loads(data[:-8])


def test_protocol_4_writes_a_plain_stream() -> None:
    data = PickleSerializer(protocol=4).dumps(big())
    assert np.array_equal(pickle.loads(data), big())


def test_writable_copy_is_an_equal_writable_buffer_of_its_own() -> None:
    from fleche.serializers import uninitialized, writable_copy

    data = bytes(range(256)) * 1000
    copy = writable_copy(data)
    assert not copy.readonly and copy.tobytes() == data
    copy[0] = 255
    assert data[0] == 0  # a copy, not a view
    assert len(memoryview(uninitialized(17))) == 17
