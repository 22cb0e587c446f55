"""The client end of :mod:`fleche.remote`: a cache answered by a server over a pair of streams.

:class:`RemoteCache` does the handshake, sends one request at a time,
re-opens a dropped connection once, pages through queries and refuses
writes to a read-only server without asking it.  A subclass only says how
to reach the server (:meth:`RemoteCache.connect`), e.g.
:class:`fleche.remote.SshCache`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import threading
import warnings
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from ._remote_protocol import (
    PROTOCOL,
    decode_error,
    dumps_value,
    read_json,
    read_message,
    skip_to_magic,
    write_json,
    write_message,
)
from ._version import __version__
from .caches import CacheBase
from .caches.base import sealed
from .call import Call, DigestedCall, LazyCall, PreparedCall, QueryCall
from .digest import Digest
from .errors import FlecheError, FlecheWarning, ReadOnlyError
from .expiry import Duration, seconds
from .query import QueryIterator

__all__ = ["Link", "RemoteCache", "RemoteConnectionError", "RemoteVersionWarning"]


_STATES_LOCK = threading.Lock()


class RemoteConnectionError(FlecheError, RuntimeError):
    """The remote store cannot be reached, or its fleche cannot talk to this one."""


class RemoteVersionWarning(FlecheWarning):
    """The two ends run different fleche versions (speaking the same protocol)."""


@dataclasses.dataclass
class Link:
    """One open connection to a server: the streams both ways and how to end it.

    ``diagnose()`` returns what may explain a failure (e.g. ssh's error output);
    ``details`` are added to :meth:`RemoteCache.info`.
    """

    reader: BinaryIO
    writer: BinaryIO
    close: Callable[[], None]
    diagnose: Callable[[], str] = str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class _State:
    """The connection of one process, guarded by one lock: one request at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.link: Link | None = None
        self.hello: dict[str, Any] = {}
        self.generation = 0
        self.closing: list[int] = []


class _RemoteValues:
    """What a :class:`LazyCall` of a remote store loads its values through."""

    def __init__(self, cache: RemoteCache) -> None:
        self.cache = cache

    def load(self, key: Digest | str) -> Any:
        return self.cache.load_value(key)


class RemoteCache(CacheBase):
    """A cache answered by :func:`serve` at the other end of a :class:`Link`.

    Subclasses say how to reach the server (:meth:`connect`); everything
    else — the handshake, requests, reconnecting, paging — is here.
    """

    page_size: int = 256

    @abstractmethod
    def connect(self) -> Link:
        """Start (or reach) a server and return the streams to it."""

    # -- the connection -----------------------------------------------------

    def _state(self) -> _State:
        state = vars(self).get("_remote_state")
        if state is None or state.pid != os.getpid():  # new, or a forked child's: not its pipes
            with _STATES_LOCK:
                state = vars(self).get("_remote_state")
                if state is None or state.pid != os.getpid():
                    state = vars(self)["_remote_state"] = _State()
        return state

    def _open(self, state: _State) -> Link:
        link = self.connect()
        try:
            skip_to_magic(link.reader)
            write_json(link.writer, {"protocol": PROTOCOL, "fleche": __version__})
            server = read_json(link.reader)
        except (OSError, EOFError) as err:
            detail = link.diagnose().strip()
            link.close()
            raise RemoteConnectionError(
                f"could not start the fleche server of {self}: {err}"
                + (f"; it said: {detail}" if detail else "")
            ) from err
        problem = server.get("error") or _skew(server)
        if problem:
            link.close()
            raise RemoteConnectionError(f"{self}: {problem}")
        if server.get("fleche") != __version__:
            warnings.warn(
                f"{self} runs fleche {server.get('fleche')}, this process {__version__} "
                f"(same protocol {PROTOCOL}); install the same version on both ends",
                RemoteVersionWarning,
                stacklevel=5,
            )
        state.link, state.hello = link, server
        state.generation += 1
        state.closing.clear()
        return link

    def _drop(self, state: _State) -> None:
        link, state.link = state.link, None
        if link is not None:
            link.close()

    def _request(self, op: str, values: Sequence[bytes] = (), **fields: Any) -> tuple[Any, list]:
        """One request and its reply: the answer and the values sent with it (pickled).

        A connection that fails is re-opened and the request sent once more;
        a second failure is :class:`RemoteConnectionError`.
        """
        state = self._state()
        with state.lock:
            for attempt in range(2):
                link = state.link or self._open(state)
                closing, state.closing = state.closing, []
                try:
                    write_message(link.writer, {"op": op, "closing": closing, **fields}, values)
                    reply, blobs = read_message(link.reader)
                except (OSError, EOFError, ValueError) as err:
                    detail = link.diagnose().strip()
                    self._drop(state)
                    if attempt:
                        raise RemoteConnectionError(
                            f"lost the connection to {self} twice: {err}"
                            + (f"; {detail}" if detail else "")
                        ) from err
                except BaseException:
                    self._drop(state)  # interrupted mid-message: the stream is out of step
                    raise
                else:
                    break
        if "error" in reply:
            raise decode_error(reply, str(self))
        return reply["answer"], blobs

    def _server(self) -> dict[str, Any]:
        state = self._state()
        if state.link is None:
            with state.lock:
                if state.link is None:
                    self._open(state)
        return state.hello

    def reconnect(self) -> None:
        """Close the connection and open a new one now."""
        state = self._state()
        with state.lock:
            self._drop(state)
            self._open(state)

    def close(self) -> None:
        """Close the connection; the next operation opens a new one."""
        state = self._state()
        with state.lock:
            self._drop(state)

    def __enter__(self) -> RemoteCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self, *, refresh: bool = True) -> dict[str, Any]:
        """What the server says about itself and its store.

        Its fleche, protocol and Python versions, host, cache, ``read_only``,
        ``persistent`` and, with ``refresh`` (a round trip), its open queries
        and how many records it has sent; plus details of this end's link.
        """
        info = dict(self._request("info")[0] if refresh else self._server())
        link = self._state().link
        return {**info, **(link.details if link is not None else {})}

    # -- capabilities -------------------------------------------------------

    @property
    def read_only(self) -> bool:
        """Whether the remote store refuses writes (known from the handshake)."""
        return bool(self._server()["read_only"])

    @property
    def persistent(self) -> bool:
        # docstring inherited
        return bool(self._server()["persistent"])

    def leases(self) -> None:
        """No cross-process leases here: the server's store coordinates its own writers."""
        return None

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"cannot {what}: the remote cache {self} is read-only "
                f"({self._server().get('cache')}); write to a writable store instead"
            )

    # -- the cache interface --------------------------------------------------

    def now(self) -> float:
        # docstring inherited
        return self._request("now")[0]

    def save(self, call: Call | LazyCall) -> Digest:
        # docstring inherited
        self._writable("store a call")
        if isinstance(call, LazyCall):
            record = call.digested_call
            values = {record.arguments[name]: call.arguments[name] for name in record.arguments}
        else:
            record = call.digested()
            values = {record.arguments[name]: v for name, v in call.arguments.items()}
        values[record.result] = call.result
        blobs = [dumps_value(v) for v in values.values()]
        return self._request("save", blobs, record=record, digests=list(values))[0]

    def prepare(
        self,
        record: DigestedCall | Call,
        arguments: Mapping[str, Any] | None = None,
        key: Digest | None = None,
    ) -> PreparedCall:
        """Store the arguments of a call about to run and seal its key.

        ``prepare(record, arguments, key)``, or ``prepare(call)`` with a plain
        :class:`~fleche.call.Call` (the 0.22 form).
        """
        record, arguments, key = sealed(record, arguments, key)
        self._writable(f"store the call {key[:12]}")
        blobs = [dumps_value(v) for v in arguments.values()]
        handle = self._request("prepare", blobs, names=list(arguments), record=record, key=key)[0]
        return PreparedCall(record, key, self, (handle, self._state().generation))

    def _same_connection(self, prepared: PreparedCall) -> int | None:
        """The server's handle of a prepared call, if it was made on the connection open now."""
        handle, generation = prepared.hold
        return handle if self._state().generation == generation else None

    def _commit_prepared(
        self, prepared: PreparedCall, result: Any, metadata: Mapping[str, Any]
    ) -> Digest:
        # docstring inherited
        fields = {
            "handle": self._same_connection(prepared),
            "record": prepared.record,
            "key": prepared.key,
        }
        answer = self._request("commit", [dumps_value(result)], metadata=dict(metadata), **fields)
        prepared.hold = (None, None)  # finished on the server: nothing left to abandon there
        return answer[0]

    def _release_prepared(self, prepared: PreparedCall) -> None:
        # docstring inherited
        handle, _ = prepared.hold
        if handle is not None and self._same_connection(prepared) is not None:
            self._request("abandon", handle=handle)

    def load(self, key: Digest | str) -> LazyCall:
        # docstring inherited
        return LazyCall(self._request("load", key=key)[0], _RemoteValues(self))  # type: ignore[arg-type]

    def load_result(self, key: Digest | str) -> Any:
        # docstring inherited
        return pickle.loads(self._request("load_result", key=key)[1][0])

    def load_value(self, key: Digest | str) -> Any:
        # docstring inherited
        return pickle.loads(self._request("load_value", key=key)[1][0])

    def contains(self, key: Digest | str) -> bool:
        # docstring inherited
        return self._request("contains", key=key)[0]

    def evict(self, key: Digest | str) -> None:
        # docstring inherited
        self._writable(f"evict {str(key)[:12]}")
        self._request("evict", key=key)

    def expand(self, key: Digest | str) -> Digest:
        # docstring inherited
        return self._request("expand", key=key)[0]

    def shrink(self, *keys: Digest | str) -> Digest | tuple[Digest, ...]:
        """The shortest prefix naming each key (a tuple for several), in one round trip."""
        prefixes = self._request("shrink", keys=list(keys))[0]
        return prefixes[0] if len(keys) == 1 else tuple(prefixes)

    def referenced(self) -> set[Digest]:
        # docstring inherited
        return self._request("referenced")[0]

    def gc(self, dry_run: bool = False, *, grace: Duration | None = None) -> Collection[Digest]:
        """Remove values no stored call refers to, on the remote; returns their keys as it does."""
        if not dry_run:
            self._writable("collect garbage (dry_run=True only reports)")
        grace = None if grace is None else seconds(grace, "grace")
        return self._request("gc", dry_run=dry_run, grace=grace)[0]

    def query(
        self, template: QueryCall | None = None, *, expired: bool = False, **fields: Any
    ) -> QueryIterator:
        """Stored calls matching ``template``, fetched :attr:`page_size` records at a time.

        Keywords are :class:`~fleche.call.QueryCall` fields (the 0.22 form).
        """
        if fields:
            template = dataclasses.replace(template, **fields) if template else QueryCall(**fields)
        digested = (template or QueryCall()).digested()  # values stay here; digests travel
        return QueryIterator(lambda: self._pages(digested, expired), self)

    def _pages(self, template: QueryCall, expired: bool) -> Iterator[LazyCall]:
        state, values = self._state(), _RemoteValues(self)
        page = self._request("query", template=template, expired=expired, size=self.page_size)[0]
        cursor, generation = page["cursor"], state.generation
        try:
            while True:
                for record in page["records"]:
                    yield LazyCall(record, values)  # type: ignore[arg-type]
                if page["done"]:
                    return
                try:
                    if state.generation != generation:
                        raise LookupError("the server no longer has this query")
                    page = self._request("next", cursor=cursor, size=self.page_size)[0]
                except LookupError as err:
                    raise RemoteConnectionError(
                        f"the connection to {self} was re-opened while a query was read; "
                        "iterate the query again"
                    ) from err
        finally:
            if not page["done"] and state.generation == generation:
                state.closing.append(cursor)  # closed with the next request


def _skew(server: Mapping[str, Any]) -> str | None:
    if server.get("protocol") == PROTOCOL:
        return None
    return (
        f"the server speaks fleche remote protocol {server.get('protocol')} "
        f"(fleche {server.get('fleche')}), this client {PROTOCOL} (fleche {__version__}); "
        "install the same fleche version on both machines"
    )
