"""A page's metadata decoded once per distinct text: shared for reads, never for a record or a cell."""

from __future__ import annotations

import gc

import pytest

from fleche import Cache
from fleche.call import Call, QueryCall
from fleche.storage import ValueMemory
from fleche.storage.record_page import Repeated, collector_paused

from .backends import sqlite_calls


def _store(tmp_path, metadata, n=30):
    cache = Cache(ValueMemory(), sqlite_calls(tmp_path), clock=lambda: 1000.0)
    for x in range(n):
        cache.save(Call("f", {"x": x}, module="m", result=x, metadata=metadata(x)))
    return cache


def test_pages_share_one_document_but_records_get_their_own(tmp_path):
    cache = _store(tmp_path, lambda x: {"tags": {"project": "p", "list": [1, 2]}})
    (page,) = cache.calls.query_pages(QueryCall())
    assert type(page.metadata) is Repeated and len(page.metadata.distinct) == 1
    first, second, *_ = (call.digested_call for call in cache.query())
    assert first.metadata == second.metadata == {"tags": {"project": "p", "list": [1, 2]}}
    first.metadata["tags"]["list"].append(3)
    assert second.metadata["tags"]["list"] == [1, 2]
    records = page.records()
    assert records[0].metadata is not records[1].metadata


def test_table_cells_of_a_shared_document_share_no_container(tmp_path):
    cache = _store(tmp_path, lambda x: {"tags": {"project": "p", "list": [1, 2]}})
    table = cache.query().table(values=False)
    assert list(table["tags.project"]) == ["p"] * 30
    cells = list(table["tags.list"])
    assert cells == [[1, 2]] * 30 and cells[0] is not cells[1]


def test_a_few_distinct_documents_and_expired_rows_left_out(tmp_path):
    # Two texts on every page: rows expired by the clock are selected out of the shared column.
    cache = _store(tmp_path, lambda x: {"expiry": {"expires": 10.0 if x % 2 else 5000.0}})
    (page,) = cache.calls.query_pages(QueryCall())
    assert type(page.metadata) is Repeated and len(page.metadata.distinct) == 2
    live = list(cache.query())
    assert len(live) == 15 and len(list(cache.query(expired=True))) == 30
    assert {c.digested_call.metadata["expiry"]["expires"] for c in live} == {5000.0}
    table = cache.query().table(values=False)
    assert list(table["expiry.expires"]) == [5000.0] * 15


def test_typed_metadata_on_a_page_of_shared_documents(tmp_path):
    # A row whose metadata JSON cannot hold (a set) is joined with its typed text, alone.
    cache = _store(
        tmp_path,
        lambda x: {"tags": {"project": "p"}, **({"odd": {"when": {1, 2}}} if x == 3 else {})},
    )
    records = {c.digested_call.arguments["x"]: c.digested_call for c in cache.query()}
    odd = [r for r in records.values() if "odd" in r.metadata]
    assert len(odd) == 1 and odd[0].metadata["odd"]["when"] == {1, 2}
    assert sum(r.metadata == {"tags": {"project": "p"}} for r in records.values()) == 29
    assert len(cache.query().table(values=False)) == 30


def test_distinct_documents_are_parsed_as_before(tmp_path):
    cache = _store(tmp_path, lambda x: {"tags": {"n": x}})
    (page,) = cache.calls.query_pages(QueryCall())
    assert type(page.metadata) is list
    assert list(cache.query().table(values=False)["tags.n"]) == list(range(30))


@pytest.mark.parametrize("frozen", [False, True])
def test_a_table_restores_the_collector_and_keeps_what_the_process_froze(tmp_path, frozen):
    cache = _store(tmp_path, lambda x: {})
    if frozen:
        gc.freeze()
    try:
        cache.query().table()
        assert gc.isenabled() and bool(gc.get_freeze_count()) == frozen
        with collector_paused(aged=True):
            assert not gc.isenabled()
        assert gc.isenabled() and bool(gc.get_freeze_count()) == frozen
    finally:
        gc.unfreeze()
