"""Digest throughput beside a raw reference, measured in the same run.

Run ``python benchmarks/bench_digest.py``. Each figure is the best of several
repeats. The reference column says what the raw limit is for each case:

- ``xxh3``: ``xxhash.xxh3_128`` over the bytes the value holds (in place);
- ``pickle+xxh3``: ``xxh3_128(pickle.dumps(value))``, the cheapest way to turn a
  Python container into bytes and hash them (not canonical: no digest scheme).
  For a Fortran-order array this is issue 13's raw limit: pickle keeps the
  Fortran buffer, so it is no canonical digest either.

So ``fleche/ref`` is the price of canonical, type-tagged encoding: near 1 for
big buffers (hashed in place); for containers of scalars, one node per element.

A canonical digest hashes an array's bytes in C order, so that equal arrays
digest equal whatever their layout; a Fortran-order array must be transposed
on the way. Its rows compare with three more references:

- ``C copy+xxh3``: ``xxh3_128(np.ascontiguousarray(a))``, the naive canonical
  digest (a whole transposed copy, then the hash);
- ``tiled copy only``: numpy's transposing copy of ``a`` in L2-sized tiles into
  one reused buffer (what fleche does without its extension), without hashing:
  the floor for a transpose made of numpy copies, ~0.5-0.8 ns an element;
- ``xxh3, C twin``: xxh3 of an equal array already in C order, in place: no
  transpose at all, a floor no transposing digest reaches.

fleche copies a Fortran-order array's blocks with its C extension
(:mod:`fleche._transpose`, built by ``pip install -e .``) on the calling
thread. Two more rows show the numpy path it falls back to where the
extension is not built, against the C twin: ``numpy path`` shares the
transposing copy with a helper thread from 2 MB on
(:mod:`fleche._digest_helper`: the wall column then shows the time the caller
waits, the CPU column the work of both threads), ``numpy, one thread`` is the
same with the helper off (``_digest_numpy.SHARED_MIN_BYTES`` raised). The
threaded figures depend on the second core being free: with it busy with
other work, runs measured the threaded digest's wall time no better than one
thread's and its CPU time up to twice, so run this on an idle machine,
several times, and compare the two rows.

Container and array rows count CPU time (``time.process_time``, every thread
of the process: a digest that used threads would show their cost), so a
machine busy with other work skews them less; the last column times the same
runs by the clock (each clock's best taken separately). The small-argument rows
are timed by ``timeit`` (the clock) only.
"""

from __future__ import annotations

import pickle
import struct
import sys
import time
import timeit
from pathlib import Path

import numpy as np
import pandas as pd
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table  # noqa: E402

from fleche import _digest_numpy  # noqa: E402
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


Timed = tuple[float, float]
"""CPU seconds and wall seconds of a call, each the best of its repeats."""


def _row(case: str, fleche: Timed | float, reference: Timed | float, what: str = "xxh3") -> list:
    """A table row; times given as one float are wall times (timeit), shown as such."""
    if isinstance(fleche, float) and isinstance(reference, float):
        ratio = f"{fleche / reference:.2f}"
        return [case, _time(fleche), what, _time(reference), "", ratio]
    cpu, wall = fleche[0] / reference[0], fleche[1] / reference[1]
    return [case, _time(fleche[0]), what, _time(reference[0]), f"{cpu:.2f}", f"{wall:.2f}"]


