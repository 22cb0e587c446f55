"""Crafted keys and text no store can hold get the same answer from every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleche.call import Call, QueryCall
from fleche.errors import SaveError

from .backends import BACKENDS

_CRAFTED = ["zz", "abc\x00", "../../etc/passwd", "a" * 40, "ab/cd", "ab\\cd", "", "a" * 31 + "\x00"]


@pytest.fixture(params=BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest):
    return request.param


def test_contains_of_a_crafted_key_is_false(backend, tmp_path: Path) -> None:
    values = backend.values(tmp_path / "values")
    calls = backend.calls(tmp_path / "calls")
    values.save(1)
    calls.save(Call(name="f", module="m", arguments={"x": 1}, result=1))
    for key in _CRAFTED:
        assert values.contains(key) is False, key
        assert calls.contains(key) is False, key


def test_templates_with_text_no_store_holds_match_nothing(backend, tmp_path: Path) -> None:
    calls = backend.calls(tmp_path / "calls")
    calls.save(Call(name="f", module="m", arguments={"x": 1}, result=1))
    for template in (
        QueryCall(name="f\x00"),
        QueryCall(module="\ud800"),
        QueryCall(arguments={"x\x00": 1}),
        QueryCall(metadata={"tags\x00": {"a": 1}}),
    ):
        assert list(calls.query(template)) == []


@pytest.mark.parametrize(
    "backend", [b for b in BACKENDS if b.name in ("sqlite", "postgres")], ids=str
)
def test_sql_stores_refuse_the_same_text(backend, tmp_path: Path) -> None:
    calls = backend.calls(tmp_path / "calls")
    for call in (
        Call(name="f\x00", module="m", arguments={}),
        Call(name="f", module="\ud800", arguments={}),
        Call(name="f", module="m", arguments={"x\x00": 1}),
    ):
        with pytest.raises(SaveError, match="cannot be stored in SQL"):
            calls.save(call)
    assert list(calls.list()) == []
