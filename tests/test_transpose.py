"""The C extension's transposing copy: C order for any layout, and digests as without it.

``fleche._transpose.copy_c_order`` copies a strided array into a C-order
buffer; fleche uses it for Fortran-order arrays and transposed views, and
falls back to numpy where it is not built. The copy must equal
``np.ascontiguousarray`` for every layout, item size and alignment, and the
digests must be the same with and without it (the golden vectors hold either way).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche import _digest_numpy
from fleche.digest import digest_raw

try:
    from fleche import _transpose as transpose
except ImportError:  # not built: only the numpy path is tested
    transpose = None
built = pytest.mark.skipif(transpose is None, reason="fleche._transpose is not built")

_ITEMS = ["u1", "u2", "u4", "u8", "c16", "S3", "V5", "S7", "V12", "<f8", "<f4"]


def _random(shape: tuple, dtype: str, offset: int = 0, seed: int = 0) -> np.ndarray:
    """A C-order array of random bytes, starting ``offset`` bytes into its buffer (unaligned)."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    data = np.frombuffer(np.random.default_rng(seed).bytes(size + offset), dtype=np.uint8)
    return data[offset : offset + size].view(dtype).reshape(shape)


def _copied(arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape, arr.dtype)
    written = transpose.copy_c_order(arr.view(np.dtype((np.void, arr.itemsize))), out)
    assert written == arr.nbytes
    return out


def _layouts(base: np.ndarray) -> list[np.ndarray]:
    views = [base, base.T, np.asfortranarray(base)]
    if base.ndim >= 2:
        views += [
            base[::-1, ::2],
            base.T[::2],
            np.asfortranarray(base)[1:, ::-1],
            base.swapaxes(0, -1),
            np.asfortranarray(base)[::3, 1:],
            np.broadcast_to(base[:1], base.shape),  # stride 0: one row read over and over
            np.broadcast_to(base[:, :1], base.shape),
        ]
    return views


_SHAPES = [(), (0, 3), (3, 0), (5,), (7, 9), (13, 70), (4, 5, 6), (3, 1, 5, 2), (130, 67)]


@built
@pytest.mark.parametrize("dtype", _ITEMS)
@pytest.mark.parametrize("shape", _SHAPES)
@pytest.mark.parametrize("offset", [0, 3])
def test_the_copy_is_the_c_order_copy(dtype, shape, offset):
    for arr in _layouts(_random(shape, dtype, offset, seed=len(shape))):
        assert _copied(arr).tobytes() == np.ascontiguousarray(arr).tobytes()


@built
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=4),
    st.sampled_from([1, 2, 4, 8, 16, 3]),
    st.randoms(use_true_random=False),
)
def test_any_permutation_and_steps(shape, itemsize, rnd):
    base = _random(tuple(shape), f"V{itemsize}", rnd.randrange(4), rnd.randrange(100))
    order = list(range(base.ndim))
    rnd.shuffle(order)
    view = base.transpose(order)[
        tuple(slice(None, None, rnd.choice([1, 2, -1, -3])) for _ in order)
    ]
    assert _copied(view).tobytes() == np.ascontiguousarray(view).tobytes()


@built
def test_the_destination_must_be_large_enough_and_writable():
    src = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    with pytest.raises(ValueError, match="destination"):
        transpose.copy_c_order(src, np.empty(11))
    with pytest.raises((BufferError, TypeError)):
        transpose.copy_c_order(src, bytes(96))


@pytest.fixture(params=["extension", "numpy"])
def path(request, monkeypatch):
    """Digests with the extension's copy, then with numpy's (as where it is not built)."""
    if request.param == "numpy":
        monkeypatch.setattr(_digest_numpy, "_copy_c_order", None)
    elif transpose is None:
        pytest.skip("fleche._transpose is not built")
    else:
        assert _digest_numpy._copy_c_order is transpose.copy_c_order
    monkeypatch.setattr(_digest_numpy, "BLOCK_ROWS", (5, 3))  # several blocks even when small
    return request.param


@pytest.mark.parametrize("dtype", ["<f8", ">f8", "|b1", "<c16", ">c8", ">i2", "<M8[ns]", "<U2"])
@pytest.mark.parametrize("shape", [(2, 3), (40, 33), (5, 4, 3), (17, 1), (1, 17)])
def test_fortran_arrays_digest_as_their_c_order_copies(path, dtype, shape):
    twin = _random(shape, dtype, seed=len(dtype)).copy()
    if twin.dtype.kind in "MU":  # valid values: NaT-free dates, real code points
        twin = np.arange(math.prod(shape)).astype(dtype).reshape(shape)
    for arr in (np.asfortranarray(twin), np.ascontiguousarray(twin.T).T):
        assert digest_raw(arr) == digest_raw(twin)
    for arr in (np.broadcast_to(twin[:1], shape), np.broadcast_to(twin[:, :1], shape)):
        assert digest_raw(arr) == digest_raw(arr.copy())  # strides of 0


@built
def test_a_large_fortran_array_digests_the_same_either_way(monkeypatch):
    twin = np.random.default_rng(5).random((700, 450))  # 2.5 MB: past SHARED_MIN_BYTES
    fortran = np.asfortranarray(twin)
    with_extension = digest_raw(fortran)
    monkeypatch.setattr(_digest_numpy, "_copy_c_order", None)
    assert digest_raw(fortran) == with_extension == digest_raw(twin)


_WITHOUT = "import sys; sys.modules['fleche._transpose'] = None; import fleche._digest_numpy as d; "


def test_a_missing_extension_falls_back_unless_required():
    env = {k: v for k, v in os.environ.items() if k != "FLECHE_REQUIRE_EXTENSION"}
    run = [sys.executable, "-c", _WITHOUT + "assert d._copy_c_order is None"]
    assert subprocess.run(run, env=env).returncode == 0
    run = [sys.executable, "-c", _WITHOUT]
    env["FLECHE_REQUIRE_EXTENSION"] = "1"
    done = subprocess.run(run, env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "FLECHE_REQUIRE_EXTENSION=1" in done.stderr and "ImportError" in done.stderr
