"""The server end of :mod:`fleche.remote`: one cache answered over a pair of byte streams.

``fleche remote --serve`` runs :func:`serve` on its standard input and
output, usually started by :class:`fleche.remote.SshCache` through ssh.
Requests are answered one at a time, in order.  Open queries are cursors
the client pulls a page at a time; prepared calls wait for their commit.
Both are dropped when the connection ends.
"""

from __future__ import annotations

import itertools
import pickle
import platform
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, BinaryIO

from ._remote_protocol import (
    MAGIC,
    PROTOCOL,
    dumps_value,
    encode_error,
    read_json,
    read_message,
    write_json,
    write_message,
)
from ._version import __version__
from .caches import CacheBase
from .call import DigestedCall, LazyCall, PreparedCall

__all__ = ["hello", "serve"]

#: Open query cursors kept per connection; the oldest is dropped beyond this.
MAX_CURSORS = 64


def hello(cache: CacheBase, cache_name: str | None) -> dict[str, Any]:
    """What the server says about itself in the handshake and in ``info``."""
    return {
        "fleche": __version__,
        "protocol": PROTOCOL,
        "python": platform.python_version(),
        "host": platform.node(),
        "cache": str(cache),
        "cache_name": cache_name,
        "read_only": cache.read_only,
        "persistent": cache.persistent,
    }


class _Values:
    """Values that came with a request, by digest: what a ``LazyCall`` loads from."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self._blobs = blobs

    def load(self, key: str) -> Any:
        return pickle.loads(self._blobs[key])


class _Session:
    """The state of one connection: its cache, open cursors and prepared calls."""

    def __init__(self, cache: CacheBase, cache_name: str | None) -> None:
        self.cache = cache
        self.cache_name = cache_name
        self.cursors: OrderedDict[int, Iterator[LazyCall]] = OrderedDict()
        self.prepared: dict[int, PreparedCall] = {}
        self.ids = itertools.count(1)
        self.records_sent = 0
        self.requests = 0

    def close(self) -> None:
        for prepared in self.prepared.values():
            prepared.abandon()
        self.prepared.clear()
        self.cursors.clear()

    def handle(self, op: str, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        """The answer to one request and the values (pickled) sent with it."""
        self.requests += 1
        for cursor in request.get("closing", ()):
            self.cursors.pop(cursor, None)
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"unknown remote operation {op!r}")
        return handler(request, blobs)

    # -- operations: each returns (answer, value blobs) ---------------------

    def op_info(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        info = hello(self.cache, self.cache_name)
        info.update(
            open_queries=len(self.cursors), records_sent=self.records_sent, requests=self.requests
        )
        return info, []

    def op_now(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.now(), []

    def op_save(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        record: DigestedCall = request["record"]
        values = _Values(dict(zip(request["digests"], blobs, strict=True)))
        return self.cache.save(LazyCall(record, values)), []  # type: ignore[arg-type]

    def op_prepare(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        arguments = {
            name: pickle.loads(blob) for name, blob in zip(request["names"], blobs, strict=True)
        }
        prepared = self.cache.prepare(request["record"], arguments, request["key"])
        handle = next(self.ids)
        self.prepared[handle] = prepared
        return handle, []

    def op_commit(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        prepared = self.prepared.pop(request["handle"], None)
        if prepared is None:  # prepared on an earlier connection: its arguments are stored
            prepared = self.cache.prepare(request["record"], {}, request["key"])
        return prepared.commit(pickle.loads(blobs[0]), request["metadata"]), []

    def op_abandon(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        prepared = self.prepared.pop(request["handle"], None)
        if prepared is not None:
            prepared.abandon()
        return None, []

    def op_load(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.load(request["key"]).digested_call, []

    def op_load_result(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return None, [dumps_value(self.cache.load_result(request["key"]))]

    def op_load_value(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return None, [dumps_value(self.cache.load_value(request["key"]))]

    def op_contains(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.contains(request["key"]), []

    def op_evict(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.evict(request["key"]), []

    def op_expand(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.expand(request["key"]), []

    def op_shrink(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return [self.cache.shrink(key) for key in request["keys"]], []

    def op_referenced(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.referenced(), []

    def op_gc(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        return self.cache.gc(request["dry_run"], grace=request["grace"]), []

    def op_query(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        calls = iter(self.cache.query(request["template"], expired=request["expired"]))
        cursor = next(self.ids)
        self.cursors[cursor] = calls
        if len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return {"cursor": cursor, **self._page(cursor, request["size"])}, []

    def op_next(self, request: dict[str, Any], blobs: list[bytes]) -> tuple[Any, list]:
        if request["cursor"] not in self.cursors:
            raise LookupError("this query is no longer open on the server; iterate it again")
        return self._page(request["cursor"], request["size"]), []

    def _page(self, cursor: int, size: int) -> dict[str, Any]:
        records = [call.digested_call for call in itertools.islice(self.cursors[cursor], size)]
        done = len(records) < size
        if done:
            del self.cursors[cursor]
        self.records_sent += len(records)
        return {"records": records, "done": done}


def serve(
    input_stream: BinaryIO,
    output_stream: BinaryIO,
    cache: CacheBase,
    *,
    cache_name: str | None = None,
) -> None:
    """Answer requests for ``cache`` read from ``input_stream`` until it ends.

    Writes :data:`~fleche._remote_protocol.MAGIC`, then shakes hands: a client
    speaking another protocol version is told so and the server returns.
    Every request gets one reply; an exception raised by the cache is sent
    back (its kind and message) instead of ending the server.
    """
    output_stream.write(MAGIC)
    output_stream.flush()
    try:
        client = read_json(input_stream)
    except EOFError:
        return
    info = hello(cache, cache_name)
    if client.get("protocol") != PROTOCOL:
        info["error"] = (
            f"the client speaks fleche remote protocol {client.get('protocol')} "
            f"(fleche {client.get('fleche')}), this server {PROTOCOL} (fleche {__version__}) "
            f"at {sys.executable}; install the same fleche version on both machines"
        )
    write_json(output_stream, info)
    if "error" in info:
        return
    session = _Session(cache, cache_name)
    try:
        while True:
            try:
                request, blobs = read_message(input_stream)
            except EOFError:
                return
            except Exception as err:  # the stream is out of step: say why and hang up
                write_message(output_stream, encode_error(err))
                return
            try:
                answer, values = session.handle(request.get("op", ""), request, blobs)
            except Exception as err:
                write_message(output_stream, encode_error(err))
                continue
            write_message(output_stream, {"answer": answer}, values)
    finally:
        session.close()
