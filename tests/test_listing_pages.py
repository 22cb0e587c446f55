"""A SQL store's listing a page at a time: the same calls and tables as a call at a time.

The cache lists a store that reads records in pages (``query_pages``) a
page at a time and builds ``table()`` from the pages' columns; here each
answer is compared with the one built a call at a time from the same calls.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import sqlite3

import pandas
import pytest

from fleche import Cache
from fleche.caches.listing import lazy_calls
from fleche.call import Call, DigestedCall, LazyCall, QueryCall
from fleche.digest import Digest
from fleche.query import QueryIterator
from fleche.storage import Sql, ValueMemory
from fleche.storage.sql_scan import PAGE

from .backends import postgres_calls, sqlite_calls

STORES = {"sqlite": sqlite_calls, "postgres": postgres_calls}


def _store(tmp_path, calls, backend="sqlite"):
    cache = Cache(ValueMemory(), STORES[backend](tmp_path), clock=lambda: 1000.0)
    for call in calls:
        cache.save(call)
    return cache


def _one_at_a_time(cache, **query):
    """The same query, but without its pages: answered a call at a time."""
    paged = cache.query(**query)
    return QueryIterator(paged.calls, paged.cache, paged.counter)


def _mixed():
    """Calls of several shapes: argument names, metadata, an argument named like a column."""
    for x in range(PAGE + 50):  # a page and a bit, all of one shape
        yield Call("f", {"x": x, "group": x % 7}, module="m", result=x,
                   metadata={"tags": {"project": "p"}})  # fmt: skip
    yield Call("g", {"result": 1, "y": 2}, module="m", result=3)
    yield Call("g", {"y": 2, "result": 5}, module="m", result=3, metadata={"tags": {"a": 1}})
    yield Call("h", {}, module="n", result=None, metadata={"tags": {"project": [1, 2]}})
    yield Call("f", {"x": -1, "group": 0}, module="m", result=0,
               metadata={"expiry": {"expires": 10.0}})  # fmt: skip
    yield Call("f", {"x": -2, "group": 0}, module="m", result=0,
               metadata={"expiry": {"expires": 5000.0}, "odd": {"when": {1, 2}}})  # fmt: skip


@pytest.mark.parametrize("backend", STORES)
@pytest.mark.parametrize("expired", [False, True])
def test_pages_list_the_same_calls(tmp_path, expired, backend):
    cache = _store(tmp_path, _mixed(), backend)
    paged = [c.key() for c in cache.query(expired=expired)]
    single = [c.key() for c in _one_at_a_time(cache, expired=expired)]
    assert paged == single
    assert len(paged) == PAGE + 55 - (not expired)


@pytest.mark.parametrize(
    "table",
    [
        lambda q: q.table(values=False),
        lambda q: q.table(shrink_keys=False),
        lambda q: q.table(shrink_keys=True),
        lambda q: q.table(["x"], results=True),
        lambda q: q.table(),
    ],
)
@pytest.mark.parametrize("backend", STORES)
def test_tables_from_pages_equal_tables_from_calls(tmp_path, table, backend):
    cache = _store(tmp_path, _mixed(), backend)
    paged, single = table(cache.query()), table(_one_at_a_time(cache))
    pandas.testing.assert_frame_equal(paged, single)
    assert list(paged.columns)[:2] == ["key", "function"]


def _every_other():
    """A filter that reads nothing of the calls (so they stay on their pages): every other one."""
    flip = itertools.count()
    return lambda call: next(flip) % 2 == 0


@pytest.mark.parametrize(
    "wrap",
    [
        lambda cache: cache.readonly(),
        lambda cache: cache.filter(lambda call: call.digested_call.name != "g"),
        lambda cache: cache.filter(QueryCall(name="f")),
        lambda cache: cache.filter(_every_other()),
        lambda cache: cache.filter(_every_other()).readonly(),
    ],
    ids=["readonly", "filter", "template", "unread", "both"],
)
def test_wrapped_caches_build_tables_from_pages(tmp_path, wrap):
    # A read-only or filtered cache's listing keeps its pages: its table is built from them.
    cache = _store(tmp_path, _mixed())
    assert wrap(cache).query().pages is not None
    paged, single = wrap(cache).query().table(), _one_at_a_time(wrap(cache)).table()
    pandas.testing.assert_frame_equal(paged, single)
    assert len(paged) == len(list(wrap(cache).query()))


def test_table_of_one_function_and_of_nothing(tmp_path):
    cache = _store(tmp_path, _mixed())
    template = QueryCall(name="g")
    paged = cache.query(template).table(values=False)
    assert list(paged["y"]) == [str(cache.query(template).any().digested_call.arguments["y"])] * 2
    assert cache.query(name="nothing").table(values=False).empty


def test_damaged_rows_are_left_out_of_pages_and_tables(tmp_path):
    cache = _store(tmp_path, _mixed())
    with sqlite3.connect(tmp_path / "calls.db") as raw:
        raw.execute("UPDATE calls SET seal = '0000000000000000' WHERE name = 'g'")
    with pytest.warns(Warning):
        table = cache.query().table(values=False)
    with pytest.warns(Warning):
        single = _one_at_a_time(cache).table(values=False)
    pandas.testing.assert_frame_equal(table, single)
    assert "g" not in {f.rsplit(".", 1)[-1] for f in table["function"]}


def test_lazy_calls_are_calls_made_one_by_one():
    records = [Call("f", {"x": x}, result=x).digested() for x in range(3)]
    values = ValueMemory()
    made = lazy_calls(records, values)
    for call, record in zip(made, records, strict=True):
        one = LazyCall(record, values)
        assert type(call) is LazyCall
        assert all(
            getattr(call, slot, None) is getattr(one, slot, None) for slot in LazyCall.__slots__
        )


class _OnlyEven(Sql):
    """A store whose own query answers less than its tables hold."""

    def query(self, template):
        return (r for r in super().query(template) if r.arguments.get("x", "") < "8")


def test_a_store_that_answers_queries_otherwise_is_listed_through_its_query(tmp_path):
    cache = Cache(ValueMemory(), _OnlyEven(url=str(tmp_path / "calls.db")))
    for x in range(20):
        cache.save(Call("f", {"x": x}, module="m", result=x))
    answered = [r.key() for r in cache.calls.query(QueryCall())]
    assert 0 < len(answered) < 20
    assert [c.key() for c in cache.query()] == answered
    assert list(cache.query().table(values=False)["key"]) == answered


@pytest.mark.parametrize("backend", STORES)
def test_records_read_in_bulk_read_as_records_made_one_by_one(tmp_path, backend):
    """Their digests are kept as text but read as Digest; they copy, pickle and change as records."""
    cache = _store(tmp_path, _mixed(), backend)
    for call in cache.query(expired=True):
        record, alone = call.digested_call, cache.calls.load(call.key())
        assert record == alone and record.arguments == alone.arguments
        assert record.arguments is record.arguments  # made once
        assert {type(d) for d in [*record.arguments.values(), *record.values()]} <= {
            Digest,
            type(None),
        }
        assert type(record.result) is type(alone.result)
        assert pickle.loads(pickle.dumps(record)) == record
        changed = record.replace(name="renamed")
        assert type(changed) is DigestedCall and changed.name == "renamed"
        assert LazyCall(changed, cache.values).key() == changed.key()
        copied = copy.copy(call)  # a listed call copies as the LazyCall it is
        assert type(copied) is LazyCall and copied.digested_call == record
        assert copied.key() == call.key() and copied.result == call.result


@pytest.mark.parametrize("backend", STORES)
def test_tables_show_a_missing_argument_as_its_digest_and_refuse_a_missing_result(
    tmp_path, backend
):
    cache = _store(tmp_path, [Call("f", {"x": 1, "y": 2}, module="m", result=3)], backend)
    (call,) = cache.query()
    cache.values.evict(call.digested_call.arguments["x"])
    for query in (cache.query(), _one_at_a_time(cache)):
        table = query.table(["x", "y"])
        assert (table["x"][0], table["y"][0]) == (call.digested_call.arguments["x"], 2)
        assert type(table["x"][0]) is Digest
    cache.values.evict(call.digested_call.result)
    for query in (cache.query(), _one_at_a_time(cache)):
        with pytest.raises(KeyError):
            query.table()


@pytest.mark.parametrize("odd", [{1, 2}, Digest("ab" * 16)], ids=["packed", "kept"])
def test_listed_calls_read_their_metadata_as_stored(tmp_path, odd):
    # A listing keeps a page's metadata packed until a record of it is read
    # (as it is, if it holds what cannot be packed, such as a Digest).
    metadata = [{"tags": {"n": x, "odd": odd, "w": [x / 3, None, "é"]}} for x in range(PAGE + 5)]
    cache = _store(tmp_path, [Call("f", {"x": x}, module="m", result=x, metadata=metadata[x])
                              for x in range(PAGE + 5)])  # fmt: skip
    listed = list(cache.query())
    read = sorted((c.digested_call.metadata for c in listed), key=lambda m: m["tags"]["n"])
    assert read == metadata
    assert {type(m["tags"]["odd"]) for m in read} == {type(odd)}
    read[0]["tags"]["n"] = "changed"  # each call has its own
    assert read[1]["tags"]["n"] == 1
