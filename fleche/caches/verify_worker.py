"""A second process reading values for a verify while this one checks the records.

Examining a value (unpickling it, digesting it again) is Python work under
the GIL, so threads cannot share it out; a child process can.
:class:`Helper` starts ``python -c`` running :func:`main` (not
:mod:`multiprocessing`, which would import the caller's ``__main__``
again), hands it chunks of keys one at a time over a pipe from a thread,
and this process takes chunks from the other end of the same queue once
it has checked the records.  The child sends back only what is not a sound
leaf; an entry whose read failed or warned is examined again here, so its
warnings, and what the storage notes of a damaged entry, happen in this
process.  If the child fails, its chunks are read here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import IO, Any

from ..digest import Digest
from ..storage.base import ValueStorage

__all__ = ["CHUNK", "MINIMUM", "SPARE", "Helper", "examine", "main"]

#: Keys per chunk handed to the child: a few hundredths of a second of work.
CHUNK = 4096
#: Fewer values than this are read here alone: a process costs more to start.
MINIMUM = 50_000
#: Cores besides this process's one it must be allowed to run on for a child to start.
SPARE = 1.0

_START = (
    "import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
    "from fleche.caches.verify_worker import main; main()"
)

#: What the child found in a chunk: ``(key, (digest, parts))`` of each entry that is not a
#: sound leaf, and the keys to examine again in the parent (their reads failed or warned).
Found = tuple[list[tuple[str, Any]], list[str]]


def main() -> None:
    """The child: examine each chunk of keys read from stdin and answer on stdout, until EOF."""
    source = sys.stdin.buffer
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    values = pickle.load(source)
    while True:
        try:
            keys = pickle.load(source)
        except EOFError:
            return
        pickle.dump(examine(values, keys), sink, protocol=pickle.HIGHEST_PROTOCOL)
        sink.flush()


def examine(values: Any, keys: list[str]) -> Found:
    """What the child answers for ``keys`` (see :data:`Found`)."""
    found, again = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key, outcome in values.examine_many(keys):
            if caught:
                caught.clear()
                again.append(key)
            elif type(outcome) is tuple:
                if outcome[0] != key or outcome[1]:
                    found.append((key, outcome))
            elif outcome is not None:  # an exception: examined again in the parent
                again.append(key)
    return found, again


def _spare_cores() -> int:
    """How many cores this process may run on besides the one it runs on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) - 1


class Helper:
    """A child process examining chunks of ``keys`` of ``values`` (see the module docstring)."""

    def __init__(self, values: ValueStorage, keys: list[Digest]) -> None:
        self.chunks = collections.deque(keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK))
        self.answers: collections.deque[tuple[list[Digest], Found]] = collections.deque()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _START],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.thread = threading.Thread(target=self._feed, args=(values,), daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, values: ValueStorage, keys: list[Digest]) -> Helper | None:
        """A helper for a store of many values on a machine with a core to spare, else ``None``.

        It costs about a tenth more CPU time (starting it, sending the keys):
        on two cores shared with other work it still shortened a verify of
        300,000 entries by 15-20% at a load average of 3, by nothing at 5
        (benchmarks/bench_scale.py).
        """
        if len(keys) < MINIMUM or _spare_cores() < SPARE or not sys.executable:
            return None
        if not callable(getattr(values, "examine_many", None)):
            return None
        try:
            pickle.dumps(values)
            return cls(values, keys)
        except Exception:  # a storage that cannot be sent, a process that cannot start
            return None

    def _feed(self, values: ValueStorage) -> None:
        """The thread talking to the child: one chunk out, its answer back, until none is left."""
        send: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        receive: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        try:
            pickle.dump(list(sys.path), send)
            pickle.dump(values, send)
            while True:
                try:
                    chunk = self.chunks.popleft()
                except IndexError:
                    return
                try:
                    pickle.dump(list(map(str, chunk)), send, protocol=pickle.HIGHEST_PROTOCOL)
                    send.flush()
                    found = pickle.load(receive)
                except Exception:
                    self.chunks.appendleft(chunk)  # read here instead
                    return
                self.answers.append((chunk, found))
        except Exception:
            return  # the child is gone: the parent reads what is left
        finally:
            if self.chunks:  # it failed: it need not finish
                self.process.kill()
            for pipe in (send, receive):
                with contextlib.suppress(OSError):
                    pipe.close()
            self.process.wait()

    def close(self) -> None:
        """Stop the child (whatever it was doing): for a verify that failed meanwhile."""
        self.chunks.clear()
        with contextlib.suppress(OSError):
            self.process.kill()
        self.thread.join()

    def chunks_read(self) -> Iterator[tuple[list[Digest], Found | None]]:
        """Each chunk with what the child found in it, or ``None`` for one to read here."""
        while True:
            while self.answers:
                yield self.answers.popleft()
            try:
                yield self.chunks.pop(), None  # from the far end: the child takes the near one
                continue
            except IndexError:
                pass
            self.thread.join()
            if not self.answers and not self.chunks:
                return
