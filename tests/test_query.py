"""QueryIterator: lazy, re-iterable, chainable."""

from __future__ import annotations

import pytest

from fleche import fleche


@pytest.fixture
def square(memory):
    @fleche
    def square(x, offset=0):
        return x * x + offset

    for x in range(10):
        square(x)
    square(3, offset=1)
    return square


def test_reiterable_and_lazy(square):
    query = square.query()
    assert query.count() == 11
    assert query.count() == 11  # iterating again asks the store again
    square(100)
    assert query.count() == 12


def test_filter_take_skip(square):
    even = square.query().filter(lambda c: c.arguments["x"] % 2 == 0)
    assert even.count() == 5  # 0, 2, 4, 6, 8; the offset call has x=3
    assert square.query().take(3).count() == 3
    assert square.query().skip(8).count() == 3


def test_sorted_latest_oldest(square):
    ordered = [
        c.arguments["x"]
        for c in square.query().sorted(key=lambda c: c.arguments["x"], reverse=True)
    ]
    assert ordered[0] == 9
    assert square.query().latest().arguments == {"x": 3, "offset": 1}
    assert square.query().oldest().arguments["x"] == 0


def test_only_any_unique_groupby(square):
    assert square.query(x=3, offset=1).only().result == 10
    with pytest.raises(LookupError):
        square.query(x=3).only()
    with pytest.raises(LookupError):
        square.query(x=55).only()
    assert square.query(x=3).any().arguments["x"] == 3 and square.query(x=55).any() is None
    groups = square.query().groupby(lambda c: c.arguments["offset"])
    assert {k: v.count() for k, v in groups.items()} == {0: 10, 1: 1}
    assert groups[1].only().result == 10  # each group is a query again
    assert square.query().unique(lambda c: c.arguments["offset"]).count() == 2


def test_evict_and_transfer(square):
    from fleche import Cache
    from fleche.storage import CallMemory, ValueMemory

    other = Cache(ValueMemory(), CallMemory())
    assert square.query(x=3).transfer(other) == 2
    assert other.query().count() == 2
    assert square.query(offset=1).evict() == 1
    assert square.query().count() == 10
    assert not square.contains(3, offset=1)


def test_table_has_namespaced_metadata(square):
    table = square.query().table()
    assert len(table) == 11
    assert {"x", "offset", "result", "runtime.walltime", "environment.host"} <= set(table.columns)
    digests = square.query().table(values=False)
    assert all(len(d) == 32 for d in digests["result"])


def test_query_rejects_unknown_argument(square):
    with pytest.raises(TypeError, match="does not take"):
        square.query(y=1)
