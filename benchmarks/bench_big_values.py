"""A persistent hit on a large array result: fleche's stores against joblib and diskcache, same run.

Run:  PYTHONPATH=. python benchmarks/bench_big_values.py [--megabytes 10 100] [--calls 10]
Target (issue 13): a decorated hit returning a 10 MB float64 array within
1.5x of ``joblib.Memory.cache`` on the same disk, on the default store and
on the HDF5 ones (the ``hdf5`` template, and HDF5 call records too); a
miss that stores such an array no slower than before.

Every candidate decorates the same function through a cache object that
stores the result once; the hits are then timed through a second cache
object opened on the same directory (as a new process would: nothing of
the first object's is reused), the candidates taking turns, batch after
batch: many short batches, the best of each kept (a busy machine slows
some of them).  The misses call the first object with a new argument
each time.  The stores live in one temporary directory, removed at the
end.  The floors: a raw ``readinto`` of a file of the same size into a
fresh ``bytearray`` and into a fresh numpy buffer (what the disk, its page
cache here, charges for the bytes alone: a ``bytearray`` is zero-filled
first and numpy asks for huge pages, which shows above ~32 MB), and raw
h5py reading the same array from an HDF5 file.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import diskcache  # noqa: E402
import h5py  # noqa: E402
import joblib  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of_alternated, ms, print_table  # noqa: E402
from bench_files import DEFAULT, default_store, fleche_cache  # noqa: E402

from fleche import fleche  # noqa: E402
from fleche.config import open_cache  # noqa: E402
from fleche.storage import CallBagOfHoldingH5File, ValueBagOfHoldingH5File  # noqa: E402

SIZE = 10 * 2**20
#: The dtype of the result (8 bytes an item): ``--dtype datetime64[ns]`` times the HDF5 time format.
DTYPE = np.dtype(np.float64)
JOBLIB = "joblib.Memory.cache"


def array(seed: int) -> np.ndarray:
    """``SIZE`` bytes of ``DTYPE`` (a module-level function, so joblib can hash its code)."""
    return np.random.default_rng(seed).random(SIZE // 8).view(DTYPE)


def raw_read(path: Path, allocate: Callable[[int], Any]) -> Callable[[], object]:
    """Read the whole file into a new buffer from ``allocate(size)``: the floor for any persistent hit."""

    def read() -> object:
        buffer = allocate(os.path.getsize(path))
        with open(path, "rb", buffering=0) as handle:
            handle.readinto(buffer)
        return buffer

    return read


def raw_h5py(path: Path) -> Callable[[], object]:
    """Read the dataset ``array`` of an HDF5 file whole: the floor for the HDF5 stores."""

    def read() -> np.ndarray:
        with h5py.File(path, "r") as handle:
            return handle["array"][()]

    return read


def hdf5_both(root: Path) -> object:
    """Values and call records in HDF5 (call records grouped in shared files)."""
    return fleche_cache(root, ValueBagOfHoldingH5File, CallBagOfHoldingH5File)


def hdf5_per_key(root: Path) -> object:
    """Values and call records in HDF5, one file per key (``prefix_length=0``)."""
    return fleche_cache(root, ValueBagOfHoldingH5File, CallBagOfHoldingH5File, prefix_length=0)


#: Each candidate: a name and how to open its store at a directory (twice: store, then hit).
STORES: dict[str, Callable[[Path], object]] = {
    DEFAULT: default_store,
    "fleche pickle files, signed": lambda root: fleche_cache(root, secret_key="k"),
    "fleche hdf5 template (calls in SQLite)": lambda root: open_cache(
        {"template": "hdf5", "root": str(root)}, new=True
    ),
    "fleche hdf5 template, calls = 'pickle'": lambda root: open_cache(
        {"template": "hdf5", "root": str(root), "calls": "pickle"}, new=True
    ),
    "fleche HDF5 values + HDF5 calls": hdf5_both,
    "fleche HDF5 values + calls, prefix_length=0": hdf5_per_key,
    JOBLIB: lambda root: joblib.Memory(str(root), verbose=0),
    "diskcache.Cache.memoize": lambda root: diskcache.Cache(str(root)),
}


def decorate(cache: object) -> Callable[[int], np.ndarray]:
    if isinstance(cache, joblib.Memory):
        return cache.cache(array)
    if isinstance(cache, diskcache.Cache):
        return cache.memoize()(array)
    return fleche(cache=cache)(array)


def bench_hits(tmp: Path, calls: int) -> list[list[str]]:
    expected = array(3)
    hits: dict[str, Callable[[], object]] = {}
    for n, (name, store) in enumerate(STORES.items()):
        root = tmp / f"h{n}"
        decorate(store(root))(3)
        again = decorate(store(root))  # a new cache object on the stored directory
        assert np.array_equal(again(3), expected), name
        hits[name] = functools.partial(again, 3)
    raw = tmp / "raw"
    raw.write_bytes(expected.tobytes())
    with h5py.File(tmp / "raw.h5", "w") as handle:
        handle["array"] = expected.view(np.int64)  # the same bytes, for any DTYPE
    hits["raw read into a bytearray"] = raw_read(raw, bytearray)
    hits["raw read into a numpy buffer"] = raw_read(
        raw, functools.partial(np.empty, dtype=np.uint8)
    )
    hits["raw h5py read of the dataset"] = raw_h5py(tmp / "raw.h5")
    timed = best_of_alternated(hits, dict.fromkeys(hits, calls), repeat=15)
    return ratios(timed)


def bench_misses(tmp: Path, calls: int) -> list[list[str]]:
    misses: dict[str, Callable[[], object]] = {}
    for n, (name, store) in enumerate(STORES.items()):
        func, seeds = decorate(store(tmp / f"m{n}")), itertools.count(100)
        misses[name] = lambda func=func, seeds=seeds: func(next(seeds))
    seeds = itertools.count(10**6)
    misses["compute the array alone"] = lambda: array(next(seeds))
    timed = best_of_alternated(misses, dict.fromkeys(misses, calls), repeat=5)
    return ratios(timed)


def ratios(timed: dict[str, float]) -> list[list[str]]:
    reference = timed[JOBLIB]
    return [
        [name, ms(seconds), f"{seconds / reference:.2f}x joblib"] for name, seconds in timed.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--megabytes", type=float, nargs="+", default=[10, 100], help="sizes of the array result"
    )
    parser.add_argument("--calls", type=int, default=10, help="hits per timed batch (10 MB)")
    parser.add_argument("--dir", default=None, help="where to make the temporary directory")
    parser.add_argument("--dtype", default="float64", help="of the array, 8 bytes an item")
    parser.add_argument("--no-misses", action="store_true", help="time the hits only")
    args = parser.parse_args()
    global SIZE, DTYPE
    DTYPE = np.dtype(args.dtype)
    warnings.simplefilter("ignore")  # joblib and diskcache chatter
    for megabytes in args.megabytes:
        SIZE = int(megabytes * 2**20) // 8 * 8
        calls = max(2, round(args.calls * 10 / megabytes))
        tmp = Path(tempfile.mkdtemp(prefix="fleche-bench-big-", dir=args.dir))
        try:
            hits = bench_hits(tmp, calls)
            misses = [] if args.no_misses else bench_misses(tmp, max(1, calls // 4))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        title = f"a {megabytes:g} MB {DTYPE} array result"
        header = ["subject", "time", "ratio"]
        print_table(
            f"hit returning {title} (new cache object, best batch of {calls})", header, hits
        )
        if misses:
            print_table(f"miss storing {title} (new argument each call)", header, misses)


if __name__ == "__main__":
    main()
