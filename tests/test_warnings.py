"""Warnings point at the user's line and say what failed: an argument, the result or a stored entry."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from fleche import Cache, CacheWarning, cache, fleche
from fleche.digest import digest
from fleche.errors import CorruptEntryWarning
from fleche.storage import CallPickleFile, ValuePickleFile


def files(root: Path, serializer: str = "pickle") -> Cache:
    return Cache(
        ValuePickleFile(root=root / "values", serializer=serializer),
        CallPickleFile(root=root / "calls"),
    )


@fleche
def apply(fn, x):
    return fn(x)


@fleche
def adder(x):
    def add(y):
        return x + y

    return add


@fleche
def guard(x):
    return threading.Lock()


@fleche
def kind(x):
    return type(x).__name__


@fleche
def square(x):
    return [x * x] * 3


def test_an_unpicklable_argument_names_itself_and_suggests_cloudpickle(tmp_path: Path) -> None:
    with cache(files(tmp_path)), pytest.warns(CacheWarning) as caught:
        assert apply(lambda v: v + 1, 2) == 3
    (warning,) = caught
    assert warning.filename == __file__
    message = str(warning.message)
    assert "store the arguments of apply" in message and "argument 'fn'" in message
    assert 'serializer="cloudpickle"' in message and message.endswith("it runs uncached")


def test_an_unpicklable_result_says_result_and_suggests_cloudpickle(tmp_path: Path) -> None:
    with cache(files(tmp_path)), pytest.warns(CacheWarning) as caught:
        assert adder(3)(1) == 4
    (warning,) = caught
    assert warning.filename == __file__
    message = str(warning.message)
    assert "store the result of adder" in message and "argument" not in message
    assert 'serializer="cloudpickle"' in message and "returned uncached" in message


def test_cloudpickle_stores_what_the_hint_says_it_does(tmp_path: Path) -> None:
    store = files(tmp_path, serializer="cloudpickle")
    with cache(store):
        assert adder(3)(1) == 4
        assert adder.contains(3) and adder.load(3)(2) == 5


def test_an_indigestible_result_gives_no_advice_about_arguments(memory: Cache) -> None:
    with pytest.warns(CacheWarning) as caught:
        guard(1)
    (warning,) = caught
    assert warning.filename == __file__
    message = str(warning.message)
    assert "store the result of guard" in message and "at result" in message
    assert "ignore the argument" not in message


def test_an_indigestible_argument_points_at_the_caller(memory: Cache) -> None:
    with pytest.warns(CacheWarning, match="ignore the argument") as caught:
        assert kind(threading.Lock()) == "lock"
    assert caught[0].filename == __file__


def test_a_corrupt_entry_read_by_a_call_points_at_the_caller(tmp_path: Path) -> None:
    store = files(tmp_path)
    with cache(store):
        square(4)
    store.values._path(digest([16, 16, 16])).write_bytes(b"damaged")
    with cache(store), pytest.warns(CorruptEntryWarning) as caught:
        assert square(4) == [16, 16, 16]
    assert {w.filename for w in caught} == {__file__}
    with cache(files(tmp_path)):
        assert square(4) == [16, 16, 16]


@fleche
async def adder_later(x):
    return lambda y: x + y


def test_an_awaited_call_points_at_the_awaiting_line(tmp_path: Path) -> None:
    async def caller():
        return await adder_later(2)

    with (
        cache(files(tmp_path)),
        pytest.warns(CacheWarning, match="result of adder_later") as caught,
    ):
        assert asyncio.run(caller())(1) == 3
    assert caught[0].filename == __file__
