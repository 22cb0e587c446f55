"""Processes killed with SIGKILL in the middle of their saves lose nothing and damage nothing."""

from __future__ import annotations

import multiprocessing
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from fleche import Cache, CacheWarning, cache, fleche

from ..backends import BACKENDS

#: Processes sharing a store at once, rounds of killing them, arguments each one works through.
WRITERS, ROUNDS, ARGUMENTS = 3, 2, 40
#: Writers are forked, which obstore does not survive (tests/test_storage_object_store.py).
SHARED = [b for b in BACKENDS if b.processes and not b.name.startswith("s3")]


@fleche
def payload(x):
    """A result big enough (400 kB, incompressible) that a kill often lands inside its save."""
    return expected(x)


def expected(x):
    return np.random.default_rng(x).random(50_000)


def _store(backend, root: Path) -> Cache:
    return Cache(backend.values(root / "values"), backend.calls(root / "calls"))


def _write(backend, root: str, seed: int) -> None:
    """A writer: the arguments in its own random order, until it is killed."""
    warnings.simplefilter("ignore", CacheWarning)
    order = list(range(ARGUMENTS))
    random.Random(seed).shuffle(order)
    with cache(_store(backend, Path(root))):
        for x in order:
            payload(x)


@pytest.mark.parametrize("backend", SHARED, ids=str)
def test_writers_killed_mid_save_lose_nothing_and_damage_nothing(backend, tmp_path):
    store = _store(backend, tmp_path)  # here first: a backend that cannot be had skips
    context = multiprocessing.get_context("fork")
    rng = random.Random(0)
    for round in range(ROUNDS):
        writers = [
            context.Process(target=_write, args=(backend, str(tmp_path), round * WRITERS + i))
            for i in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        time.sleep(rng.uniform(0.3, 0.8))
        for writer in writers:
            writer.kill()  # SIGKILL; a writer already done and reaped is left alone
        for writer in writers:
            writer.join()
    # No wrong value: every stored call reads back exactly (or not at all).
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn entry would warn: it must not exist
        stored = [call for call in store.query()]
        for call in stored:
            x = call.arguments["x"]
            assert np.array_equal(call.result, expected(x))
        report = store.verify()
    assert report.ok, str(report)
    # No lost entry, no exception: every call answers, stored or computed now.
    with cache(store):
        for x in range(ARGUMENTS):
            assert np.array_equal(payload(x), expected(x))
    assert store.query().count() == ARGUMENTS
