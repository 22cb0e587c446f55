"""The miss path carries what it computed downward: a prepared call is data its cache finishes.

``cache.prepare`` stores the arguments and seals the key; ``cache.commit``
stores the result and the record under that key (no storage digests the
record again); ``cache.abandon`` lets the call go.  Wrappers forward both to
the cache that prepared the call.
"""

from __future__ import annotations

import dataclasses

import pytest

from fleche import Cache, Call, PreparedCall, fleche
from fleche.caches import FilteredCache
from fleche.digest import digest
from fleche.storage import CallMemory, ValueMemory
from fleche.storage.sql import Sql
from fleche.storage.sql_metadata import metadata_columns, split_metadata, to_json


@pytest.fixture
def store() -> Cache:
    return Cache(ValueMemory(), CallMemory())


def prepared_in(cache, x: int) -> PreparedCall:
    record = Call("f", {"x": x}, module="m").digested()
    return cache.prepare(record, {"x": x}, record.key())


def test_a_prepared_call_is_data_naming_the_cache_that_finishes_it(store):
    prepared = prepared_in(store, 1)
    assert prepared.cache is store and prepared.open and not prepared.committed
    assert prepared.key == Call("f", {"x": 1}, module="m").key()
    assert dict(prepared.record.arguments) == {"x": digest(1)}


def test_the_cache_commits_once_and_releases(store):
    prepared = prepared_in(store, 2)
    key = store.commit(prepared, "two", {"tags": {"a": 1}})
    assert key == prepared.key and prepared.committed and not prepared.open
    assert store.load(key).metadata["tags"] == {"a": 1}
    assert store.load_result(key) == "two"
    with pytest.raises(RuntimeError, match="committed already"):
        store.commit(prepared, "again")
    assert store.load_result(key) == "two"


def test_abandon_releases_the_pins_once_and_stores_nothing(store):
    prepared = prepared_in(store, 3)
    store.abandon(prepared)
    store.abandon(prepared)
    assert not prepared.open
    assert not store.contains(prepared.key)
    assert store.gc(grace=0) == {digest(3)}  # no longer pinned


def test_a_wrapper_forwards_commit_and_abandon_to_the_preparing_cache(store):
    outer = FilteredCache(store, lambda call: True)
    prepared = outer.prepare(*_draft(4))
    assert prepared.cache is store
    assert outer.commit(prepared, 16) == prepared.key
    assert store.load_result(prepared.key) == 16
    other = outer.prepare(*_draft(5))
    outer.abandon(other)
    assert not other.open


def _draft(x: int) -> tuple:
    record = Call("f", {"x": x}, module="m").digested()
    return record, {"x": x}, record.key()


def test_the_call_storage_keeps_the_key_it_is_given():
    calls = CallMemory()
    record = Call("f", {"x": 1}, module="m", result=digest(2)).digested()
    sealed = digest("a key sealed upstream")
    assert calls.save_keyed(record, sealed) == sealed
    assert calls.load(sealed) == record
    assert not calls.contains(record.key())  # stored under the given key, not a recomputed one


@pytest.mark.parametrize(
    "metadata",
    [
        {"runtime": {"started": 1.5, "walltime": 0.25, "n": 3, "ok": True, "none": None}},
        {"env": {"host": "h", "cwd": "/tmp"}, "tags": {}},
        {"x": {"big": 1e16}},  # JSONB would turn it into an int: typed
        {"x": {"negative zero": -0.0}},
        {"x": {"text": "é"}},  # not ASCII: the general path, same document
        {"x": {"nul": "a\x00b"}},
        {"x": {"tuple": (1, 2)}},
    ],
)
def test_plain_metadata_takes_the_fast_path_with_the_same_document(metadata):
    document, typed = split_metadata(metadata)
    exact = {
        namespace: {
            name: value
            for name, value in entries.items()
            if type(value) is not tuple
            and value == value
            and not (type(value) is float and (abs(value) >= 1e16 or str(value) == "-0.0"))
            and not (type(value) is str and "\x00" in value)
        }
        for namespace, entries in metadata.items()
    }
    assert to_json(document) == to_json(exact)
    assert (typed is None) == (exact == metadata)


def test_entries_named_as_before_are_written_as_the_general_path_writes_them(tmp_path):
    # The runtime recorder's names come back every call with new values: their JSON
    # frame is remembered; the text must stay what the general path writes.
    calls = Sql(url=str(tmp_path / "calls.db"))
    for n, value in enumerate([1.5, 2, "%s", "é", None, True, 1e16, (1,), "x\x00"]):
        metadata = {"runtime": {"started": value, "100%": n, '"q"': "%d"}, "%s": {"a": n}}
        document, typed = split_metadata(metadata)
        assert metadata_columns(metadata) == (to_json(document), typed)
        record = Call("f", {"x": n}, module="m", result=digest(n), metadata=metadata).digested()
        assert calls.load(calls.save(record)).metadata == metadata


class Counted:
    """A value that counts how often it is digested."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.digested = 0

    def __digest__(self):
        self.digested += 1
        return digest(("Counted", self.n))


def test_a_result_and_its_parts_are_digested_once_on_a_miss(store):
    from fleche import fleche

    parts = [Counted(1), Counted(2)]

    @fleche(cache=store)
    def build(x: int) -> list:
        return parts

    key = build.digest(0)
    assert build(0) is parts
    assert [part.digested for part in parts] == [1, 1]
    assert store.load(key).digested_call.result == digest(parts)  # the key the parts make up
    assert [type(v) for v in store.values.load(store.load(key).digested_call.result)] == [
        Counted
    ] * 2


def test_a_staged_value_is_written_only_when_saved(store):
    staged = store.values.stage([Counted(3), "text"])
    assert not store.values.contains(staged.key)
    assert store.values.save_staged(staged) == staged.key
    assert store.values.load(staged.key)[1] == "text"


@dataclasses.dataclass(frozen=True)
class _Ahead(ValueMemory):
    """A memory storage recording what the cache asks of the writes-ahead capability."""

    asked: list = dataclasses.field(default_factory=list, compare=False)

    def save_ahead(self, value, key):
        self.asked.append(("save_ahead", key))
        return self.save(value, key)

    def settle(self, keys):
        self.asked.append(("settle", sorted(keys)))


@dataclasses.dataclass(frozen=True)
class _DeclaredAhead(_Ahead):
    saves_ahead = True


@pytest.mark.parametrize("kind", [_Ahead, _DeclaredAhead])
def test_arguments_are_saved_ahead_and_settled_only_where_declared(kind):
    values = kind()
    cached = fleche(cache=Cache(values, CallMemory()))(lambda x: x + 1)
    assert cached(1) == 2
    key = digest(1)
    expected = [("save_ahead", key), ("settle", [key])] if kind.saves_ahead else []
    assert values.asked == expected
