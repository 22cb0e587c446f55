"""HDF5 storages: saving and loading common scientific results.

Run: python benchmarks/bench_hdf5.py
Target (issue "Persistent stores"): a 10 MB float64 array saves and loads
within 2x of writing/reading the same dataset with raw h5py.  Also printed:
a dict of 10 arrays, a 100,000-row DataFrame and a list of 10,000 ints,
each beside raw h5py (or bagofholding alone, which the fast paths bypass),
and one call record in per-key files vs a shared file.  Save times include
computing the value's digest.  About a minute on a laptop.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _timing import ms, print_table  # noqa: E402
from bagofholding import H5Bag  # noqa: E402

from fleche.call import Call  # noqa: E402
from fleche.storage import CallBagOfHoldingH5File, ValueBagOfHoldingH5File  # noqa: E402

REPEAT = 7


def best(
    func: Callable[[int], object],
    setup: Callable[[int], object] = lambda i: None,
    repeat: int = REPEAT,
) -> float:
    """Best wall time of ``func(i)`` over ``repeat`` runs, ``setup(i)`` untimed before each."""
    times = []
    for i in range(repeat):
        setup(i)
        start = time.perf_counter()
        func(i)
        times.append(time.perf_counter() - start)
    return min(times)


def once(func: Callable[..., object], *args: object) -> float:
    """Wall time of one call, started with no dirty pages (writeback would slow whichever runs second)."""
    os.sync()
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def raw_write(file: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(file, "w") as handle:
        for name, array in arrays.items():
            if array.dtype == object:
                handle.create_dataset(name, data=array, dtype=h5py.string_dtype())
            else:
                handle.create_dataset(name, data=array)


def raw_read(file: Path) -> dict[str, np.ndarray]:
    with h5py.File(file, "r") as handle:
        return {name: (d.asstr()[()] if d.dtype == object else d[()]) for name, d in handle.items()}


def measure_value(
    work: Path, name: str, value: object, raw: dict[str, np.ndarray] | None
) -> list[list[str]]:
    """Rows for saving and loading ``value`` with fleche beside a raw h5py reference.

    The two are timed in alternation, ``REPEAT`` times each, and the medians
    compared: the best of a few 10 MB writes is an outlier that depends on
    the kernel's writeback, not on the code.
    """
    store = ValueBagOfHoldingH5File(root=work / f"{name}-load", prefix_length=0)
    key = store.save(value)
    raw_file = work / f"{name}-raw.h5"
    if raw is not None:
        raw_write(raw_file, raw)
    times: dict[str, list[float]] = {"save": [], "load": [], "raw save": [], "raw load": []}
    for i in range(REPEAT):
        times["save"].append(
            once(ValueBagOfHoldingH5File(root=work / f"{name}-{i}", prefix_length=0).save, value)
        )
        times["load"].append(once(store.load, key))
        if raw is not None:
            times["raw save"].append(once(raw_write, work / f"{name}-raw-{i}.h5", raw))
            times["raw load"].append(once(raw_read, raw_file))
    rows = []
    for operation in ("save", "load"):
        mine = statistics.median(times[operation])
        if raw is None:
            rows.append([name, operation, ms(mine), "", ""])
        else:
            reference = statistics.median(times[f"raw {operation}"])
            rows.append([name, operation, ms(mine), ms(reference), f"{mine / reference:.2f}x"])
    return rows


def measure_bag_alone(work: Path, name: str, value: object) -> list[list[str]]:
    """Rows for bagofholding alone (one run: it is slow on many small objects)."""
    file = work / f"{name}-bag.h5"
    save = best(lambda i: H5Bag.save(value, file), repeat=1)
    load = best(lambda i: H5Bag(file).load(version_validator="none"), repeat=1)
    return [
        [name, "save (bagofholding alone)", ms(save), "", ""],
        [name, "load (bagofholding alone)", ms(load), "", ""],
    ]


def measure_calls(work: Path) -> list[list[str]]:
    """One call record among 500, per-key files vs 16 shared files (prefix_length=1)."""
    rows = []
    for prefix_length, layout in ((0, "per-key files"), (1, "shared files")):
        calls = CallBagOfHoldingH5File(
            root=work / f"calls-{prefix_length}", prefix_length=prefix_length
        )
        for i in range(500):
            calls.save(Call(name="simulate", module="bench", arguments={"x": i}, result=i))
        save, load = time_record(
            calls, Call(name="simulate", module="bench", arguments={"x": -1}, result=0)
        )
        rows += [
            [f"call record ({layout})", "save", ms(save), "", ""],
            [f"call record ({layout})", "load", ms(load), "", ""],
        ]
    return rows


def time_record(calls: CallBagOfHoldingH5File, record: Call) -> tuple[float, float]:
    return best(lambda i: calls.save(record), repeat=20), best(
        lambda i: calls.load(record.key()), repeat=20
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fleche-bench-hdf5-"))
    rng = np.random.default_rng(0)
    try:
        array = rng.random(10 * 2**20 // 8)  # 10 MB of float64
        arrays = {f"a{i}": rng.random(2**17) for i in range(10)}  # 10 x 1 MB
        n = 100_000
        frame = pd.DataFrame(
            {
                "temperature": rng.random(n),
                "pressure": rng.random(n),
                "energy": rng.random(n),
                "step": np.arange(n),
                "label": [f"run-{i % 1000}" for i in range(n)],
            }
        )
        frame_raw = {
            c: frame[c].to_numpy(dtype=object if c == "label" else None) for c in frame.columns
        }
        ints = list(range(10_000))
        rows = []
        rows += measure_value(work, "10 MB float64 array", array, {"x": array})
        rows += measure_value(work, "dict of 10 x 1 MB arrays", arrays, arrays)
        rows += measure_value(work, "DataFrame 100k rows x 5", frame, frame_raw)
        rows += measure_value(work, "list of 10,000 ints", ints, {"x": np.array(ints)})
        rows += measure_bag_alone(work, "list of 10,000 ints", ints)
        rows += measure_calls(work)
        print_table(
            f"HDF5 storages (ValueBagOfHoldingH5File, per-key files; median of {REPEAT}, bagofholding alone: 1 run)",
            ["value", "operation", "fleche", "raw h5py", "ratio"],
            rows,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
