"""Throughput of ``fleche copy``: a pickle store of small calls into SQL and into grouped HDF5.

Run:  PYTHONPATH=. python benchmarks/bench_copy.py [--calls 10000]

Fills a pickle store with ``--calls`` calls of a decorated function (one
small argument and a small result each, so three values per call with the
shared default), then copies it with :func:`fleche.storage.transfer.copy_store`
into a fresh ``sql`` store (values as pickle files, calls in SQLite) and a
fresh ``hdf5`` store (values grouped in shared HDF5 files by two key
characters, calls in SQLite).  Reference: a plain ``shutil.copytree`` of
the source store, which is what the same bytes cost to copy as files.
Prints values/s and calls/s.  Everything lives in one temporary directory.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from fleche import cache, fleche, open_cache
from fleche.storage.transfer import CallEntries, ValueEntries, copy_store


@fleche
def small(i, scale=1.5):
    return {"i": i, "y": i * scale}


def _fill(root: Path, calls: int):
    store = open_cache({"template": "pickle", "root": str(root)})
    with cache(store):
        for i in range(calls):
            small(i)
    return store


def _pair(store):
    return ValueEntries(store.values), CallEntries(store.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        source = _fill(base / "source", args.calls)
        values = sum(1 for _ in source.values.list())
        start = time.perf_counter()
        shutil.copytree(base / "source", base / "reference")
        rows = [("copytree of the pickle store (reference)", time.perf_counter() - start)]
        for template in ("sql", "hdf5"):
            target = open_cache({"template": template, "root": str(base / template)})
            start = time.perf_counter()
            tally = copy_store(_pair(source), _pair(target))
            rows.append((f"pickle -> {template}", time.perf_counter() - start))
            assert tally.calls.copied == args.calls and not tally.values.failed
        print(f"{args.calls} calls, {values} values")
        print(f"{'copy':<44}{'seconds':>9}{'values/s':>11}{'calls/s':>10}")
        for name, seconds in rows:
            print(
                f"{name:<44}{seconds:>9.2f}{values / seconds:>11.0f}{args.calls / seconds:>10.0f}"
            )


if __name__ == "__main__":
    main()
