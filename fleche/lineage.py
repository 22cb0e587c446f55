"""Lineage: which calls produced a stored value, and which calls used it.

Values are stored under the digest of their content, so the result of one
call that is an argument of another links the two calls without anyone
recording the link: ``simulate(300)`` returns an array whose digest is the
``profile`` argument of ``analyse(profile)``.  :func:`lineage` follows those
links from one value or call:

- upstream (the default, *provenance*): the calls whose result the value
  is, their arguments, the calls that produced those, and so on; a
  container value with no producing call (``combine([a, b])``) is followed
  into the parts stored apart from it;
- downstream (``used_by=True``): the calls that took the value as an
  argument, their results, the calls that took those, and so on.

Upstream steps are template queries (``QueryCall(result=digest)``), which a
SQL call storage answers from its index.  Downstream needs "any argument
equal to this digest", which no template expresses, so it reads every call
record once (records only, no value) and follows an index built from them.
Expired calls are included: they still say where a value came from.

A :class:`Lineage` prints as a text tree, renders as a :mod:`rich` tree
(:meth:`Lineage.rich`), exports Graphviz text (:meth:`Lineage.dot`) and
plain data (:meth:`Lineage.to_dict`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .call import DigestedCall, QueryCall
from .digest import Digest
from .errors import CorruptEntryWarning

if TYPE_CHECKING:
    import rich.tree

    from .caches import CacheBase

__all__ = ["Edge", "Lineage", "lineage"]

#: Parts of one container followed upstream at most.
MAX_PARTS = 64
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


class _Walk:
    """The state of one lineage walk over a cache."""

    def __init__(self, cache: CacheBase, used_by: bool, depth: int | None) -> None:
        self.cache = cache
        self.used_by = used_by
        self.depth = depth
        self.calls: dict[Digest, DigestedCall] = {}
        self.edges: list[Edge] = []
        self.truncated: set[Digest] = set()
        # A store that answers templates by scanning its records (no pushdown)
        # is read once into indexes instead of once per step: a 3000-call
        # chain in memory took 7.6 s by queries, 0.1 s this way.
        calls = getattr(cache, "calls", None)  # a plain Cache; a composition answers queries itself
        self._scan_once = used_by or not getattr(calls, "supports_query_pushdown", True)
        self._indexes: (
            tuple[dict[Digest, list[tuple[Digest, str]]], dict[Digest, list[Digest]]] | None
        ) = None

    def run(self, root: Digest, record: DigestedCall | None) -> None:
        if record is not None:
            self.calls[root] = record
        seen: set[Digest] = set()
        todo: list[tuple[Digest, int]] = [(root, 0)]  # (node, calls between it and the root)
        while todo:
            node, level = todo.pop(0)
            if node in seen:
                continue
            seen.add(node)
            if node in self.calls:
                todo.extend((n, level) for n in self._call_step(node))
            elif self.depth is not None and level >= self.depth:
                if any(True for _ in self._value_step(node, record=False)):
                    self.truncated.add(node)
            else:
                # A call is one step deeper; a part of a container is the same value, taken apart.
                todo.extend(
                    (n, level + (n in self.calls)) for n in self._value_step(node, record=True)
                )

    def _call_step(self, key: Digest) -> list[Digest]:
        record = self.calls[key]
        if self.used_by:
            self.edges.append(Edge(key, record.result))
            return [record.result]
        self.edges.extend(Edge(value, key, name) for name, value in record.arguments.items())
        return list(record.arguments.values())

    def _value_step(self, value: Digest, record: bool) -> Iterator[Digest]:
        if self.used_by:
            found = self._index()[0].get(value, [])
            for key, name in found:
                if record:
                    self.edges.append(Edge(value, key, name))
                yield key
            return
        producers = self._producers(value)
        for key, call in producers.items():
            if record:
                self.calls.setdefault(key, call)
                self.edges.append(Edge(key, value))
            yield key
        if not producers:
            for part in self._parts(value):
                if record:
                    self.edges.append(Edge(part, value, PART))
                yield part

    def _producers(self, value: Digest) -> dict[Digest, DigestedCall]:
        if self._scan_once:
            return {key: self.calls[key] for key in self._index()[1].get(value, ())}
        found: dict[Digest, DigestedCall] = {}
        for call in self.cache.query(QueryCall(result=value), expired=True):
            found[call.key()] = call.digested_call
        return found

    def _parts(self, value: Digest) -> list[Digest]:
        values = getattr(
            self.cache, "values", None
        )  # a plain Cache; compositions have no parts view
        children = getattr(values, "children", None)
        if children is None:
            return []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CorruptEntryWarning)
                return list(dict.fromkeys(children(value)))[:MAX_PARTS]
        except KeyError:
            return []

    def _index(self) -> tuple[dict[Digest, list[tuple[Digest, str]]], dict[Digest, list[Digest]]]:
        """Every stored record, read once: who took each value (key, argument name), who returned it."""
        if self._indexes is None:
            by_argument: dict[Digest, list[tuple[Digest, str]]] = {}
            by_result: dict[Digest, list[Digest]] = {}
            for call in self.cache.query(expired=True):
                record = call.digested_call
                key = call.key()
                self.calls.setdefault(key, record)
                by_result.setdefault(record.result, []).append(key)
                for name, value in record.arguments.items():
                    by_argument.setdefault(value, []).append((key, name))
            self._indexes = (by_argument, by_result)
        return self._indexes


def lineage(
    cache: CacheBase,
    key: Digest | str,
    *,
    used_by: bool = False,
    depth: int | None = None,
    summaries: bool = True,
) -> Lineage:
    """The lineage of a stored value or call, named by a full or short digest.

    Parameters
    ----------
    cache
        Where to look.
    key
        A value digest or a call key, full or a unique prefix (``KeyError``
        if nothing has it, :class:`~fleche.errors.AmbiguousDigestError` if
        several things do).
    used_by
        Follow the value downstream, to the calls that used it, instead of
        upstream to the calls that produced it.
    depth
        How many calls deep to follow (``None``: to the end).
    summaries
        Load and describe the root and the values at the ends of the
        branches (function parameters, typically small); off, no value is
        read at all.
    """
    root = cache.expand(key)
    record = None
    try:
        record = cache.load(root).digested_call
    except KeyError:
        pass  # not a (live) call: a value
    walk = _Walk(cache, used_by, depth)
    walk.run(root, record)
    graph = Lineage(
        root=root,
        used_by=used_by,
        calls={},
        edges=tuple(walk.edges),
        summaries={},
        shorts={},
        truncated=frozenset(walk.truncated),
    )
    nodes = graph.nodes
    calls = {node: walk.calls[node] for node in nodes if node in walk.calls}
    graph = dataclasses.replace(graph, calls=calls)
    described: dict[Digest, str] = {}
    if summaries:
        for node in nodes:
            # The root, and upstream the inputs where each branch ends.
            leaf = not used_by and not graph.children(node) and node not in graph.truncated
            if node not in calls and (node == root or leaf):
                described[node] = _summary(cache, node)
    shorts = {node: _short(cache, node) for node in nodes}
    return dataclasses.replace(graph, summaries=described, shorts=shorts)


def _short(cache: CacheBase, node: Digest) -> str:
    try:
        return str(cache.shrink(node))
    except (KeyError, ValueError):
        return node[:8]  # not stored (any more): the usual eight characters


def _summary(cache: CacheBase, value: Digest) -> str:
    from .explain import summarize

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorruptEntryWarning)
            return summarize(cache.load_value(value))
    except KeyError:
        return "<missing>"
    except Exception as err:  # a value this process cannot load must not break the lineage
        return f"<unreadable: {type(err).__name__}>"
