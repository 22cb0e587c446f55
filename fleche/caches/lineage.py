"""The lineage graph of a stored value or call, and its renderings.

A :class:`Lineage` is the answer of :func:`fleche.lineage.lineage` (and of
``cache.lineage(key)``): the calls and values linked to one root, upstream
or downstream.  It prints as a text tree, renders as a :mod:`rich` tree
(:meth:`Lineage.rich`), exports Graphviz text (:meth:`Lineage.dot`) and
plain data (:meth:`Lineage.to_dict`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..call import DigestedCall
from ..digest import Digest

if TYPE_CHECKING:
    import rich.tree

__all__ = ["PART", "Edge", "Lineage"]

#: Label of the edge from a part of a container to the container.
PART = "part"


@dataclasses.dataclass(frozen=True)
class Edge:
    """One link, in the direction data flows.

    ``value -> call`` when ``name`` is an argument name (the value was that
    argument); ``call -> value`` when ``name`` is ``None`` (the call returned
    the value); ``part -> container`` when ``name`` is :data:`PART`.
    """

    source: Digest
    target: Digest
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Lineage:
    """The calls and values linked to ``root``, upstream or downstream.

    ``calls`` holds the record of every call in the graph, by key; every
    other node is a value.  ``summaries`` describes the values that were
    loaded (the root and the inputs at the end of each branch), ``shorts``
    the shortest unambiguous prefix of every node, and ``truncated`` the
    nodes whose further links were cut by ``depth``.
    """

    root: Digest
    used_by: bool
    calls: Mapping[Digest, DigestedCall]
    edges: tuple[Edge, ...]
    summaries: Mapping[Digest, str]
    shorts: Mapping[Digest, str]
    truncated: frozenset[Digest] = frozenset()

    def __repr__(self) -> str:
        direction = "used by" if self.used_by else "provenance"
        return f"<Lineage ({direction}) of {self.root[:8]}: {len(self.calls)} calls, {len(self.edges)} links>"

    def is_call(self, node: Digest) -> bool:
        """Whether ``node`` is a call key (otherwise it is a value digest)."""
        return node in self.calls

    @property
    def nodes(self) -> list[Digest]:
        """Every node, the root first, then in the order they were reached."""
        seen = {self.root: None}
        for edge in self.edges:
            seen.setdefault(edge.source)
            seen.setdefault(edge.target)
        return list(seen)

    def children(self, node: Digest) -> list[tuple[str | None, Digest]]:
        """The nodes one step further from the root than ``node``, with the edge names."""
        return list(self._below.get(node, ()))

    @functools.cached_property
    def _below(self) -> dict[Digest, list[tuple[str | None, Digest]]]:
        # Built once, so that walking the tree is linear in the number of edges.
        below: dict[Digest, list[tuple[str | None, Digest]]] = {}
        for e in self.edges:
            start, end = (e.source, e.target) if self.used_by else (e.target, e.source)
            below.setdefault(start, []).append((e.name, end))
        return below

    def producers(self, value: Digest) -> list[Digest]:
        """Keys of the calls in the graph that returned ``value``."""
        return [e.source for e in self.edges if e.target == value and e.name is None]

    def consumers(self, value: Digest) -> list[Digest]:
        """Keys of the calls in the graph that took ``value`` as an argument."""
        return [e.target for e in self.edges if e.source == value and e.name not in (None, PART)]

    # -- rendering -----------------------------------------------------------

    def label(self, node: Digest) -> str:
        """A one-line description of a node: function and key of a call, digest and summary of a value."""
        short = self.shorts.get(node, node[:8])
        if node in self.calls:
            record = self.calls[node]
            when = datetime.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M")
            return f"{record.qualified_name} [call {short}, {when}]"
        summary = self.summaries.get(node)
        return f"value {short}" + (f" = {summary}" if summary is not None else "")

    def _edge_label(self, name: str | None, node: Digest) -> str:
        text = self.label(node)
        if name is None:
            return f"result: {text}" if self.used_by else text
        if name == PART:
            return f"part: {text}"
        return f"{name} -> {text}" if self.used_by else f"{name}: {text}"

    def outline(self) -> Iterator[tuple[int, str]]:
        """The tree as ``(depth, text)`` lines; a node met again is not expanded twice."""
        for level, text, _ in self._lines():
            yield level, text

    def _lines(self) -> Iterator[tuple[int, str, bool]]:
        """``(depth, text, last)``: ``last`` when no sibling follows the line's node."""
        expanded: set[Digest] = set()
        todo: list[tuple[int, str | None, Digest, bool]] = [(0, None, self.root, True)]
        while todo:
            level, name, node, last = todo.pop()
            text = self.label(node) if level == 0 else self._edge_label(name, node)
            below = self.children(node)
            if node in expanded and below:
                yield level, text + " (see above)", last
                continue
            expanded.add(node)
            yield level, text + (" …" if node in self.truncated else ""), last
            todo.extend(
                (level + 1, n, child, i == 0) for i, (n, child) in enumerate(reversed(below))
            )

    def __str__(self) -> str:
        out = []
        columns: list[str] = []  # per open level: "│   " while siblings follow, else blanks
        for level, text, last in self._lines():
            if level == 0:
                out.append(text)
                continue
            del columns[level - 1 :]
            out.append("".join(columns) + ("└── " if last else "├── ") + text)
            columns.append("    " if last else "│   ")
        return "\n".join(out)

    def rich(self) -> rich.tree.Tree:
        """The same tree as a :class:`rich.tree.Tree`, for a terminal."""
        from rich.markup import escape
        from rich.tree import Tree

        lines = self.outline()
        _, text = next(lines)  # the root comes first
        root = Tree(escape(text))
        branches = [root]
        for level, text in lines:
            del branches[level:]
            branches.append(branches[level - 1].add(escape(text)))
        return root

    def dot(self) -> str:
        """The graph as Graphviz ``dot`` text: boxes for calls, ellipses for values."""
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for node in self.nodes:
            if node in self.calls:
                record = self.calls[node]
                text = f"{record.qualified_name}\ncall {self.shorts.get(node, node[:8])}"
                shape = "box"
            else:
                summary = self.summaries.get(node)
                text = f"value {self.shorts.get(node, node[:8])}" + (
                    f"\n{summary}" if summary else ""
                )
                shape = "ellipse"
            style = ", penwidth=2" if node == self.root else ""
            lines.append(f'  "{node}" [label={_quote(text)}, shape={shape}{style}];')
        for edge in self.edges:
            label = "" if edge.name is None else f" [label={_quote(edge.name)}]"
            lines.append(f'  "{edge.source}" -> "{edge.target}"{label};')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the root, the calls, the values and the edges."""
        calls = [
            {
                "key": key,
                "short": self.shorts.get(key, key[:8]),
                "function": record.qualified_name,
                "arguments": dict(record.arguments),
                "result": record.result,
                "created": record.created,
            }
            for key, record in self.calls.items()
        ]
        values = [
            {
                "digest": node,
                "short": self.shorts.get(node, node[:8]),
                "summary": self.summaries.get(node),
            }
            for node in self.nodes
            if node not in self.calls
        ]
        return {
            "root": self.root,
            "direction": "used_by" if self.used_by else "provenance",
            "calls": calls,
            "values": values,
            "edges": [dataclasses.asdict(edge) for edge in self.edges],
            "truncated": sorted(self.truncated),
        }


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
