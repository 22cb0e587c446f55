"""How deep value storages keep containers inline: the measurement behind the defaults.

Run: python benchmarks/bench_destructuring.py
For typical results (a dict of scalars, a list of 1,000 floats, a dict of
arrays, a list of small records) each value storage saves and loads them
at ``remaining_depth`` 0 to 3, beside the reference of the same backend
storing the value whole (no destructuring).  A fresh store per save, so
every save writes; loads read a warm store.  The entries column counts
what one value leaves in the store: fewer entries are fewer files, but an
inlined child is no longer shared between values.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of, print_table, us  # noqa: E402

from fleche.digest import digest  # noqa: E402
from fleche.storage import ValueMemory, ValuePickleFile  # noqa: E402
from fleche.storage.memory import MemoryBackend  # noqa: E402
from fleche.storage.pickle_file import PickleFileBackend  # noqa: E402

DEPTHS = (0, 1, 2, 3)
VALUES = {
    "dict of 10 scalars": {f"k{i}": i * 1.5 for i in range(10)},
    "list of 1,000 floats": [i / 7 for i in range(1000)],
    "dict of 3 arrays": {name: np.arange(10_000, dtype=float) + n for n, name in enumerate("xyz")},
    "100 records": [{"run": i, "energy": i * 0.1, "ok": True} for i in range(100)],
}


def _stores(directory: Path) -> dict[str, tuple]:
    """storage name -> (make(depth), make the whole-value reference)."""
    counter = iter(range(1_000_000))

    def fresh() -> Path:
        return directory / str(next(counter))

    return {
        "ValueMemory": (
            lambda depth: ValueMemory(remaining_depth=depth),
            lambda: _WholeMemory(),
        ),
        "ValuePickleFile": (
            lambda depth: ValuePickleFile(fresh(), remaining_depth=depth),
            lambda: _WholeFile(fresh()),
        ),
    }


class _WholeMemory(MemoryBackend):
    def save(self, value, key):
        return self.put(value, key)

    def load(self, key):
        return self.get(key)


class _WholeFile(PickleFileBackend):
    def save(self, value, key):
        return self.put(value, key)

    def load(self, key):
        return self.get(key)


def _measure(make, value, key, number: int) -> tuple[float, float, int]:
    save = best_of(lambda: make().save(value, key), number=number, repeat=3)
    warm = make()
    warm.save(value, key)
    load = best_of(lambda: warm.load(key), number=number, repeat=3)
    return save, load, sum(1 for _ in warm.list())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for store, (make, whole) in _stores(Path(tmp)).items():
            number = 200 if store == "ValueMemory" else 20
            rows = []
            for label, value in VALUES.items():
                key = digest(value)
                save, load, entries = _measure(whole, value, key, number)
                rows.append([label, "whole (reference)", us(save), us(load), entries])
                for depth in DEPTHS:
                    save, load, entries = _measure(
                        functools.partial(make, depth), value, key, number
                    )
                    rows.append([label, f"remaining_depth={depth}", us(save), us(load), entries])
            print_table(store, ["value", "form", "save", "load", "entries"], rows)


if __name__ == "__main__":
    main()
