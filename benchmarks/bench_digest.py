"""Digest throughput beside raw xxh3-128 over the same bytes, measured in the same run.

Run ``python benchmarks/bench_digest.py``. Each figure is the best of several
repeats. The reference is what hashing alone costs (``xxhash.xxh3_128`` over
the bytes the value holds), so ``fleche/ref`` is the price of canonical,
type-tagged encoding: near 1 for big buffers (hashed in place), higher for
many small Python objects (one node per object).
"""

from __future__ import annotations

import struct
import sys
import timeit
from pathlib import Path

import numpy as np
import pandas as pd
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_of, print_table  # noqa: E402

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


def _row(case: str, fleche: float, reference: float) -> list[str]:
    return [case, _time(fleche), _time(reference), f"{fleche / reference:.2f}"]


def bench_big_array() -> list[list[str]]:
    """100 MB of float64: hashed in place; Fortran order goes through 16 MB pieces."""
    arr = np.random.default_rng(0).random(100_000_000 // 8)
    raw = best_of(lambda: xxhash.xxh3_128(arr).digest(), number=1, repeat=7)
    rows = [_row("100 MB float64 array", best_of(lambda: digest_raw(arr), 1, 7), raw)]
    fortran = np.asfortranarray(arr.reshape(10_000, -1))
    rows.append(
        _row("100 MB float64, Fortran order", best_of(lambda: digest_raw(fortran), 1, 5), raw)
    )
    strided = arr.reshape(10_000, -1)[:, ::2]
    half = best_of(lambda: xxhash.xxh3_128(arr[: arr.size // 2]).digest(), number=1, repeat=7)
    rows.append(
        _row("50 MB strided view [:, ::2]", best_of(lambda: digest_raw(strided), 1, 5), half)
    )
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
    return [_row("dict of 10,000 str -> int", _best("digest_raw(m)", 20, m=mapping), raw)]


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
    rows = bench_small_ints() + bench_dict() + bench_frame() + bench_big_array()
    print_table(
        "fleche.digest vs raw xxh3-128 over the same bytes (best of repeats)",
        ["case", "fleche", "reference: raw xxh3", "fleche/ref (time)"],
        rows,
    )


if __name__ == "__main__":
    main()
