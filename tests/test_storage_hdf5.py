"""HDF5-specific behaviour of the bagofholding/h5py storages.

What every storage does is in the conformance suite (``-k hdf5``); here:
files other HDF5 tools can read, shared files under concurrent writers,
changing the layout, the version check and damaged files.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
H5Bag = pytest.importorskip("bagofholding").H5Bag

from fleche.call import Call  # noqa: E402
from fleche.digest import Digest, digest  # noqa: E402
from fleche.errors import ConfigError, CorruptEntryWarning  # noqa: E402
from fleche.storage import (  # noqa: E402
    BagOfHoldingH5FileBackend,
    CallBagOfHoldingH5File,
    ValueBagOfHoldingH5File,
    hdf5_shared,  # noqa: E402
)
from fleche.storage.hdf5_check import CHECK, PREFIX, tree_seal  # noqa: E402


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and digest(a) == digest(b)


# -- readable by plain h5py ------------------------------------------------------


@pytest.mark.parametrize("prefix_length", [0, 2])
def test_array_is_a_plain_dataset(tmp_path: Path, prefix_length: int) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=prefix_length)
    array = np.linspace(0, 1, 600).reshape(20, 30)
    key = values.save(array)
    file, path = values.location(key[:8])
    with h5py.File(file, "r") as handle:
        dataset = handle[path]["array"]
        assert isinstance(dataset, h5py.Dataset)
        assert dataset.dtype == np.float64 and dataset.shape == (20, 30)
        np.testing.assert_array_equal(dataset[()], array)


@pytest.mark.parametrize(
    "array",
    [
        np.float64(2.5).reshape(()),
        np.arange(3, dtype=">i4"),
        np.zeros((0, 3)),
        np.array([1 + 2j]),
        np.ones(3, bool),
    ],
    ids=["0-d", "big-endian", "empty", "complex", "bool"],
)
def test_arrays_round_trip_exactly(tmp_path: Path, array: np.ndarray) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path)
    loaded = values.load(values.save(array))
    assert _same(loaded, array) and loaded.dtype == array.dtype and loaded.shape == array.shape


@pytest.mark.parametrize("prefix_length", [0, 2])
@pytest.mark.parametrize(
    "times",
    [
        np.arange(1000).astype("datetime64[ns]"),
        np.array(["2020-01-01", "NaT", "1969-12-31"], dtype="datetime64[D]"),
        np.arange(12).reshape(3, 4).astype(">m8[s]").T,
        np.array(5, dtype="timedelta64[ms]"),
        np.array([], dtype="datetime64[us]"),
    ],
    ids=["ns", "days-NaT", "big-endian-transposed", "0-d", "empty"],
)
def test_time_arrays_are_int64_datasets_and_round_trip_exactly(
    tmp_path: Path, prefix_length: int, times: np.ndarray
) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=prefix_length)
    key = values.save(times)
    loaded = values.load(key)
    assert loaded.dtype == times.dtype and loaded.shape == times.shape
    assert loaded.tobytes() == times.tobytes()  # NaT too
    file, path = values.location(key)
    with h5py.File(file, "r") as handle:
        assert handle[path]["array"].dtype == np.int64


@pytest.mark.parametrize(
    "data",
    [
        np.array([b"ab\x00cd", b"", b"\xff" * 6, b"xyz"], dtype="S6"),
        np.zeros((2, 0), dtype="S3"),
        np.array(b"q", dtype="S1"),
    ],
    ids=["embedded-nul", "empty", "0-d"],
)
def test_fixed_width_bytes_arrays_are_datasets_and_round_trip_exactly(
    tmp_path: Path, data: np.ndarray
) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    key = values.save(data)
    loaded = values.load(key)
    assert loaded.dtype == data.dtype and loaded.shape == data.shape
    assert loaded.tobytes() == data.tobytes()
    with h5py.File(values.location(key)[0], "r") as handle:
        assert handle["array"].dtype == data.dtype


@pytest.mark.parametrize("dtype", [b"<M8[ms]", b"|O", b"<f8", b"<M8[nonsense]"])
def test_a_time_entry_with_a_changed_dtype_is_a_warned_miss(tmp_path: Path, dtype: bytes) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    times = np.arange(10).astype("datetime64[s]")
    key = values.save(times)
    with h5py.File(values.location(key)[0], "r+") as handle:
        handle.attrs["fleche_dtype"] = np.bytes_(dtype)
    assert _outcome(values, key, times) == "miss"


def test_time_arrays_stored_as_bags_by_older_fleche_still_load(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    times = np.arange(10).astype("datetime64[s]")
    key = values.save(times)
    file, _ = values.location(key)
    file.unlink()
    H5Bag.save(times, str(file))  # the format datetime arrays had before the time format
    with h5py.File(file, "r+") as handle:
        handle.attrs[CHECK] = tree_seal(key, handle)
    loaded = values.load(key)
    assert loaded.dtype == times.dtype and loaded.tobytes() == times.tobytes()


def test_dict_of_arrays_keeps_each_array_a_dataset(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path)
    result = {"energy": np.arange(5.0), "positions": np.ones((3, 3), dtype=np.int32), "steps": 5}
    values.save(result)
    for name in ("energy", "positions"):
        file, path = values.location(digest(result[name]))
        with h5py.File(file, "r") as handle:
            np.testing.assert_array_equal(handle[path]["array"][()], result[name])


def test_dataframe_columns_are_datasets(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path)
    frame = pd.DataFrame(
        {
            "temperature": np.linspace(250, 350, 50),
            "run": np.arange(50),
            "label": [f"r{i}" for i in range(50)],
        }
    )
    key = values.save(frame)
    file, path = values.location(key)
    with h5py.File(file, "r") as handle:
        columns = handle[path]["columns"]
        assert [columns[str(i)].attrs["label"] for i in range(3)] == ["temperature", "run", "label"]
        np.testing.assert_array_equal(columns["0"][()], frame["temperature"].to_numpy())
        assert list(columns["2"].asstr()[()]) == list(frame["label"])
    assert _same(values.load(key), frame)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"x": [1.5, np.nan], "n": pd.array([1, None], dtype="Int64")}),
        pd.DataFrame(
            {"s": pd.array(["a", None, "c"], dtype="str")}, index=pd.Index([7, 8, 9], name="id")
        ),
        pd.DataFrame(
            {"o": np.array(["a", "b"], dtype=object)}, columns=pd.Index(["o"], dtype=object)
        ),
        pd.DataFrame(
            {"t": pd.to_datetime(["2020-01-01", "2021-06-30"])},
            index=pd.Index(["a", "b"], name="k"),
        ),
        pd.DataFrame(
            {"t": pd.date_range("2020", periods=3, tz="Europe/Paris")}, index=pd.Index([1, 2, 3])
        ),
        pd.Series(np.arange(5.0), index=pd.bdate_range("2024-01-01", periods=5, name="day")),
        pd.DataFrame(np.eye(3)),
        pd.Series(np.arange(4.0), name="series"),
        pd.DataFrame({"c": pd.Categorical(["u", "v", "u"])}),  # through bagofholding
    ],
    ids=[
        "nan-and-nullable",
        "string-with-missing",
        "object-strings",
        "datetimes",
        "time-zone",
        "frequency",
        "range-columns",
        "series",
        "categorical",
    ],
)
def test_frames_round_trip_exactly(tmp_path: Path, frame: object) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path)
    loaded = values.load(values.save(frame))
    assert _same(loaded, frame)
    assert loaded.index.dtype == frame.index.dtype
    assert getattr(loaded.index, "freq", None) == getattr(frame.index, "freq", None)
    if isinstance(frame, pd.DataFrame):
        assert list(loaded.dtypes) == list(frame.dtypes)
        assert loaded.columns.dtype == frame.columns.dtype


# -- shared files under concurrent writers ----------------------------------------


def _write_many(root: str, worker: int, count: int) -> None:
    storage = BagOfHoldingH5FileBackend(root=root, prefix_length=2)
    for i in range(count):
        key = Digest(f"aa{worker:02x}{i:04x}".ljust(32, "0"))
        storage.put({"worker": worker, "i": i, "data": list(range(i % 7))}, key)


def test_processes_writing_one_shared_file_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), w, 25)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    assert _files(tmp_path) == [tmp_path / "aa.h5"]  # one shared file took every write
    storage = BagOfHoldingH5FileBackend(root=tmp_path, prefix_length=2)
    keys = list(storage.list())
    assert len(keys) == 100
    for key in keys:
        value = storage.get(key)
        assert key == Digest(f"aa{value['worker']:02x}{value['i']:04x}".ljust(32, "0"))
        assert value["data"] == list(range(value["i"] % 7))


def test_shared_file_rewrites_leave_no_garbage(tmp_path: Path) -> None:
    calls = BagOfHoldingH5FileBackend(root=tmp_path, prefix_length=1)
    key = Digest("b" * 32)
    calls.put("first version " * 100, key)
    size = (tmp_path / "b.h5").stat().st_size
    for _ in range(5):
        calls.put("first version " * 100, key)  # overwritten each time (not content-addressed)
    assert (tmp_path / "b.h5").stat().st_size == size
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    calls.evict(key)
    assert not (tmp_path / "b.h5").exists()


# -- changing the layout ---------------------------------------------------------


SAMPLES = [
    np.arange(100.0),
    pd.DataFrame({"x": np.arange(3), "y": list("abc")}),
    {"a": np.ones(4), "b": [1, 2, {"c": "deep"}]},
    "text" * 100,
    list(range(50)),
]


def test_refix_round_trip(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    keys = [values.save(v) for v in SAMPLES]
    stored = sorted(values.list())
    for prefix_length, pattern in [
        (2, "??.h5"),
        (5, "??/??/?????.h5"),
        (1, "?.h5"),
        (3, "??/???.h5"),
        (0, "??/??/*"),
    ]:
        values = values.refix(prefix_length)
        assert values.prefix_length == prefix_length
        assert sorted(values.list()) == stored
        expected = {p for p in tmp_path.glob(pattern) if not p.name.startswith(".")}
        assert set(_files(tmp_path)) == expected, prefix_length
        for key, value in zip(keys, SAMPLES, strict=True):
            assert _same(values.load(key), value)
    assert values.relocate() == 0  # already in place


def test_consolidate_gathers_per_key_files(tmp_path: Path) -> None:
    per_key = CallBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    grouped = CallBagOfHoldingH5File(root=tmp_path, prefix_length=2)
    records = [Call(name="f", module="m", arguments={"x": i}, result=i * i) for i in range(30)]
    keys = [per_key.save(r) for r in records[:20]] + [grouped.save(r) for r in records[20:]]
    # Mixed layouts read the same from either storage.
    for storage in (per_key, grouped):
        assert sorted(storage.list()) == sorted(keys)
        assert all(storage.load(k).result == digest(i * i) for i, k in enumerate(keys))
    assert grouped.relocate() == 20
    assert all(p.name.endswith(".h5") for p in _files(tmp_path))
    assert sorted(per_key.list()) == sorted(keys)


def test_interrupted_refix_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    keys = [values.save(i * 1000) for i in range(40)]
    original = hdf5_shared.rewrite
    done = []

    def flaky(file, *args):  # the fourth shared file written fails, as if killed
        if len(done) == 3:
            raise RuntimeError("interrupted")
        done.append(file)
        return original(file, *args)

    monkeypatch.setattr(hdf5_shared, "rewrite", flaky)
    with pytest.raises(RuntimeError):
        values.refix(2)
    grouped = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=2)
    for storage in (values, grouped):
        assert sorted(storage.list()) == sorted(keys)
        assert [storage.load(k) for k in keys] == [i * 1000 for i in range(40)]
    monkeypatch.undo()
    assert grouped.relocate() > 0
    assert all(p.name.endswith(".h5") for p in _files(tmp_path))
    assert [grouped.load(k) for k in keys] == [i * 1000 for i in range(40)]


# -- configuration, versions, damage -------------------------------------------------


def test_fields_are_positional_as_the_spec_shows(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, "exact", 3, 2.5, remaining_depth=1)
    assert (values.root, values.version_validator, values.prefix_length) == (tmp_path, "exact", 3)
    assert (values.lock_timeout, values.remaining_depth) == (2.5, 1)
    default = BagOfHoldingH5FileBackend(tmp_path)
    assert (default.version_validator, default.prefix_length, default.lock_timeout) == (
        None,
        2,
        1.0,
    )
    with pytest.raises(TypeError, match="unexpected"):
        CallBagOfHoldingH5File(tmp_path, colour="red")


def test_consolidate_turns_per_key_files_into_the_grouped_layout(tmp_path: Path) -> None:
    per_key = ValueBagOfHoldingH5File(tmp_path, prefix_length=0)
    keys = [per_key.save(v) for v in SAMPLES]
    grouped = ValueBagOfHoldingH5File.consolidate(tmp_path, prefix_length=1)
    assert isinstance(grouped, ValueBagOfHoldingH5File) and grouped.prefix_length == 1
    assert {p.name for p in _files(tmp_path)} <= {f"{c}.h5" for c in "0123456789abcdef"}
    for key, value in zip(keys, SAMPLES, strict=True):
        assert _same(grouped.load(key), value)


def test_large_arrays_keep_a_file_of_their_own_when_grouped(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path)  # grouped by two characters
    big = np.zeros(200_000)  # 1.6 MB: copying it with every write to its shared file would cost
    frame = pd.DataFrame({"a": np.arange(200_000.0)})
    keys = [values.save(big), values.save(frame), values.save(np.zeros(10))]
    assert [values.location(k)[0].suffix for k in keys] == ["", "", ".h5"]
    assert values.relocate() == 0 and values.refix(1).relocate() == 0
    assert values.location(keys[0])[0].suffix == ""
    np.testing.assert_array_equal(values.load(keys[0]), big)


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prefix_length"):
        ValueBagOfHoldingH5File(root=tmp_path, prefix_length=9)
    with pytest.raises(ConfigError, match="version_validator"):
        ValueBagOfHoldingH5File(root=tmp_path, version_validator="strict")


def _age_package_versions(file: Path, key: str) -> None:
    """Pretend every object in the per-key ``file`` was saved with package version 0.0.1."""
    with h5py.File(file, "r+") as handle:

        def age(name: str, item: object) -> None:
            if "version" in item.attrs and "content_type" in item.attrs:
                item.attrs["version"] = "0.0.1"

        handle.visititems(age)
        handle.attrs[CHECK] = tree_seal(key, handle)  # as that older writer sealed it


def test_loads_survive_package_upgrades_by_default(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=0)
    assert values.version_validator is None
    scalar = np.float64(2.5)  # stored through bagofholding, which records numpy's version
    key = values.save(scalar)
    _age_package_versions(values.location(key)[0], key)
    assert _same(values.load(key), scalar)
    strict = ValueBagOfHoldingH5File(root=tmp_path, version_validator="semantic-major")
    with pytest.warns(CorruptEntryWarning, match="0.0.1"):
        with pytest.raises(KeyError):
            strict.load(key)
    # rebag: every bag written again with the installed versions (arrays record none)
    plain = values.save(np.arange(3))
    assert strict.rebag("none") == 1
    assert _same(strict.load(key), scalar) and _same(strict.load(plain), np.arange(3))


@pytest.mark.parametrize("prefix_length", [0, 1])
def test_damaged_file_is_a_warned_miss_and_is_replaced(tmp_path: Path, prefix_length: int) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=prefix_length)
    key = values.save(np.arange(1000))
    file, _ = values.location(key)
    file.write_bytes(file.read_bytes()[:700])
    with pytest.warns(CorruptEntryWarning):
        with pytest.raises(KeyError):
            values.load(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)  # a damaged shared file is set aside
        values.save(np.arange(1000))
    np.testing.assert_array_equal(values.load(key), np.arange(1000))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files in /proc")
@pytest.mark.parametrize("prefix_length", [0, 1])
def test_a_failed_read_leaves_no_file_open(tmp_path: Path, prefix_length: int) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path, prefix_length=prefix_length)
    array = np.full(1000, 7.0)
    key = values.save(array)
    file, _ = values.location(key)
    data = file.read_bytes()
    start = data.index(array.tobytes())
    file.write_bytes(data[:start] + np.full(1000, 8.0).tobytes() + data[start + array.nbytes :])
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError) as failed:
        values.load(key)
    opened = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str(file.resolve()) not in opened, failed.value  # the failure's traceback is alive


def test_garbage_file_is_a_warned_miss(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(root=tmp_path)
    key = values.save({"x": 1})
    values.location(key)[0].write_bytes(b"not an HDF5 file at all")
    with pytest.warns(CorruptEntryWarning):
        assert not _loads(values, key)


def _loads(values: ValueBagOfHoldingH5File, key: str) -> bool:
    try:
        values.load(key)
    except KeyError:
        return False
    return True


def test_import_fleche_does_not_import_h5py() -> None:
    code = "import sys, fleche, fleche.storage; print('h5py' in sys.modules, 'bagofholding' in sys.modules)"
    repository = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repository
    )
    assert out.stdout.split() == ["False", "False"]


# -- integrity: a changed or swapped entry is a warned miss, never a wrong value ------


def _kinds() -> list[object]:
    """One value of every entry format: array, pickled plain data, frame, bag, time."""
    frame = pd.DataFrame({"a": np.arange(50.0), "b": [f"s{i}" for i in range(50)]})
    times = np.arange(64).astype("datetime64[s]")
    return [np.arange(64.0), np.arange(64.0) + 1, [1, "two", 3.0], frame, np.float64(2.5), times]


def _outcome(values: ValueBagOfHoldingH5File, key: str, expected: object) -> str:
    """``"right"``, ``"miss"`` (with a corrupt-entry warning) or ``"WRONG"``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = values.load(key)
        except KeyError:
            warned = any(issubclass(w.category, CorruptEntryWarning) for w in caught)
            return "miss" if warned else "silent miss"
    return "right" if _same(loaded, expected) else "WRONG"


