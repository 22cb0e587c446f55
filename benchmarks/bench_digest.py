"""Digest throughput beside a raw reference, measured in the same run.

Run ``python benchmarks/bench_digest.py``. Each figure is the best of several
repeats. The reference column says what the raw limit is for each case:

- ``xxh3``: ``xxhash.xxh3_128`` over the bytes the value holds (in place);
- ``pickle+xxh3``: ``xxh3_128(pickle.dumps(value))``, the cheapest way to turn a
  Python container into bytes and hash them (not canonical: no digest scheme);
- ``C copy+xxh3``: ``xxh3_128(np.ascontiguousarray(a))``, the transposing copy a
  Fortran-order array needs before its C-order bytes can be hashed.

So ``fleche/ref`` is the price of canonical, type-tagged encoding: near 1 for
big buffers (hashed in place); for containers of scalars, one node per element.
"""

from __future__ import annotations

import pickle
import struct
import sys
import timeit
from pathlib import Path

import numpy as np
import pandas as pd
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_of, best_of_alternated, print_table  # noqa: E402

from fleche.digest import digest, digest_raw  # noqa: E402


def _best(statement: str, number: int, repeat: int = 7, **names: object) -> float:
    """Seconds per run of ``statement``: timeit's best, with no lambda call in the loop."""
    names.setdefault("digest_raw", digest_raw)
    names.setdefault("digest", digest)
    names.setdefault("xxhash", xxhash)
    return min(timeit.repeat(statement, globals=names, number=number, repeat=repeat)) / number


def _time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:,.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.1f} µs"
    return f"{seconds * 1e3:,.2f} ms"


def _row(case: str, fleche: float, reference: float, what: str = "xxh3") -> list[str]:
    return [case, _time(fleche), what, _time(reference), f"{fleche / reference:.2f}"]


def _pickled(value: object) -> bytes:
    return xxhash.xxh3_128_digest(pickle.dumps(value, protocol=5))


def bench_big_array() -> list[list[str]]:
    """100 MB of float64: hashed in place; other layouts copied in pieces (transposed in tiles)."""
    arr = np.random.default_rng(0).random(100_000_000 // 8)
    funcs = {"fleche": lambda: digest_raw(arr), "raw": lambda: xxhash.xxh3_128(arr).digest()}
    best = best_of_alternated(funcs, dict.fromkeys(funcs, 1), repeat=9)
    rows = [_row("100 MB float64 array, C order", best["fleche"], best["raw"])]
    for shape in ((10_000, -1), (1_250, -1)):
        fortran = np.asfortranarray(arr.reshape(shape))
        funcs = {
            "fleche": lambda f=fortran: digest_raw(f),
            "copy": lambda f=fortran: xxhash.xxh3_128(np.ascontiguousarray(f)).digest(),
            "raw": lambda: xxhash.xxh3_128(arr).digest(),
        }
        best = best_of_alternated(funcs, dict.fromkeys(funcs, 1), repeat=7)
        case = f"100 MB float64, Fortran order {fortran.shape[0]}x{fortran.shape[1]}"
        rows.append(_row(case, best["fleche"], best["copy"], "C copy+xxh3"))
        rows.append(_row("  same", best["fleche"], best["raw"]))
    strided = arr.reshape(10_000, -1)[:, ::2]
    half = best_of(lambda: xxhash.xxh3_128(arr[: arr.size // 2]).digest(), number=1, repeat=7)
    rows.append(
        _row("50 MB strided view [:, ::2]", best_of(lambda: digest_raw(strided), 1, 5), half)
    )
    return rows


def bench_containers() -> list[list[str]]:
    """Lists and dicts of scalars: one node per element, hashed in bulk when numbers."""
    ints = list(range(100_000))
    floats = [i / 7 for i in range(100_000)]
    mapping = {f"key-{i:05d}": i / 7 for i in range(10_000)}
    mixed = [i if i % 3 else str(i) for i in range(100_000)]
    cases = [
        ("list of 100,000 ints", ints),
        ("list of 100,000 floats", floats),
        ("dict of 10,000 str -> float", mapping),
        ("list of 100,000 ints and strs (no bulk)", mixed),
    ]
    rows = []
    for case, value in cases:
        funcs = {"fleche": lambda v=value: digest_raw(v), "ref": lambda v=value: _pickled(v)}
        best = best_of_alternated(funcs, dict.fromkeys(funcs, 1), repeat=25)
        rows.append(_row(case, best["fleche"], best["ref"], "pickle+xxh3"))
    return rows


def bench_small_ints() -> list[list[str]]:
    """The lookup-key case: a few small arguments."""
    packed = struct.pack("<3q", 1, 2, 3)
    raw = _best("xxhash.xxh3_128_digest(b)", 200_000, b=packed)
    one = _best("xxhash.xxh3_128_digest(b)", 200_000, b=packed[:8])
    return [
        _row("digest_raw(7): one small int", _best("digest_raw(7)", 200_000), one),
        _row("digest_raw((1, 2, 3))", _best("digest_raw((1, 2, 3))", 200_000), raw),
        _row("digest((1, 2, 3)) with hex", _best("digest((1, 2, 3))", 200_000), raw),
    ]


def bench_dict() -> list[list[str]]:
    """10,000 str -> int: one node per key and value, then a sort by key digest."""
    mapping = {f"key-{i:05d}": i for i in range(10_000)}
    flat = b"".join(k.encode() for k in mapping) + struct.pack(
        f"<{len(mapping)}q", *mapping.values()
    )
    raw = _best("xxhash.xxh3_128(b).digest()", 2000, b=flat)
    fleche = _best("digest_raw(m)", 20, m=mapping)
    return [_row("dict of 10,000 str -> int", fleche, raw, "xxh3 of keys+values")]


def bench_frame() -> list[list[str]]:
    """1e6 rows x 4 float64 columns: one in-place buffer pass per column."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({name: rng.random(1_000_000) for name in "abcd"})
    columns = [frame[name].to_numpy() for name in frame.columns]

    def reference() -> bytes:
        hasher = xxhash.xxh3_128()
        for column in columns:
            hasher.update(column)
        return hasher.digest()

    raw = best_of(reference, number=5)
    rows = [_row("DataFrame 1e6 x 4 float64", best_of(lambda: digest_raw(frame), 5), raw)]
    strided = pd.DataFrame(np.column_stack(columns), columns=list("abcd"))
    if not strided["a"].to_numpy().flags.c_contiguous:
        rows.append(_row("same, strided columns", best_of(lambda: digest_raw(strided), 5), raw))
    return rows


def main() -> None:
    rows = (
        bench_small_ints() + bench_dict() + bench_containers() + bench_frame() + bench_big_array()
    )
    print_table(
        "fleche.digest vs a raw reference in the same run (best of repeats)",
        ["case", "fleche", "reference", "ref time", "fleche/ref (time)"],
        rows,
    )


if __name__ == "__main__":
    main()
