"""The C-order bytes of a Fortran-order array (or a transposed view), block by block.

An array is digested by its C-order bytes, so an array whose first axis is
closer in memory than its second must be transposed on the way to the hasher.
Row by row, that copy would touch one cache line and one page per element; so
blocks of whole rows are filled tile by tile, and the lines a tile reads are
used up while they are in the cache.

numpy's transposing copy moves one element at a time (~0.7 ns each, ~8 ms per
100 MB even in the cache), about three times what hashing the block costs.
So for large arrays the copy is shared with a helper thread (numpy's copies
and xxhash's updates of large buffers release the GIL): the helper fills the
blocks ahead while this thread hashes them in order and copies the blocks the
helper has not claimed yet. The CPU time stays that of one thread doing both;
the wall time nearly halves when a second core is free.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np

TILE_BYTES = 1 << 18
BLOCK_ROWS = (128, 64)
BLOCK_BYTES = 1 << 25
"""Blocks of ``BLOCK_ROWS[0]`` whole rows (``BLOCK_ROWS[1]`` if a row is over 16 KiB),
of at most ``BLOCK_BYTES``, filled in tiles of at most ``TILE_BYTES``. Of 16 to 512
rows and 64 to 4,096 tile columns, this measured fastest on 100 MB float64 arrays of
125 to 100,000 columns (``benchmarks/bench_digest.py``): fewer rows read too little
of each column at a time, more leave the block and the tiles out of the caches."""

SHARED_MIN = 1 << 23
"""Arrays of at least this many bytes are copied by two threads (smaller ones finish
before a thread would have started)."""
AHEAD = 4
"""Blocks copied but not yet hashed, at most: the buffers of the pipeline."""


def transposed(arr: np.ndarray) -> bool:
    """Whether ``arr`` goes through this module: its first axis is closer in memory
    than its second, and a row fits in a block."""
    return (
        arr.ndim > 1
        and abs(arr.strides[0]) < abs(arr.strides[1])
        and arr.nbytes // len(arr) <= BLOCK_BYTES
    )


class _Blocks:
    """The blocks of rows of ``arr`` and how to copy one, as ``canonical``, into a buffer."""

    def __init__(self, arr: np.ndarray, canonical: np.dtype, count: int) -> None:
        row_bytes = arr.nbytes // len(arr)
        rows = BLOCK_ROWS[0] if row_bytes <= 1 << 14 else BLOCK_ROWS[1]
        self.rows = max(1, min(rows, BLOCK_BYTES // row_bytes, len(arr)))
        self.columns = max(1, TILE_BYTES // (self.rows * (row_bytes // arr.shape[1])))
        self.arr = arr
        self.count = -(-len(arr) // self.rows)
        shape = (self.rows, *arr.shape[1:])
        self.buffers = [np.empty(shape, dtype=canonical) for _ in range(min(count, self.count))]

    def copy(self, block: int) -> np.ndarray:
        """Fills the buffer of ``block`` with its rows; returns their bytes."""
        start = block * self.rows
        piece = self.arr[start : start + self.rows]
        out = self.buffers[block % len(self.buffers)][: len(piece)]
        for column in range(0, self.arr.shape[1], self.columns):
            end = column + self.columns
            np.copyto(out[:, column:end], piece[:, column:end])
        return out.reshape(-1).view(np.uint8)


def _helpers() -> int:
    try:
        return len(os.sched_getaffinity(0)) - 1
    except AttributeError:  # not on Linux
        return (os.cpu_count() or 1) - 1


def transposed_pieces(arr: np.ndarray, canonical: np.dtype) -> Iterator[np.ndarray]:
    """The C-order bytes of ``arr`` (see :func:`transposed`) as ``canonical``, in blocks of rows.

    Each piece is valid only until the next one is requested.
    """
    if arr.nbytes >= SHARED_MIN and _helpers() > 0:
        yield from _Shared(_Blocks(arr, canonical, AHEAD)).pieces()
        return
    blocks = _Blocks(arr, canonical, 1)
    for block in range(blocks.count):
        yield blocks.copy(block)


class _Shared:
    """Blocks copied by this thread and a helper thread, yielded in order.

    Blocks are claimed in order under a lock; block ``b`` goes into buffer
    ``b % AHEAD``, so it is copied only once block ``b - AHEAD`` was hashed.
    This thread claims only blocks whose buffer is free, so it never waits
    for itself; the helper claims blocks in order and finishes each before the
    next, so the block this thread waits for is always being copied.
    """

    def __init__(self, blocks: _Blocks) -> None:
        self.blocks = blocks
        self.claimed = 0
        self.lock = threading.Lock()
        self.copied = [threading.Event() for _ in range(blocks.count)]
        self.hashed = [threading.Event() for _ in range(blocks.count)]
        self.pieces_out: list[np.ndarray | None] = [None] * blocks.count
        self.failure: BaseException | None = None
        self.stopped = False

    def _claim(self, limit: int) -> int | None:
        with self.lock:
            block = self.claimed
            if block >= min(limit, self.blocks.count):
                return None
            self.claimed += 1
            return block

    def _copy(self, block: int) -> None:
        try:
            self.pieces_out[block] = self.blocks.copy(block)
        except BaseException as err:  # handed to the thread that hashes
            self.failure = err
        self.copied[block].set()

    def _help(self) -> None:
        ahead = len(self.blocks.buffers)
        while (block := self._claim(self.blocks.count)) is not None:
            if block >= ahead:
                self.hashed[block - ahead].wait()
            if self.stopped or self.failure is not None:
                return
            self._copy(block)

    def pieces(self) -> Iterator[np.ndarray]:
        helper = threading.Thread(target=self._help, name="fleche-digest", daemon=True)
        helper.start()
        ahead = len(self.blocks.buffers)
        try:
            for block in range(self.blocks.count):
                while not self.copied[block].is_set():
                    mine = self._claim(block + ahead)
                    if mine is None:
                        self.copied[block].wait()
                    else:
                        self._copy(mine)
                if self.failure is not None:
                    raise self.failure
                yield self.pieces_out[block]
                self.pieces_out[block] = None
                self.hashed[block].set()
        finally:
            self.stopped = True
            for event in self.hashed:  # a helper waiting for a buffer stops
                event.set()
            helper.join()