@pytest.mark.parametrize("prefix_length", [0, 1])
def test_bit_flips_never_load_a_wrong_value(tmp_path: Path, prefix_length: int) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, prefix_length=prefix_length, remaining_depth=2)
    stored = {values.save(v): v for v in _kinds()}
    outcomes: dict[str, int] = {}
    for key, value in stored.items():
        file, _ = values.location(key)
        data = file.read_bytes()
        for position in range(0, len(data), max(1, len(data) // 40)):
            flipped = bytearray(data)
            flipped[position] ^= 0x10
            file.write_bytes(bytes(flipped))
            outcome = _outcome(values, key, value)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            file.write_bytes(data)
    assert outcomes.get("WRONG", 0) == 0, outcomes
    assert outcomes.get("miss", 0) > 0  # the trials did damage something


def test_a_swapped_per_key_file_is_a_warned_miss(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, prefix_length=0)
    first, second = (values.save(v) for v in _kinds()[:2])  # two arrays of one shape
    values.location(second)[0].write_bytes(values.location(first)[0].read_bytes())
    assert _outcome(values, second, _kinds()[1]) == "miss"
    assert _outcome(values, first, _kinds()[0]) == "right"
    values.save(_kinds()[1])  # a damaged entry is rewritten by the next save
    assert _outcome(values, second, _kinds()[1]) == "right"


def _move_entry(source_file: Path, source: str, target_file: Path, target: str) -> None:
    """Put a copy of the entry ``source`` in place of the entry ``target``, as a tamperer could."""
    with h5py.File(target_file, "r+") as handle:
        del handle[target]
        if source_file == target_file:
            handle.copy(handle[source], handle, name=target)
            return
        with h5py.File(source_file, "r") as other:
            other.copy(other[source], handle, name=target)


def test_an_entry_moved_under_another_key_in_a_shared_file_is_a_warned_miss(
    tmp_path: Path,
) -> None:
    samples = _kinds()
    for n, (a, b) in enumerate([(0, 1), (1, 0), (2, 3), (3, 4), (4, 2)]):
        values = ValueBagOfHoldingH5File(tmp_path / str(n), prefix_length=1)
        keys = [values.save(v) for v in samples]
        _move_entry(values.location(keys[a])[0], keys[a], values.location(keys[b])[0], keys[b])
        assert _outcome(values, keys[b], samples[b]) == "miss", (a, b)


# -- shared files know their prefix: a swapped or foreign one is noticed ------------


def _two_prefixes(values: ValueBagOfHoldingH5File) -> list[tuple[str, np.ndarray]]:
    """Two arrays stored in two different shared files: ``(key, array)`` each."""
    stored: dict[str, tuple[str, np.ndarray]] = {}
    for n in range(1, 100):
        array = np.arange(float(n))
        stored.setdefault(values.location(values.save(array))[0].name, (digest(array), array))
        if len(stored) == 2:
            return list(stored.values())
    raise AssertionError("no two shared files")


def _swapped(root: Path) -> tuple[ValueBagOfHoldingH5File, list[tuple[str, np.ndarray]]]:
    """A grouped store whose two shared files (``_two_prefixes``) were swapped."""
    values = ValueBagOfHoldingH5File(root, prefix_length=1)
    stored = _two_prefixes(values)
    a, b = (values.location(key)[0] for key, _ in stored)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b), b.write_bytes(data_a)
    return values, stored


def test_a_shared_file_records_its_prefix(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, prefix_length=3)
    file, _ = values.location(values.save(np.arange(3.0)))
    with h5py.File(file, "r") as handle:
        assert handle.attrs[PREFIX] == file.name[:3].encode()


def test_swapped_shared_files_are_warned_misses_and_repaired(tmp_path: Path) -> None:
    values, [(first, one), (second, two)] = _swapped(tmp_path)
    assert _outcome(values, first, one) == "miss" and _outcome(values, second, two) == "miss"
    with pytest.warns(CorruptEntryWarning, match="swapped"):  # each file is set aside
        values.save(one), values.save(two)
    fresh = ValueBagOfHoldingH5File(tmp_path, prefix_length=1)  # as another process opens it
    assert _outcome(fresh, first, one) == "right" and _outcome(fresh, second, two) == "right"
    assert sorted(fresh.list()) == sorted([first, second])


def test_a_shared_file_replaced_by_a_foreign_one_is_noticed(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, prefix_length=1)
    (first, one), (second, two) = _two_prefixes(values)
    values.location(first)[0].write_bytes(values.location(second)[0].read_bytes())
    assert _outcome(values, first, one) == "miss"
    assert _outcome(values, second, two) == "right"
    with pytest.warns(CorruptEntryWarning, match="copied over"):
        assert list(ValueBagOfHoldingH5File(tmp_path, prefix_length=1).list()) == [second]
    with pytest.warns(CorruptEntryWarning):
        values.save(one)
    assert _outcome(values, first, one) == "right"


def test_entries_of_a_swapped_file_set_aside_warn_when_missed(tmp_path: Path) -> None:
    # The save of one key sets aside a swapped file holding another prefix's keys:
    # those keys, gone from every file now, still read as warned misses.
    values, [(first, one), (second, two)] = _swapped(tmp_path)
    b = tmp_path / f"{second[0]}.h5"  # the shared file of second
    with pytest.warns(CorruptEntryWarning):
        values.save(one)  # sets aside the file at a, which held the key second
    b.unlink()  # and the file at b goes too, e.g. set aside by another save
    assert _outcome(values, second, two) == "miss"


def test_a_shared_file_without_a_prefix_is_read_as_before(tmp_path: Path) -> None:
    values = ValueBagOfHoldingH5File(tmp_path, prefix_length=1)
    (first, one), (second, two) = _two_prefixes(values)
    for key in (first, second):
        with h5py.File(values.location(key)[0], "r+") as handle:
            del handle.attrs[PREFIX]  # a file written before prefixes were recorded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _same(values.load(first), one) and _same(values.load(second), two)
        with pytest.raises(KeyError):
            values.load(digest(np.arange(1000.0)))
        values.save(np.arange(1000.0))
