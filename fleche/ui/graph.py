"""A call's lineage as a picture: producers on the left, consumers on the right.

The upstream and downstream graphs of :func:`fleche.lineage.lineage` are
merged and laid out in layers (each node one column right of its furthest
input, so data flows left to right), then drawn as SVG by a template, where
every label is escaped.  Each node links to its call or value page.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from fleche.lineage import Lineage, lineage

from .preview import clip

__all__ = ["Layout", "layout", "lineage_of"]

COLUMN, ROW, NODE_W, NODE_H, MARGIN = 270, 64, 190, 42, 12


@dataclass(frozen=True)
class Node:
    """A box (call) or a pill (value) at ``x, y``, linking to ``href``."""

    key: str
    call: bool
    title: str
    subtitle: str
    href: str
    x: float
    y: float
    root: bool


@dataclass(frozen=True)
class Link:
    """An arrow from one node to another, named by the argument it fills (if any)."""

    path: str
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class Layout:
    """Every node and link placed, and the size of the picture."""

    nodes: list[Node]
    links: list[Link]
    width: float
    height: float


def lineage_of(
    cache: Any, key: str, depth: int = 3, downstream: bool = True
) -> tuple[Lineage, ...]:
    """Upstream lineage of ``key`` and, if ``downstream``, the calls that used it, ``depth`` calls deep.

    Upstream steps are indexed template queries; downstream reads every
    call record of the store once, which the caller decides to afford.
    """
    up = lineage(cache, key, depth=depth)
    return (up, lineage(cache, key, used_by=True, depth=depth)) if downstream else (up,)


def _layers(nodes: list[str], edges: set[tuple[str, str, str | None]]) -> dict[str, int]:
    """Each node's column: one right of its furthest input (longest path; cycles cannot occur)."""
    inputs: dict[str, set[str]] = defaultdict(set)
    for source, target, _ in edges:
        inputs[target].add(source)
    column: dict[str, int] = {}

    def place(node: str, seen: frozenset[str]) -> int:
        if node not in column:
            before = [place(s, seen | {node}) for s in inputs[node] if s not in seen]
            column[node] = 1 + max(before, default=-1)
        return column[node]

    for node in nodes:
        place(node, frozenset())
    return column


def _describe(graphs: tuple[Lineage, ...], node: str) -> tuple[bool, str, str]:
    for graph in graphs:
        if node in graph.calls:
            record = graph.calls[node]
            return True, clip(record.qualified_name, 28), f"call {graph.shorts.get(node, node[:8])}"
    short = next((g.shorts[node] for g in graphs if node in g.shorts), node[:8])
    summary = next((g.summaries[node] for g in graphs if node in g.summaries), "")
    return False, f"value {short}", clip(summary, 30)


def layout(graphs: tuple[Lineage, ...]) -> Layout:
    """The merged graphs placed in columns, ready for the SVG template."""
    order = list(dict.fromkeys(n for g in graphs for n in g.nodes))
    edges = {(e.source, e.target, e.name) for g in graphs for e in g.edges}
    column = _layers(order, edges)
    rows: dict[int, int] = defaultdict(int)
    where: dict[str, tuple[float, float]] = {}
    nodes = []
    for node in order:
        c = column[node]
        x, y = MARGIN + c * COLUMN, MARGIN + rows[c] * ROW
        rows[c] += 1
        where[node] = (x, y)
        call, title, subtitle = _describe(graphs, node)
        href = f"/c/{node}" if call else f"/v/{node}"
        nodes.append(Node(node, call, title, subtitle, href, x, y, node == graphs[0].root))
    links = []
    for source, target, name in sorted(edges, key=lambda e: (column[e[0]], e[1], e[2] or "")):
        (x1, y1), (x2, y2) = where[source], where[target]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        middle = (x1 + x2) / 2
        path = f"M{x1:.0f},{y1:.0f} C{middle:.0f},{y1:.0f} {middle:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        links.append(Link(path, name or "", x1 + 6, y1 - 5))  # named at the source: no two collide
    width = MARGIN * 2 + (max(column.values(), default=0)) * COLUMN + NODE_W
    height = MARGIN * 2 + max(rows.values(), default=1) * ROW
    return Layout(nodes, links, width, height)