def _alternated(funcs: dict, repeat: int) -> dict[str, Timed]:
    """CPU and wall seconds of each function, best of ``repeat`` runs taken in turn."""
    best = {name: [float("inf"), float("inf")] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            cpu, wall = time.process_time(), time.perf_counter()
            func()
            times = best[name]
            times[0] = min(times[0], time.process_time() - cpu)
            times[1] = min(times[1], time.perf_counter() - wall)
    return {name: (cpu, wall) for name, (cpu, wall) in best.items()}


def _pickled(value: object) -> bytes:
    return xxhash.xxh3_128_digest(pickle.dumps(value, protocol=5))


def _tiled_copy(arr: np.ndarray) -> None:
    """A Fortran-order array's transposing copy in C order, tiled as fleche's numpy path tiles it.

    Blocks of whole rows filled tile by tile into one reused buffer (the sizes
    of :mod:`fleche._digest_numpy`), and not hashed.
    """
    row_bytes = arr.nbytes // len(arr)
    rows = _digest_numpy.BLOCK_ROWS[0 if row_bytes <= 1 << 14 else 1]
    columns = _digest_numpy.TILE_BYTES // (rows * arr.itemsize)
    buffer = np.empty((rows, arr.shape[1]), dtype=arr.dtype)
    for start in range(0, len(arr), rows):
        piece = arr[start : start + rows]
        out = buffer[: len(piece)]
        for column in range(0, arr.shape[1], columns):
            np.copyto(out[:, column : column + columns], piece[:, column : column + columns])


def _numpy_path(arr: np.ndarray, shared: bool) -> bytes:
    """The digest of ``arr`` without the C extension, its copy shared with the helper or not."""
    saved = _digest_numpy._copy_c_order, _digest_numpy.SHARED_MIN_BYTES
    _digest_numpy._copy_c_order = None
    if not shared:
        _digest_numpy.SHARED_MIN_BYTES = arr.nbytes + 1
    try:
        return digest_raw(arr)
    finally:
        _digest_numpy._copy_c_order, _digest_numpy.SHARED_MIN_BYTES = saved


def bench_big_array() -> list[list[str]]:
    """100 MB of float64: hashed in place; other layouts copied in pieces (transposed in tiles)."""
    arr = np.random.default_rng(0).random(100_000_000 // 8)
    funcs = {"fleche": lambda: digest_raw(arr), "raw": lambda: xxhash.xxh3_128(arr).digest()}
    best = _alternated(funcs, repeat=9)
    rows = [_row("100 MB float64 array, C order", best["fleche"], best["raw"])]
    for shape in ((10_000, -1), (1_250, -1)):
        fortran = np.asfortranarray(arr.reshape(shape))
        funcs = {
            "fleche": lambda f=fortran: digest_raw(f),
            "numpy": lambda f=fortran: _numpy_path(f, shared=True),
            "alone": lambda f=fortran: _numpy_path(f, shared=False),
            "pickle": lambda f=fortran: _pickled(f),
            "copy": lambda f=fortran: xxhash.xxh3_128(np.ascontiguousarray(f)).digest(),
            "tiles": lambda f=fortran: _tiled_copy(f),
            "raw": lambda: xxhash.xxh3_128(arr).digest(),
        }
        best = _alternated(funcs, repeat=7)
        case = f"100 MB float64, Fortran order {fortran.shape[0]}x{fortran.shape[1]}"
        rows.append(_row(case, best["fleche"], best["pickle"], "pickle+xxh3"))
        rows.append(_row("  same", best["fleche"], best["copy"], "C copy+xxh3"))
        rows.append(_row("  same", best["fleche"], best["tiles"], "tiled copy only"))
        rows.append(_row("  same", best["fleche"], best["raw"], "xxh3, C twin"))
        rows.append(_row("  same, numpy path", best["numpy"], best["raw"], "xxh3, C twin"))
        rows.append(_row("  same, numpy, one thread", best["alone"], best["raw"], "xxh3, C twin"))
    strided = arr.reshape(10_000, -1)[:, ::2]
    funcs = {
        "fleche": lambda: digest_raw(strided),
        "half": lambda: xxhash.xxh3_128(arr[: arr.size // 2]).digest(),
    }
    best = _alternated(funcs, repeat=5)
    rows.append(_row("50 MB strided view [:, ::2]", best["fleche"], best["half"]))
    return rows


def bench_containers() -> list[list[str]]:
    """Lists and dicts of scalars: one node per element, numbers and strs hashed in bulk."""
    rng = np.random.default_rng(2)
    cases = [
        ("list of 100,000 ints", list(range(100_000))),
        ("list of 100,000 random int64", rng.integers(-(2**63), 2**63, 100_000).tolist()),
        ("list of 100,000 floats", [i / 7 for i in range(100_000)]),
        ("list of 100,000 strs", [f"item{i}" for i in range(100_000)]),
        ("dict of 10,000 str -> float", {f"key-{i:05d}": i / 7 for i in range(10_000)}),
        ("dict of 10,000 str -> int", {f"key-{i:05d}": i for i in range(10_000)}),
        ("dict of 10,000 str -> int, keys k0..k9999", {f"k{i}": i for i in range(10_000)}),
        ("dict of 100,000 str -> float", {f"name_{i}": i / 7 for i in range(100_000)}),
        ("list of 100,000 ints and strs", [i if i % 3 else str(i) for i in range(100_000)]),
        (
            "list of 100,000 floats, every 10th None",
            [i / 7 if i % 10 else None for i in range(100_000)],
        ),
    ]
    rows = []
    for case, value in cases:
        funcs = {"fleche": lambda v=value: digest_raw(v), "ref": lambda v=value: _pickled(v)}
        best = _alternated(funcs, repeat=25)
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

    strided = pd.DataFrame(np.column_stack(columns), columns=list("abcd"))
    funcs = {
        "fleche": lambda: digest_raw(frame),
        "strided": lambda: digest_raw(strided),
        "raw": reference,
    }
    best = _alternated(funcs, repeat=15)
    rows = [_row("DataFrame 1e6 x 4 float64", best["fleche"], best["raw"])]
    if not strided["a"].to_numpy().flags.c_contiguous:
        rows.append(_row("same, strided columns", best["strided"], best["raw"]))
    return rows


def main() -> None:
    rows = bench_small_ints() + bench_containers() + bench_frame() + bench_big_array()
    print_table(
        "fleche.digest vs a raw reference in the same run (best of repeats)",
        ["case", "fleche", "reference", "ref", "fleche/ref (CPU)", "(wall)"],
        rows,
    )


if __name__ == "__main__":
    main()
