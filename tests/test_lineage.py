"""Lineage: the calls that produced a value, and the calls that used it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fleche import AmbiguousDigestError, cache, fleche
from fleche.caches import Cache
from fleche.digest import digest
from fleche.lineage import PART, lineage
from fleche.storage import CallMemory, ValueMemory


@fleche
def load(n):
    return np.arange(n, dtype=float)


@fleche
def scale(data, factor=2.0):
    return data * factor


@fleche
def total(parts):
    return float(sum(p.sum() for p in parts))


@pytest.fixture
def store():
    c = Cache(ValueMemory(), CallMemory())
    with cache(c):
        yield c


def result_of(func, *args):
    return func.record(*args).digested_call.result


def test_provenance_of_a_result_follows_arguments_to_their_producers(store):
    scaled = scale(load(4), 3.0)
    graph = store.lineage(digest(scaled))
    scale_key, load_key = scale.digest(load(4), 3.0), load.digest(4)
    assert graph.root == digest(scaled)
    assert set(graph.calls) == {scale_key, load_key}
    assert graph.producers(digest(scaled)) == [scale_key]
    assert graph.producers(digest(load(4))) == [load_key]
    assert graph.consumers(digest(load(4))) == [scale_key]
    text = str(graph)
    assert "test_lineage.scale [call" in text and "test_lineage.load [call" in text
    assert "factor: value" in text and "= 3.0" in text  # a parameter is summarised
    assert "n: value" in text and "= 4" in text


def test_short_prefix_names_the_root(store):
    scaled = scale(load(4))
    key = digest(scaled)
    assert lineage(store, store.shrink(key)).root == key


def test_call_key_as_root_starts_at_its_arguments(store):
    scale(load(5))
    graph = lineage(store, scale.digest(load(5)))
    assert graph.is_call(graph.root)
    assert [name for name, _ in graph.children(graph.root)] == ["data", "factor"]


def test_used_by_follows_a_value_downstream(store):
    data = load(3)
    scaled = scale(data)
    total([scaled])  # used as a part of a list: not followed downstream
    again = scale(scaled, 5.0)
    graph = lineage(store, digest(data), used_by=True)
    assert graph.consumers(digest(data)) == [scale.digest(data)]
    assert graph.consumers(digest(scaled)) == [scale.digest(scaled, 5.0)]
    assert digest(again) in graph.nodes
    assert "data -> tests.test_lineage.scale" in str(graph)


def test_containers_are_followed_into_their_parts(store):
    a, b = scale(load(2)), load(3)
    total([a, b])
    graph = lineage(store, result_of(total, [a, b]))
    assert {scale.digest(load(2)), load.digest(2), load.digest(3), total.digest([a, b])} == set(
        graph.calls
    )
    parts = [e.source for e in graph.edges if e.name == PART]
    assert sorted(parts) == sorted([digest(a), digest(b)])


def test_shared_inputs_are_expanded_once(store):
    data = load(6)
    total([scale(data, 1.0), scale(data, 2.0)])
    graph = lineage(store, result_of(total, [scale(data, 1.0), scale(data, 2.0)]))
    assert list(graph.calls).count(load.digest(6)) == 1
    assert "(see above)" in str(graph)


def test_depth_cuts_the_walk_and_marks_where(store):
    scale(scale(load(2)))
    root = digest(scale(scale(load(2))))
    graph = lineage(store, root, depth=1)
    assert set(graph.calls) == {scale.digest(scale(load(2)))}
    assert digest(scale(load(2))) in graph.truncated
    assert "…" in str(graph)


def test_a_value_nothing_produced_has_no_calls(store):
    scale(load(2))
    graph = lineage(store, digest(2.0))  # the default factor: an input only
    assert graph.calls == {} and graph.edges == ()
    assert graph.summaries[graph.root] == "2.0"


def test_without_summaries_no_value_is_loaded(store):
    scale(load(2))
    graph = lineage(store, digest(scale(load(2))), summaries=False)
    assert graph.summaries == {}


def test_dot_and_dict_exports(store):
    scale(load(2))
    graph = lineage(store, digest(scale(load(2))))
    dot = graph.dot()
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert f'"{digest(load(2))}" -> "{scale.digest(load(2))}" [label="data"];' in dot
    data = json.loads(json.dumps(graph.to_dict()))
    assert data["root"] == digest(scale(load(2)))
    assert {c["function"] for c in data["calls"]} == {
        "tests.test_lineage.scale",
        "tests.test_lineage.load",
    }
    assert {"source", "target", "name"} <= set(data["edges"][0])


def test_rich_tree_has_the_same_lines(store):
    from rich.console import Console

    scale(load(2))
    graph = lineage(store, digest(scale(load(2))))
    console = Console(width=200, record=True, color_system=None)
    console.print(graph.rich())
    rendered = console.export_text()
    for _, text in graph.outline():
        assert text in rendered


def test_unknown_and_ambiguous_prefixes(store):
    for n in range(40):
        load(n)
    with pytest.raises(KeyError):
        lineage(store, "ffffffffffff")
    with pytest.raises(AmbiguousDigestError):
        lineage(store, load.digest(0)[:1])
