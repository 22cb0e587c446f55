"""One helper thread that shares the copying of a large array's blocks with the hashing thread.

A Fortran-order array digests in C order, so each block of rows is a
transposing copy before it is hashed, and the copy costs about three times
the hash. numpy's copies and xxhash's updates release the GIL: the helper
copies blocks ahead while the calling thread hashes them in order, and the
calling thread copies the next unclaimed block itself whenever the one it
needs is not ready. A helper that never starts (busy with another call)
costs nothing: the caller does all the work, as it would alone.

That trades CPU time for wall time: two copies at once each run slower,
and handing blocks over costs a little (``benchmarks/bench_digest.py``
shows both clocks). On two idle cores the helper copies ~55% of the blocks
and the wait drops ~35%; with the other core taken by another process, runs
measured up to ~10% longer waits and ~90% more CPU time than one thread (a
helper descheduled in the middle of a block kept the caller waiting: now
the caller copies the rest alone once a wait is past ``PATIENCE`` times its
own copy of a block), and on a process allowed one CPU no helper is used. The helper is one daemon
thread, started on first use and forgotten in a forked child (threads do
not survive a fork); calls from several threads queue for it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

Fill = Callable[[int, Any], Any]
"""``fill(block, buffer)``: copies block ``block`` into ``buffer``, returns the piece to hash."""

_jobs: queue.SimpleQueue | None = None
_start = threading.Lock()


def helper_useful() -> bool:
    """Whether this process may run on more than one CPU (else a helper only adds costs)."""
    return _cpus() > 1


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _helper() -> queue.SimpleQueue:
    """The helper's queue of jobs, the helper started if it is not running."""
    global _jobs
    with _start:
        if _jobs is None:
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name="fleche-digest", daemon=True).start()
            _jobs = jobs
    return _jobs


def _serve(jobs: queue.SimpleQueue) -> None:
    while True:
        jobs.get()()


def _forget() -> None:
    global _jobs, _start
    _jobs, _start = None, threading.Lock()


os.register_at_fork(after_in_child=_forget)


PATIENCE = 4.0
"""The caller waits for a block the helper copies up to this many times its own
last block copy; past that the helper is taken to be stalled (descheduled, its
core busy with other work) and the caller copies the remaining blocks alone."""


def pieces_in_order(count: int, fill: Fill, buffers: list, spare: Callable[[], Any]) -> Iterator:
    """The pieces of blocks ``0 .. count - 1`` in order, copied by this thread and the helper.

    Block ``i`` is copied into ``buffers[i % len(buffers)]``, once the piece
    that buffer held before has been consumed, or into a buffer ``spare()``
    makes if the helper stalls; each piece yielded is valid until the next is
    requested.
    """
    blocks = _Blocks(count, fill, buffers)
    _helper().put(blocks.help)
    try:
        for block in range(count):
            yield blocks.take(block, spare)
            blocks.done()
    finally:
        blocks.stop()


class _Blocks:
    """The blocks of one array: which are claimed, which are copied, which buffers are free."""

    def __init__(self, count: int, fill: Fill, buffers: list) -> None:
        self.count, self.fill, self.buffers = count, fill, buffers
        self.changed = threading.Condition(threading.Lock())
        self.claimed = 0  # blocks claimed for a copy, in order
        self.consumed = 0  # blocks whose piece is done with: their buffer is free
        self.pieces: dict[int, Any] = {}  # block -> its piece, or what its copy raised
        self.stopped = False
        self.alone: Any = None  # the caller's own buffer, once the helper stalled
        self.patience = 0.01  # seconds, until the caller has timed a copy of its own

    def _claim(self) -> int | None:
        """The next block to copy if its buffer is free; call with the lock held."""
        if self.stopped or self.claimed >= min(self.count, self.consumed + len(self.buffers)):
            return None
        self.claimed += 1
        return self.claimed - 1

    def _copy(self, block: int) -> None:
        try:
            piece = self.fill(block, self.buffers[block % len(self.buffers)])
        except BaseException as error:  # raised in the calling thread instead
            piece = error
        with self.changed:
            self.pieces[block] = piece
            self.changed.notify_all()

    def help(self) -> None:
        """The helper's part: copy blocks while there are any to claim."""
        while True:
            with self.changed:
                block = self._claim()
                while block is None and not self.stopped and self.claimed < self.count:
                    self.changed.wait()  # every buffer is full: wait for the caller
                    block = self._claim()
            if block is None:
                return
            self._copy(block)

    def take(self, block: int, spare: Callable[[], Any]) -> Any:
        """The piece of ``block``, copying the next unclaimed blocks while it is not ready."""
        while self.alone is None:
            with self.changed:
                if block in self.pieces:
                    return _raised(self.pieces.pop(block))
                mine = self._claim()
                if mine is None:
                    if not self.changed.wait(self.patience) and block not in self.pieces:
                        self.stopped, self.alone = True, spare()  # the helper stalls
                    continue
            start = time.perf_counter()
            self._copy(mine)
            self.patience = PATIENCE * (time.perf_counter() - start)
        with self.changed:  # alone: blocks the helper copied before it stalled, or its own
            piece = self.pieces.pop(block, None)
        return _raised(piece) if piece is not None else self.fill(block, self.alone)

    def done(self) -> None:
        with self.changed:
            self.consumed += 1
            self.changed.notify_all()

    def stop(self) -> None:
        """No more copies: the helper leaves as soon as its copy under way (if any) ends."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()


def _raised(piece: Any) -> Any:
    if isinstance(piece, BaseException):
        raise piece
    return piece
