"""Large non-C-order arrays: the transposing copy shared with a helper thread digests the same.

Without the C extension (``fleche._transpose``, switched off here), from
``SHARED_MIN_BYTES`` on, a helper thread copies blocks of a Fortran-order
array ahead while the calling thread hashes them in order (and copies those
the helper has not claimed). The digest must be the C-order twin's whatever
the dtype, the layout, the number of blocks, the helper's state (busy,
absent, failing, in a forked child) and the number of threads digesting.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleche import _digest_helper, _digest_numpy
from fleche._digest_helper import pieces_in_order
from fleche.digest import digest_raw


@pytest.fixture
def shared(monkeypatch):
    """Every transposing copy shared with the helper, in blocks of a few rows (many hand-overs)."""
    monkeypatch.setattr(_digest_numpy, "_copy_c_order", None)
    monkeypatch.setattr(_digest_numpy, "SHARED_MIN_BYTES", 0)
    monkeypatch.setattr(_digest_numpy, "BLOCK_ROWS", (3, 2))
    monkeypatch.setattr(_digest_numpy, "TILE_BYTES", 256)
    monkeypatch.setattr(_digest_helper, "_cpus", lambda: 2)


def _one_thread(arr: np.ndarray) -> bytes:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_digest_numpy, "SHARED_MIN_BYTES", 1 << 62)
        return digest_raw(arr)


_DTYPES = ["<f8", ">f8", "|b1", "<c16", ">c8", ">i2", "<f4", "<M8[ns]", "|u1", "<U2"]


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (7, 5), (40, 33), (5, 4, 3)])
def test_shared_copies_digest_as_the_c_order_twin(shared, dtype, shape):
    rng = np.random.default_rng(len(dtype) + len(shape))
    data = rng.bytes(math.prod(shape) * np.dtype(dtype).itemsize)
    twin = np.frombuffer(data, dtype=dtype).reshape(shape)
    for arr in (np.asfortranarray(twin), np.ascontiguousarray(twin.T).T):
        assert digest_raw(arr) == digest_raw(twin) == _one_thread(arr)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=2, max_size=3).map(tuple),
    st.sampled_from(["<f8", ">i4", "|b1", "<c8"]),
    st.integers(1, 5),
    st.integers(2, 4),
    st.randoms(),
)
def test_any_blocks_and_buffers_digest_as_the_c_order_twin(shape, dtype, rows, buffers, rnd):
    twin = np.frombuffer(rnd.randbytes(math.prod(shape) * np.dtype(dtype).itemsize), dtype=dtype)
    twin = twin.reshape(shape)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_digest_numpy, "_copy_c_order", None)
        patch.setattr(_digest_numpy, "SHARED_MIN_BYTES", 0)
        patch.setattr(_digest_numpy, "BLOCK_ROWS", (rows, rows))
        patch.setattr(_digest_numpy, "HELPER_BUFFERS", buffers)
        patch.setattr(_digest_helper, "_cpus", lambda: 2)
        assert digest_raw(np.asfortranarray(twin)) == digest_raw(twin)


@pytest.mark.parametrize("rows", [511, 512, 513])
def test_arrays_around_the_default_threshold(rows, monkeypatch):
    monkeypatch.setattr(_digest_helper, "_cpus", lambda: 2)
    twin = np.random.default_rng(rows).random((rows, 512))  # 2 MB at 512 rows
    assert (twin.nbytes >= _digest_numpy.SHARED_MIN_BYTES) == (rows >= 512)
    assert digest_raw(np.asfortranarray(twin)) == digest_raw(twin)


def test_object_arrays_are_not_copied_in_blocks(shared):
    objects = np.array([[1, "a", None], [2.5, (1,), b"x"]] * 20, dtype=object)
    assert digest_raw(np.asfortranarray(objects)) == digest_raw(objects)


def _no_helper():
    raise AssertionError("a helper was asked for")


def test_one_cpu_starts_no_helper(monkeypatch):
    monkeypatch.setattr(_digest_numpy, "SHARED_MIN_BYTES", 0)
    monkeypatch.setattr(_digest_helper, "_cpus", lambda: 1)
    monkeypatch.setattr(_digest_helper, "_helper", _no_helper)
    twin = np.arange(600.0).reshape(20, 30)
    assert digest_raw(np.asfortranarray(twin)) == digest_raw(twin)


def test_blocks_too_big_for_the_helpers_buffers_are_copied_alone(monkeypatch):
    # The helper's buffers never take more memory than one block may.
    twin = np.arange(600.0).reshape(20, 30)  # a block of 3 rows: 720 bytes
    monkeypatch.setattr(_digest_numpy, "SHARED_MIN_BYTES", 0)
    monkeypatch.setattr(_digest_numpy, "BLOCK_ROWS", (3, 3))
    monkeypatch.setattr(_digest_numpy, "BLOCK_BYTES", _digest_numpy.HELPER_BUFFERS * 720 - 1)
    monkeypatch.setattr(_digest_helper, "_cpus", lambda: 2)
    monkeypatch.setattr(_digest_helper, "_helper", _no_helper)
    assert digest_raw(np.asfortranarray(twin)) == digest_raw(twin)


def test_a_busy_helper_leaves_the_whole_copy_to_the_caller(shared):
    # The helper is held by another job: the caller copies every block itself.
    held, release = threading.Event(), threading.Event()

    def hold():
        held.set()
        release.wait(30)

    _digest_helper._helper().put(hold)
    assert held.wait(30)
    try:
        twin = np.random.default_rng(3).random((50, 40))
        assert digest_raw(np.asfortranarray(twin)) == digest_raw(twin)
    finally:
        release.set()


def _fill_failing_at(bad: int):
    def fill(block: int, buffer: list) -> int:
        if block == bad:
            raise ValueError(f"block {block}")
        buffer[:] = [block]
        return block

    return fill


@pytest.mark.parametrize("bad", [0, 1, 5, 9])
def test_a_failing_copy_raises_in_the_caller_and_the_helper_goes_on(bad):
    with pytest.raises(ValueError, match=f"block {bad}"):
        list(pieces_in_order(10, _fill_failing_at(bad), [[], [], []], list))
    assert list(pieces_in_order(10, _fill_failing_at(-1), [[], [], []], list)) == list(range(10))


def test_pieces_left_unread_stop_the_helper():
    pieces = pieces_in_order(1000, _fill_failing_at(-1), [[], []], list)
    assert [next(pieces), next(pieces)] == [0, 1]
    pieces.close()
    assert list(pieces_in_order(30, _fill_failing_at(-1), [[], []], list)) == list(range(30))


@pytest.mark.parametrize("stall", [0, 1])
def test_a_stalled_helper_leaves_the_rest_to_the_caller(stall):
    # The helper's copy of one block takes long (its core is busy): the caller
    # copies that block and the rest alone, into a spare buffer, and does not wait.
    stalling, release = threading.Event(), threading.Event()
    helper_blocks: list[int] = []

    def fill(block: int, buffer: list) -> tuple:
        if threading.current_thread() is threading.main_thread():
            stalling.wait(10)  # the helper is stuck before the caller goes on
        else:
            helper_blocks.append(block)
            if len(helper_blocks) == stall + 1:
                stalling.set()
                release.wait(30)
        buffer[:] = [block]
        return block, id(buffer)

    spares: list[list] = []

    def spare() -> list:
        spares.append([])
        return spares[-1]

    buffers = [[], [], []]
    try:
        pieces = list(pieces_in_order(40, fill, buffers, spare))
    finally:
        release.set()
    assert [block for block, _ in pieces] == list(range(40))
    assert len(spares) == 1  # taken over once, then alone in that buffer
    stalled = helper_blocks[stall]
    assert dict(pieces)[stalled] == id(spares[0])


def test_threads_sharing_the_one_helper_agree(shared):
    rng = np.random.default_rng(7)
    twins = [rng.random((60 + i, 30)) for i in range(6)]
    expected = [digest_raw(twin) for twin in twins]
    got: dict[int, bytes] = {}

    def run(i: int) -> None:
        for _ in range(5):
            got[i] = digest_raw(np.asfortranarray(twins[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(twins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[i] for i in range(len(twins))] == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_its_own_helper(shared):
    twin = np.random.default_rng(11).random((30, 20))
    fortran = np.asfortranarray(twin)
    expected = digest_raw(fortran)  # the helper runs in the parent now
    pid = os.fork()
    if pid == 0:  # the child: the parent's helper thread is not here
        ok = False
        try:
            ok = digest_raw(fortran) == expected and _digest_helper._jobs is not None
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
