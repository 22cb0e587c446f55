"""File backends: what only they do (the shared behaviour is in the conformance suite)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fleche.digest import Digest, digest
from fleche.errors import ConfigError, CorruptEntryWarning
from fleche.serializers import (
    CloudpickleSerializer,
    Compressed,
    DillSerializer,
    PickleSerializer,
    get_serializer,
)
from fleche.storage import CallPickleFile, FileStorage, PickleFileBackend, ValuePickleFile
from fleche.storage.file_leftovers import temporary_sibling


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _key(n: int) -> Digest:
    return digest(("key", n))


# -- layout --------------------------------------------------------------------


def test_one_file_per_key_in_a_fan_out_directory(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path)
    key = values.save("a value")
    assert _files(tmp_path) == [tmp_path / key[:3] / key[3:]]
    assert values._path(key) == tmp_path / key[:3] / key[3:]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _TwoLevels(PickleFileBackend):
    fanout = (2, 2)


def test_deeper_fan_out_layouts_work_too(tmp_path: Path) -> None:
    storage = _TwoLevels(root=tmp_path)
    keys = sorted(storage.put(i, _key(i)) for i in range(200))
    assert _files(tmp_path)[0].relative_to(tmp_path).parts == (
        keys[0][:2],
        keys[0][2:4],
        keys[0][4:],
    )
    assert sorted(storage.list()) == keys
    for prefix in ("", keys[5][:1], keys[5][:3], keys[5][:5]):
        assert list(storage._prefix_range(prefix)) == [k for k in keys if k.startswith(prefix)]
    assert storage._key_of(storage._path(keys[3])) == keys[3]


def test_root_may_be_a_string_and_is_created_on_first_write(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    values = ValuePickleFile(root=str(root))
    assert isinstance(values.root, Path) and values.root == root
    assert not root.exists()
    assert list(values.list()) == []
    with pytest.raises(KeyError):
        values.load(digest("nothing"))
    values.save(1)
    assert root.is_dir()


@pytest.mark.parametrize("length", range(0, 8))
def test_prefix_range_is_sorted_and_complete_for_every_length(tmp_path: Path, length: int) -> None:
    storage = PickleFileBackend(root=tmp_path)
    keys = sorted({storage.put(i, _key(i)) for i in range(400)})
    for probe in keys[::37]:
        prefix = probe[:length]
        assert list(storage._prefix_range(prefix)) == [k for k in keys if k.startswith(prefix)]
    assert list(storage._prefix_range("zz")) == []


def test_prefix_range_is_lazy(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path)
    for i in range(50):
        storage.put(i, _key(i))
    stream = storage._prefix_range("")
    first = next(iter(stream))
    assert first == min(storage.list())


def test_foreign_and_temporary_files_are_not_keys(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path)
    key = values.save("kept")
    leaf = values._path(key).parent
    temporary = leaf / f".{values._path(key).name}.0123abcd.tmp"
    temporary.write_bytes(b"half a wri")
    assert values._key_of(temporary) == key
    (leaf / "README").write_text("not a key")
    (tmp_path / "notes.txt").write_text("not a key")
    (tmp_path / "zz").mkdir()
    assert list(values.list()) == [key]
    assert values.expand(key[:5]) == key


def test_short_or_foreign_key_is_a_miss(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path)
    with pytest.raises(KeyError):
        storage.get(Digest("abcd"))
    assert not storage._contains(Digest("abcd"))


# -- writes --------------------------------------------------------------------


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path, fsync=True)
    calls = CallPickleFile(root=tmp_path / "calls")
    for i in range(30):
        values.save({"i": i, "data": np.arange(i)})
        calls.put(i, _key(i))
        calls.put(i + 1, _key(i))  # overwrite
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize("final", ["root/abc/def", "/abc/def", "/def", "def", "root//abc/def"])
def test_a_temporary_file_is_a_hidden_sibling_named_anew_each_time(final: str) -> None:
    directory, name = os.path.split(final)
    first, second = temporary_sibling(final), temporary_sibling(final)
    assert first != second
    for temporary in (first, second):
        here, hidden = os.path.split(temporary)
        assert os.path.normpath(here or ".") == os.path.normpath(directory or ".")
        assert hidden.startswith(f".{name}.") and hidden.endswith(".tmp")


def test_failed_write_stores_nothing_and_cleans_up(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path)
    storage.put("old", _key(1))
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        storage.put(lambda: 0, _key(1))
    assert storage.get(_key(1)) == "old"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        storage.put(lambda: 0, _key(2))
    assert not storage._contains(_key(2))
    assert _files(tmp_path) == [storage._path(_key(1))]


def test_values_are_not_rewritten_calls_are(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path / "values")
    key = values.save("content")
    path = values._path(key)
    os.utime(path, (1, 1))
    inode = path.stat().st_ino
    values.save("content")
    assert path.stat().st_ino == inode  # the same file, not a rewrite...
    assert values.stored_at(key) > 1  # ...marked as stored again, for gc
    calls = CallPickleFile(root=tmp_path / "calls")
    calls.put("first", _key(1))
    calls.put("second", _key(1))
    assert calls.get(_key(1)) == "second"


def test_a_damaged_value_is_rewritten_by_the_next_save(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path)
    key = values.save("precious" * 10)
    values._path(key).write_bytes(b"garbage")
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        values.load(key)
    values.save("precious" * 10)
    assert values.load(key) == "precious" * 10


def test_a_damaged_child_is_rewritten_by_the_next_save_of_its_parent(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path)
    child = "a long child string " * 20  # stored apart from its parent
    key = values.save({"child": child})
    values._path(digest(child)).write_bytes(b"")
    with pytest.warns(CorruptEntryWarning, match=digest(child)), pytest.raises(KeyError):
        values.load(key)
    values.save({"child": child})
    assert ValuePickleFile(root=tmp_path).load(key) == {"child": child}


def test_a_swapped_call_record_is_refused_not_served_as_the_other_call(tmp_path: Path) -> None:
    calls = CallPickleFile(root=tmp_path)
    calls.put("record of one", _key(1))
    calls.put("record of two", _key(2))
    one, two = calls._path(_key(1)), calls._path(_key(2))
    first = one.read_bytes()
    one.write_bytes(two.read_bytes())
    two.write_bytes(first)
    for key in (_key(1), _key(2)):
        with pytest.warns(CorruptEntryWarning, match=key), pytest.raises(KeyError):
            calls.get(key)


def _write_many(root: str, key: str, worker: int, times: int) -> None:
    storage = PickleFileBackend(root=root)
    value = _payload(worker)
    for _ in range(times):
        storage.put(value, Digest(key))


def _payload(worker: int) -> bytes:
    return bytes([worker]) * (1000 + 50_000 * worker)  # each writer a different size


def test_concurrent_writers_of_one_key_never_tear_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    key = _key(7)
    writers = [
        context.Process(target=_write_many, args=(str(tmp_path), key, w, 400)) for w in (1, 2, 3)
    ]
    for w in writers:
        w.start()
    storage = PickleFileBackend(root=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)  # a torn file would raise here
        while any(w.is_alive() for w in writers):
            try:
                value = storage.get(key)
            except KeyError:
                continue  # not written yet
            assert value == _payload(value[0])
        for w in writers:
            w.join(60)
            assert w.exitcode == 0
        assert storage.get(key) == _payload(storage.get(key)[0])
    assert _files(tmp_path) == [storage._path(key)]  # no temporary file left behind


# -- serializers and compression -----------------------------------------------


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize(
    "serializer", ["pickle", "cloudpickle", "dill", PickleSerializer(protocol=4)]
)
def test_serializers_round_trip(tmp_path: Path, serializer: object) -> None:
    values = ValuePickleFile(root=tmp_path, serializer=serializer)
    sample = {"array": np.linspace(0, 1, 1000), "f": _square, "text": "é" * 300}
    loaded = values.load(values.save(sample))
    assert np.array_equal(loaded["array"], sample["array"]) and loaded["f"](3) == 9
    assert loaded["text"] == sample["text"]


@pytest.mark.parametrize("serializer", ["cloudpickle", "dill"])
def test_cloudpickle_and_dill_store_lambdas(tmp_path: Path, serializer: str) -> None:
    storage = PickleFileBackend(root=tmp_path, serializer=serializer)
    offset = 5
    storage.put(lambda x: x + offset, _key(1))
    assert storage.get(_key(1))(1) == 6


def test_reader_follows_the_serializer_named_in_the_file(tmp_path: Path) -> None:
    PickleFileBackend(root=tmp_path, serializer="dill").put(lambda: 42, _key(1))
    assert PickleFileBackend(root=tmp_path).get(_key(1))() == 42


@pytest.mark.parametrize("codec", ["zlib", "bz2", "lzma"])
def test_compression_round_trips_and_shrinks(tmp_path: Path, codec: str) -> None:
    data = np.zeros(100_000)
    plain = PickleFileBackend(root=tmp_path / "plain")
    packed = PickleFileBackend(root=tmp_path / "packed", compression=codec, compression_level=1)
    plain.put(data, _key(1))
    packed.put(data, _key(1))
    assert packed._path(_key(1)).stat().st_size < plain._path(_key(1)).stat().st_size / 20
    assert np.array_equal(packed.get(_key(1)), data)
    # a reader without compression settings reads compressed entries (the header says how)
    assert np.array_equal(PickleFileBackend(root=tmp_path / "packed").get(_key(1)), data)


def test_compressed_serializer_wrapper() -> None:
    serializer = Compressed(PickleSerializer(), "lzma")
    assert serializer.name == "lzma+pickle"
    assert serializer.loads(serializer.dumps([1, "two"])) == [1, "two"]


def test_bad_configuration_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cloudpickle.*dill.*pickle"):
        ValuePickleFile(root=tmp_path, serializer="marshal")
    with pytest.raises(ConfigError, match="lzma"):
        ValuePickleFile(root=tmp_path, compression="snappy")
    with pytest.raises(TypeError):
        get_serializer(42)


@pytest.mark.parametrize(
    ("name", "cls"), [("dill", DillSerializer), ("cloudpickle", CloudpickleSerializer)]
)
def test_missing_optional_serializer_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, cls: type
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # makes "import name" fail
    with pytest.raises(ImportError, match=rf"pip install 'fleche\[{name}\]'"):
        ValuePickleFile(root=tmp_path, serializer=name)
    with pytest.raises(ImportError, match=rf"fleche\[{name}\]"):
        cls()


# -- damaged files -------------------------------------------------------------


def _damage_cases(data: bytes) -> dict[str, bytes]:
    flipped = bytearray(data)
    flipped[-3] ^= 0x01
    future = bytearray(data)
    future[4] = 99
    return {
        "empty": b"",
        "garbage": b"\x80\x05not a pickle at all",
        "truncated": data[: len(data) // 2],
        "one byte flipped": bytes(flipped),
        "future format": bytes(future),
        "plain pickle": pickle.dumps("a plain pickle"),
    }


@pytest.mark.parametrize("case", list(_damage_cases(b"x" * 40)))
def test_damaged_file_reads_as_a_miss_with_a_warning(tmp_path: Path, case: str) -> None:
    storage = PickleFileBackend(root=tmp_path)
    storage.put("the real value" * 5, _key(1))
    path = storage._path(_key(1))
    path.write_bytes(_damage_cases(path.read_bytes())[case])
    with pytest.warns(CorruptEntryWarning, match=_key(1)), pytest.raises(KeyError):
        storage.get(_key(1))
    assert storage._contains(_key(1))  # still there for ``fleche verify`` to report


def test_file_moved_to_another_key_is_refused(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path)
    storage.put("value of one", _key(1))
    storage.put("value of two", _key(2))
    os.replace(storage._path(_key(1)), storage._path(_key(2)))
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        storage.get(_key(2))


def test_header_records_format_and_flags(tmp_path: Path) -> None:
    storage = PickleFileBackend(root=tmp_path, serializer="dill", compression="zlib")
    storage.put("x", _key(1))
    magic, version, flags, codec, length = struct.unpack_from(
        "<4sBBBB", storage._path(_key(1)).read_bytes()
    )
    assert (magic, version, flags, codec, length) == (b"\x89FLE", 1, 0x02, 1, len("dill"))


# -- pickling ------------------------------------------------------------------


def test_pickles_by_constructor_arguments(tmp_path: Path) -> None:
    values = ValuePickleFile(root=tmp_path, serializer="dill", compression="lzma", fsync=True)
    clone = pickle.loads(pickle.dumps(values))
    assert clone == values and clone.root == tmp_path
    assert isinstance(clone, FileStorage) and clone.load(values.save([1, 2])) == [1, 2]


def _flags(storage: ValuePickleFile, key: Digest) -> int:
    return storage._path(key).read_bytes()[5]


def test_compress_all_and_decompress_all_rewrite_every_entry(tmp_path: Path) -> None:
    values = ValuePickleFile(tmp_path)
    keys = [values.save(["x" * 1000, i]) for i in range(3)]
    assert not any(_flags(values, k) & 0x02 for k in keys)
    assert values.compress_all() == len(list(values.list()))
    assert all(_flags(values, k) & 0x02 for k in keys)
    assert [values.load(k) for k in keys] == [["x" * 1000, i] for i in range(3)]
    values.decompress_all()
    assert not any(_flags(values, k) & 0x02 for k in keys)
    assert values.load(keys[0]) == ["x" * 1000, 0]


def test_with_serializer_writes_with_another_and_reads_every_entry(tmp_path: Path) -> None:
    values = ValuePickleFile(tmp_path, compress=True)
    key = values.save("pickled")
    dill = values.with_dill()
    assert dill.serializer == "dill" and dill.compress and dill.root == values.root
    other = dill.save("dilled")
    assert b"dill" in dill._path(other).read_bytes()[:16]
    assert values.load(other) == "dilled" and dill.load(key) == "pickled"
    assert values.with_cloudpickle().with_pickle().serializer == "pickle"


def test_register_serializer_takes_a_loader_of_a_module(tmp_path: Path) -> None:
    from fleche.storage.pickle_file import register_serializer

    register_serializer("stdlib-pickle", lambda: pickle)
    values = ValuePickleFile(tmp_path, serializer="stdlib-pickle")
    key = values.save({"a": 1})
    assert b"stdlib-pickle" in values._path(key).read_bytes()[:32]
    assert ValuePickleFile(tmp_path).load(key) == {"a": 1}
