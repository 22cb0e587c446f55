"""The conformance tests every call storage passes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ..call import Call, DigestedCall, QueryCall
from ..digest import digest
from .backend import Backend, calls_of, check_to_config

__all__ = ["CallStorageTests"]


def _call(i: int, result: Any = None) -> Call:
    return Call(
        name="simulate",
        module="tests.model",
        arguments={"temperature": i, "steps": 10},
        result=result,
    )


class CallStorageTests:
    """Behaviour every call storage shares."""

    def test_save_load(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        call = _call(300, result=[1.0, 2.0])
        key = calls.save(call)
        assert key == call.key()
        record = calls.load(key)
        assert isinstance(record, DigestedCall)
        assert record.arguments == {"temperature": digest(300), "steps": digest(10)}
        assert record.result == digest([1.0, 2.0])
        assert (record.name, record.module) == ("simulate", "tests.model")
        assert calls.load(key[:8]) == record

    def test_metadata_round_trip(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        call = dataclasses.replace(
            _call(1), metadata={"tags": {"project": "x", "n": 3}, "runtime": {"walltime": 0.5}}
        )
        record = calls.load(calls.save(call))
        assert record.metadata == {"tags": {"project": "x", "n": 3}, "runtime": {"walltime": 0.5}}

    def test_save_twice_overwrites(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        key = calls.save(_call(1, result="old"))
        assert calls.save(_call(1, result="new")) == key
        assert calls.load(key).result == digest("new")
        assert list(calls.list()).count(key) == 1

    def test_query_template(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        for i in range(10):
            calls.save(_call(i, result=i % 3))
        calls.save(Call(name="other", module="tests.model", arguments={"temperature": 3}))
        assert {r.arguments["temperature"] for r in calls.query(QueryCall(name="simulate"))} == {
            digest(i) for i in range(10)
        }
        found = list(calls.query(QueryCall(arguments={"temperature": 3})))
        assert len(found) == 2
        assert (
            len(list(calls.query(QueryCall(name="simulate", arguments={"temperature": digest(3)}))))
            == 1
        )
        assert len(list(calls.query(QueryCall(name="simulate", result=0)))) == 4
        assert list(calls.query(QueryCall(arguments={"pressure": 1}))) == []

    def test_query_metadata(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        calls.save(dataclasses.replace(_call(1), metadata={"tags": {"project": "x"}}))
        calls.save(dataclasses.replace(_call(2), metadata={"tags": {"project": "y"}}))
        calls.save(_call(3))
        hits = list(calls.query(QueryCall(metadata={"tags": {"project": "x"}})))
        assert [r.arguments["temperature"] for r in hits] == [digest(1)]
        assert len(list(calls.query(QueryCall(metadata={"tags": {}})))) == 2

    def test_query_none_argument(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        calls.save(Call(name="f", module="m", arguments={"x": None}))
        calls.save(Call(name="f", module="m", arguments={"x": 0}))
        hits = list(calls.query(QueryCall(name="f", arguments={"x": None})))
        assert [r.arguments["x"] for r in hits] == [digest(None)]

    def test_transform_rekeys(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        keys = [calls.save(_call(i)) for i in range(5)]
        moved = calls.transform(lambda c: c.replace(module="tests.renamed"))
        assert moved == 5
        assert not any(calls.contains(k) for k in keys)
        assert {calls.load(k).module for k in calls.list()} == {"tests.renamed"}

    def test_transform_interrupted_loses_nothing(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        for i in range(6):
            calls.save(_call(i))
        seen = []

        def rename(call: DigestedCall) -> Call:
            if len(seen) == 3:
                raise RuntimeError("interrupted")
            seen.append(call)
            return call.replace(module="tests.renamed")

        with pytest.raises(RuntimeError):
            calls.transform(rename)
        assert len(list(calls.list())) == 6
        calls.transform(lambda c: c.replace(module="tests.renamed"))
        assert {calls.load(k).module for k in calls.list()} == {"tests.renamed"}
        assert len(list(calls.list())) == 6

    def test_evict_and_expand(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        key = calls.save(_call(7))
        other = calls.save(_call(8))
        assert calls.expand(calls.shrink(key)) == key
        assert calls.shrink(key, other) == (calls.shrink(key), calls.shrink(other))
        assert calls.shrink(key=key) == calls.shrink(key)  # the storage spec names it
        calls.evict(key)
        assert not calls.contains(key)
        with pytest.raises(KeyError):
            calls.load(key)
        calls.evict(key)  # absent: nothing to do, no error

    def test_query_with_a_call_template(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        for i in range(4):
            calls.save(_call(i, result=i % 2))
        calls.save(Call(name="other", module="tests.model", arguments={"temperature": 1}))
        wildcard = Call(name=None, module=None, arguments=None)
        assert len(list(calls.query(wildcard))) == 5
        named = Call(name="simulate", module=None, arguments=None, result=1)
        assert {r.arguments["temperature"] for r in calls.query(named)} == {digest(1), digest(3)}
        exact = _call(2, result=0)
        assert [r.key() for r in calls.query(exact)] == [exact.key()]
        assert [r.key() for r in calls.query(exact.digested())] == [exact.key()]

    def test_to_config_rebuilds_the_storage(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        check_to_config(calls, "call", calls.save(_call(1)))

    def test_count_agrees_with_the_query(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        assert calls.count() == 0
        for i in range(12):
            tags = {"tags": {"even": i % 2 == 0}}
            calls.save(dataclasses.replace(_call(i, result=i % 3), metadata=tags))
        calls.save(Call(name="other", module="tests.model", arguments={"temperature": 3}))
        templates = [
            QueryCall(),
            QueryCall(name="simulate"),
            QueryCall(name="missing"),
            QueryCall(arguments={"temperature": 3}),
            QueryCall(name="simulate", arguments={"temperature": 4, "steps": 10}),
            QueryCall(result=1),
            QueryCall(metadata={"tags": {"even": True}}),
            Call(name=None, module=None, arguments=None),
        ]
        for template in templates:
            assert calls.count(template) == len(list(calls.query(template))), template
        assert calls.count() == 13

    def test_count_leaves_out_calls_expired_by_now(self, backend: Backend, tmp_path: Path) -> None:
        calls = calls_of(backend, tmp_path)
        ends = [None, 100.0, 200.0, float("inf"), 100.0]  # inf: kept apart as typed metadata
        for i, end in enumerate(ends):
            expiry = {} if end is None else {"expiry": {"ttl": 1.0, "expires": end}}
            calls.save(dataclasses.replace(_call(i), metadata=expiry))
        assert calls.count() == 5
        assert calls.count(now=50.0) == 5
        assert calls.count(now=150.0) == 3
        assert calls.count(QueryCall(arguments={"temperature": 2}), now=250.0) == 0
        assert calls.count(QueryCall(name="simulate"), now=250.0) == 2

    def test_referenced_names_every_argument_and_result(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        calls = calls_of(backend, tmp_path)
        assert set(calls.referenced()) == set()
        expected = set()
        for i in range(5):
            call = _call(i % 3, result=[i])
            calls.save(call)
        for key in calls.list():
            expected.update(calls.load(key).values())
        assert set(calls.referenced()) == expected
        assert {digest(0), digest(10), digest([4])} <= set(calls.referenced())
