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

The walk uses only the cache interface (``expand``, ``load``, ``query``,
``shrink``, ``load_value``), so every cache and composition answers it.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

from ..call import DigestedCall, QueryCall
from ..digest import Digest
from ..errors import CorruptEntryWarning
from .lineage import PART, Edge, Lineage
from .messages import summarize

__all__ = ["lineage"]

#: Parts of one container followed upstream at most.
MAX_PARTS = 64


class _Walk:
    """The state of one lineage walk over a cache."""

    def __init__(self, cache: Any, used_by: bool, depth: int | None) -> None:
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
    cache: Any,
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
        Where to look: any cache (a :class:`~fleche.caches.CacheBase`, or
        an object with its interface).
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


def _short(cache: Any, node: Digest) -> str:
    try:
        return str(cache.shrink(node))
    except (KeyError, ValueError):
        return node[:8]  # not stored (any more): the usual eight characters


def _summary(cache: Any, value: Digest) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorruptEntryWarning)
            return summarize(cache.load_value(value))
    except KeyError:
        return "<missing>"
    except Exception as err:  # a value this process cannot load must not break the lineage
        return f"<unreadable: {type(err).__name__}>"
