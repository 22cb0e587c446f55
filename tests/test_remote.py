"""The SSH remote cache: the protocol over pipes, and SshCache against a real sshd.

The SSH tests need a server: ``eval "$(.ci/start-sshd)"`` exports
``FLECHE_TEST_SSH_HOST`` and ``FLECHE_TEST_SSH_OPTIONS``; without them they
skip.  The remote side runs this checkout's fleche (``PYTHONPATH``).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import itertools
import json
import os
import pickle
import shlex
import shutil
import signal
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fleche import (
    AmbiguousDigestError,
    Cache,
    CacheWarning,
    Call,
    DigestedCall,
    QueryCall,
    ReadOnlyCache,
    ReadOnlyError,
    cache,
    digest,
    fleche,
    from_config,
    open_cache,
)
from fleche.cli import main
from fleche.remote import (
    Link,
    RemoteCache,
    RemoteConnectionError,
    RemoteVersionWarning,
    SshCache,
    serve,
)
from fleche.storage import CallMemory, ValueMemory

CHECKOUT = Path(__file__).resolve().parent.parent
MIB = 1 << 20

# -- the protocol over pipes, without ssh ---------------------------------------------


class _Recording:
    """A write stream that remembers the size of every write (the frames on the wire)."""

    def __init__(self, stream: Any, sizes: list[int]) -> None:
        self.stream, self.sizes = stream, sizes

    def write(self, data: bytes) -> int:
        self.sizes.append(len(data))
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PipeCache(RemoteCache):
    """The client talking to :func:`serve` in a thread over two ``os.pipe`` pairs."""

    def __init__(self, store: Any, *, page_size: int = 256, sizes: list[int] | None = None):
        self.store, self.page_size, self.sizes = store, page_size, sizes

    def __str__(self) -> str:
        return "PipeCache"

    def connect(self) -> Link:
        to_server, to_client = os.pipe(), os.pipe()
        server_in, server_out = os.fdopen(to_server[0], "rb"), os.fdopen(to_client[1], "wb")
        reader, writer = os.fdopen(to_client[0], "rb"), os.fdopen(to_server[1], "wb")
        if self.sizes is not None:
            server_out, writer = _Recording(server_out, self.sizes), _Recording(writer, self.sizes)

        def run() -> None:
            with server_in, server_out:
                serve(server_in, server_out, self.store, cache_name="pipes")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def close() -> None:
            writer.close()
            thread.join(10)
            reader.close()

        return Link(reader, writer, close)


@pytest.fixture
def store() -> Cache:
    return Cache(ValueMemory(), CallMemory())


@pytest.fixture
def pipes(store: Cache):
    remote = PipeCache(store)
    yield remote
    remote.close()


def exercise(remote: RemoteCache, server_store: Any) -> None:
    """Every operation of the cache interface through ``remote``, checked against the store it serves."""
    call = Call(name="f", module="m", arguments={"x": 1}, result=[1, 2])
    key = remote.save(call)
    assert key == call.key()
    assert remote.contains(key) and server_store.contains(key)
    assert remote.load_result(key) == [1, 2]
    lazy = remote.load(key[:10])
    assert lazy.arguments["x"] == 1 and lazy.result == [1, 2]
    assert remote.load_value(lazy.digested_call.result) == [1, 2]
    assert remote.expand(key[:8]) == key
    short = remote.shrink(key)
    assert 4 <= len(short) < len(key) and remote.expand(short) == key
    assert remote.shrink(key, lazy_result := lazy.digested_call.result) == (
        short,
        server_store.shrink(lazy_result),
    )
    assert remote.query(QueryCall(name="f", arguments={"x": 1})).only().key() == key
    assert remote.query(name="f", arguments={"x": 1}).only().key() == key
    assert not remote.query(QueryCall(name="f", arguments={"x": 2})).any()
    assert set(lazy.digested_call.values()) <= remote.referenced()
    assert abs(remote.now() - time.time()) < 60

    elsewhere = Cache(ValueMemory(), CallMemory())
    assert remote.transfer(elsewhere) == 1
    assert elsewhere.load_result(key) == [1, 2]
    assert elsewhere.transfer(remote) == 0  # already there
    elsewhere.save(Call(name="h", module="m", arguments={"y": "z"}, result="back"))
    assert elsewhere.transfer(remote) == 1
    assert remote.query(QueryCall(name="h")).only().result == "back"

    plain = Call(name="p", module="m", arguments={"b": 7})
    assert remote.prepare(plain).commit(8) == plain.key()  # the 0.22 form: prepare(call)
    assert remote.load_result(plain.key()) == 8
    planned = Call(name="g", module="m", arguments={"a": 5})
    record = DigestedCall(name="g", module="m", arguments={"a": digest(5)})
    prepared = remote.prepare(record, {"a": 5}, planned.key())
    assert prepared.commit(25, {"tags": {"t": 1}}) == planned.key()
    assert server_store.load(planned.key()).result == 25
    assert remote.load(planned.key()).metadata["tags"] == {"t": 1}
    dropped = Call(name="g", module="m", arguments={"a": 6})
    with remote.prepare(
        DigestedCall(name="g", module="m", arguments={"a": digest(6)}), {"a": 6}, dropped.key()
    ):
        pass  # abandoned
    assert not remote.contains(dropped.key())

    remote.evict(key)
    assert not remote.contains(key) and not server_store.contains(key)
    with pytest.raises(KeyError):
        remote.load_result(key)
    try:
        server_store.evict(key)
    except KeyError:  # the remote does what its store does with a key it does not hold
        with pytest.raises(KeyError):
            remote.evict(key)
    else:
        remote.evict(key)
    garbage = remote.gc(dry_run=True, grace=0)
    assert lazy.digested_call.result in garbage
    assert remote.load_value(lazy.digested_call.result) == [1, 2]  # a dry run removes nothing
    assert set(remote.gc(grace=0)) == set(garbage)
    with pytest.raises(KeyError):
        remote.load_value(lazy.digested_call.result)


def decorated_end_to_end(remote: RemoteCache, server_store: Any, again: RemoteCache) -> None:
    """A miss computes here and stores there; a hit (also over a new connection) loads from there."""
    computed = []

    @fleche
    def square(x: int) -> int:
        computed.append(x)
        return x * x

    with cache(remote):
        assert square(4) == 16
        assert square(4) == 16
        assert square.contains(4)
        key = square.digest(4)  # outside, it would pin the default cache as the active one
    assert computed == [4]
    assert server_store.load_result(key) == 16
    with cache(again):
        assert square(4) == 16
        assert square.query().only().result == 16
    assert computed == [4]


def save_many(target: Any, n: int) -> None:
    """``n`` calls of a function ``many`` stored in ``target`` (a local or a remote cache)."""
    for i in range(n):
        target.save(Call(name="many", module="m", arguments={"i": i}, result=i))


def started(remote: RemoteCache) -> Any:
    """A query of every ``many`` call whose first call has been read."""
    calls = iter(remote.query(QueryCall(name="many")))
    next(calls)
    return calls


def test_the_whole_cache_interface_over_pipes(pipes: PipeCache, store: Cache) -> None:
    exercise(pipes, store)


def test_decorated_functions_over_pipes(pipes: PipeCache, store: Cache) -> None:
    with PipeCache(store) as again:
        decorated_end_to_end(pipes, store, again)


def test_a_query_arrives_a_page_at_a_time(store: Cache) -> None:
    save_many(store, 40)
    remote = PipeCache(store, page_size=7)
    before = remote.info()["records_sent"]
    calls = iter(remote.query(QueryCall(name="many")))
    first = next(calls)
    assert first.digested_call.name == "many"
    info = remote.info()
    assert info["records_sent"] - before == 7 and info["open_queries"] == 1
    assert 1 + sum(1 for _ in calls) == 40
    info = remote.info()
    assert info["records_sent"] - before == 40 and info["open_queries"] == 0

    abandoned = started(remote)
    abandoned.close()  # the server forgets it with the next request
    remote.info()
    assert remote.info()["open_queries"] == 0
    remote.close()


def test_a_query_read_across_a_new_connection_says_so(store: Cache) -> None:
    save_many(store, 5)
    remote = PipeCache(store, page_size=2)
    calls = started(remote)
    remote.reconnect()
    with pytest.raises(RemoteConnectionError, match="iterate the query again"):
        list(calls)
    assert remote.query(QueryCall(name="many")).count() == 5
    remote.close()


def test_large_values_move_in_frames_of_one_mebibyte(store: Cache) -> None:
    sizes: list[int] = []
    remote = PipeCache(store, sizes=sizes)
    big = os.urandom(20 * MIB + 123)
    key = remote.save(Call(name="big", module="m", arguments={"n": 1}, result=big))
    assert store.load_result(key) == big
    assert remote.load_result(key) == big
    assert max(sizes) <= MIB
    assert sum(1 for size in sizes if size == MIB) >= 40  # 20 MiB each way
    remote.close()


def test_a_read_only_remote_refuses_writes_without_asking(store: Cache) -> None:
    kept = Call(name="kept", module="m", arguments={"x": 1}, result="yes")
    store.save(kept)
    remote = PipeCache(ReadOnlyCache(store))
    assert remote.read_only
    before = remote.info()["requests"]
    record = DigestedCall(name="g", module="m", arguments={"a": digest(5)})
    with pytest.raises(ReadOnlyError, match="read-only"):
        remote.save(Call(name="g", module="m", arguments={"a": 5}, result=1))
    with pytest.raises(ReadOnlyError):
        remote.prepare(record, {"a": 5}, Call(name="g", module="m", arguments={"a": 5}).key())
    with pytest.raises(ReadOnlyError):
        remote.evict(kept.key())
    with pytest.raises(ReadOnlyError):
        remote.gc()
    assert remote.info()["requests"] == before + 1  # only the info itself reached the server
    assert remote.load_result(kept.key()) == "yes"
    assert not remote.gc(dry_run=True, grace=0)

    @fleche
    def double(x: int) -> int:
        return 2 * x

    with cache(remote), pytest.warns(CacheWarning, match="read-only"):
        assert double(3) == 6
        key = double.digest(3)
    assert not store.contains(key)
    remote.close()


def test_errors_of_the_server_are_raised_as_themselves(pipes: PipeCache, store: Cache) -> None:
    with pytest.raises(KeyError, match="abcdef"):
        pipes.load("abcdef")
    with pytest.raises(KeyError):
        pipes.expand("abcdef")
    assert not pipes.contains("abcdef")
    seen: dict[str, int] = {}
    for i in itertools.count():  # two values whose digests share 4 characters
        prefix = digest(i)[:4]
        if prefix in seen:
            break
        seen[prefix] = i
    for value in (i, seen[prefix]):
        store.values.save(value, digest(value))
    with pytest.raises(AmbiguousDigestError) as raised:
        pipes.expand(prefix)
    assert sorted(raised.value.candidates) == sorted([digest(i), digest(seen[prefix])])


def test_records_with_plain_and_numpy_metadata_travel(pipes: PipeCache) -> None:
    numpy = pytest.importorskip("numpy")
    metadata = {
        "run": {"loss": numpy.float64(0.25), "shape": (3, 4), "when": datetime.date(2024, 1, 2)}
    }
    key = pipes.save(Call(name="f", module="m", arguments={}, result=None, metadata=metadata))
    assert pipes.load(key).metadata == metadata
    assert pipes.query(QueryCall(name="f")).only().metadata == metadata


def test_threads_share_one_connection(pipes: PipeCache) -> None:
    keys = [pipes.save(Call(name="t", module="m", arguments={"i": i}, result=i)) for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(pipes.load_result, keys * 5))
    assert results == list(range(20)) * 5


def _frame(data: bytes) -> bytes:
    return struct.pack(">BI", 1, len(data)) + data


def _read_frame(stream: Any) -> bytes:
    flag, size = struct.unpack(">BI", stream.read(5))
    assert flag == 1
    return stream.read(size)


@pytest.fixture
def raw_server(store: Cache):
    """``serve`` in a thread; the test speaks the wire format by hand."""
    to_server, to_client = os.pipe(), os.pipe()
    server_in, server_out = os.fdopen(to_server[0], "rb"), os.fdopen(to_client[1], "wb")
    reader, writer = os.fdopen(to_client[0], "rb"), os.fdopen(to_server[1], "wb")

    def run() -> None:
        with server_in, server_out:
            serve(server_in, server_out, store)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert reader.readline().endswith(b"fleche-remote\n")
    yield reader, writer, thread
    writer.close()
    thread.join(10)
    reader.close()


def test_serve_refuses_a_client_of_another_protocol(raw_server) -> None:
    reader, writer, thread = raw_server
    writer.write(_frame(json.dumps({"protocol": 999, "fleche": "9.9"}).encode()))
    writer.flush()
    answer = json.loads(_read_frame(reader))
    assert answer["protocol"] != 999
    assert "protocol 999" in answer["error"] and "same fleche version" in answer["error"]
    thread.join(10)
    assert not thread.is_alive()


class _Forged:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


def test_serve_unpickles_no_code_in_control_messages(raw_server, tmp_path: Path) -> None:
    reader, writer, thread = raw_server
    writer.write(_frame(json.dumps({"protocol": 1, "fleche": "x"}).encode()))
    writer.flush()
    assert "error" not in json.loads(_read_frame(reader))
    marker = tmp_path / "pwned"
    forged = pickle.dumps({"op": "contains", "key": _Forged(marker), "values": 0})
    writer.write(_frame(forged))
    writer.flush()
    answer = pickle.loads(_read_frame(reader))
    assert answer["error"] == "UnpicklingError" and "may not contain" in answer["message"]
    thread.join(10)
    assert not thread.is_alive()  # out of step: the server hangs up
    assert not marker.exists()


def test_fleche_remote_wants_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["remote", "--cache", "memory"]) == 2
    assert "--serve" in capsys.readouterr().err


def test_a_configuration_table_of_type_ssh_is_an_ssh_cache() -> None:
    built = from_config(
        {"type": "ssh", "host": "cluster", "cache_name": "project", "ssh_options": ["-p", "2222"]}
    )
    assert built == SshCache("cluster", cache_name="project", ssh_options=("-p", "2222"))
    assert from_config({"type": "ssh", "host": "h", "read_only": True}).read_only
    with pytest.raises(ValueError, match="unknown cache type 'scp'"):
        from_config({"type": "scp", "host": "h"})
    assert pickle.loads(pickle.dumps(built)) == built
    assert from_config(built.to_config()) == built
    assert built.to_config() == {
        "type": "ssh",
        "host": "cluster",
        "cache_name": "project",
        "ssh_options": ["-p", "2222"],
    }
    with pytest.raises(ValueError, match="no setting 'hots'"):
        from_config({"type": "ssh", "hots": "cluster"})
    assert SshCache("h", ssh_options="-p 22 -i key").ssh_options == ("-p", "22", "-i", "key")


# -- against a real sshd ------------------------------------------------------------------


@pytest.fixture
def ssh():
    """A maker of SshCaches reaching this machine's test sshd, running this checkout's fleche."""
    host = os.environ.get("FLECHE_TEST_SSH_HOST")
    if not host:
        pytest.skip("FLECHE_TEST_SSH_HOST is not set: start a server with .ci/start-sshd")
    made: list[SshCache] = []

    def make(
        *, pythonpath: Path = CHECKOUT, setup: tuple[str, ...] = (), **options: Any
    ) -> SshCache:
        options.setdefault("python", os.path.realpath(sys.executable))
        remote = SshCache(
            host,
            ssh_options=os.environ.get("FLECHE_TEST_SSH_OPTIONS", ""),
            setup_commands=(f"export PYTHONPATH={shlex.quote(str(pythonpath))}", *setup),
            **options,
        )
        made.append(remote)
        return remote

    yield make
    for remote in made:
        remote.close()


def test_the_whole_cache_interface_over_ssh(ssh, tmp_path: Path) -> None:
    remote = ssh(cache_name=str(tmp_path / "store"))
    info = remote.info()
    assert info["protocol"] == 1 and info["cache_name"] == str(tmp_path / "store")
    exercise(remote, open_cache(str(tmp_path / "store")))


def test_decorated_functions_over_ssh(ssh, tmp_path: Path) -> None:
    where = str(tmp_path / "store")
    decorated_end_to_end(ssh(cache_name=where), open_cache(where), ssh(cache_name=where))


def test_a_query_over_ssh_streams(ssh, tmp_path: Path) -> None:
    remote = ssh(cache_name=str(tmp_path / "store"), page_size=5)
    save_many(remote, 30)
    calls = started(remote)
    assert remote.info()["records_sent"] == 5
    assert len(list(calls)) == 29
    assert sorted(c.result for c in remote.query(QueryCall(name="many"))) == list(range(30))


def test_a_20_mb_value_over_ssh(ssh, tmp_path: Path) -> None:
    remote = ssh(cache_name=str(tmp_path / "store"))
    big = os.urandom(20 * MIB)
    key = remote.save(Call(name="big", module="m", arguments={}, result=big))
    assert remote.load_result(key) == big


def test_ssh_reconnects_once_then_gives_up(ssh, tmp_path: Path) -> None:
    gone = tmp_path / "server-gone"
    remote = ssh(cache_name=str(tmp_path / "store"), setup=(f"test ! -e {shlex.quote(str(gone))}",))
    key = remote.save(Call(name="f", module="m", arguments={"x": 1}, result=1))
    first = remote.info()["ssh_pid"]
    os.kill(first, signal.SIGKILL)
    assert remote.load_result(key) == 1  # re-opened the connection
    second = remote.info()["ssh_pid"]
    assert second != first
    gone.touch()
    os.kill(second, signal.SIGKILL)
    with pytest.raises(RemoteConnectionError, match="could not start"):
        remote.load_result(key)
    gone.unlink()
    remote.reconnect()
    assert remote.contains(key)


def test_a_query_cut_by_a_dropped_connection_says_so(ssh, tmp_path: Path) -> None:
    remote = ssh(cache_name=str(tmp_path / "store"), page_size=2)
    save_many(remote, 5)
    calls = started(remote)
    os.kill(remote.info()["ssh_pid"], signal.SIGKILL)
    with pytest.raises(RemoteConnectionError, match="iterate the query again"):
        list(calls)
    assert remote.query(QueryCall(name="many")).count() == 5


def test_a_forked_child_opens_its_own_connection(ssh, tmp_path: Path) -> None:
    remote = ssh(cache_name=str(tmp_path / "store"))
    key = remote.save(Call(name="f", module="m", arguments={"x": 1}, result=1))
    parent = remote.info()["ssh_pid"]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        try:
            mine = remote.load_result(key) == 1 and remote.info()["ssh_pid"] != parent
            os.write(write, b"1" if mine else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(child, 0)
    os.close(read)
    assert answer == b"1"
    assert remote.info()["ssh_pid"] == parent and remote.load_result(key) == 1


def test_a_missing_remote_python_is_a_clear_error(ssh, tmp_path: Path) -> None:
    remote = ssh(python="/nonexistent/python3")
    with pytest.raises(RemoteConnectionError, match="nonexistent"):
        remote.contains("abcd")


def test_a_read_only_remote_over_ssh(ssh, tmp_path: Path) -> None:
    (tmp_path / "fleche.toml").write_text(
        '[shared]\ntemplate = "sql"\nroot = "store"\nread_only = true\n'
    )
    remote = ssh(cache_name="shared", workdir=str(tmp_path))
    assert remote.read_only
    with pytest.raises(ReadOnlyError):
        remote.save(Call(name="f", module="m", arguments={}, result=1))


def _skewed_copy(tmp_path: Path, old: str, new: str, module: str) -> Path:
    """This checkout's fleche copied with one line changed: a different build on the remote."""
    root = tmp_path / "other"
    shutil.copytree(
        CHECKOUT / "fleche", root / "fleche", ignore=shutil.ignore_patterns("__pycache__")
    )
    path = root / "fleche" / module
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return root


def test_a_different_fleche_version_is_a_warning(ssh, tmp_path: Path) -> None:
    from fleche import __version__

    other = _skewed_copy(
        tmp_path, f'__version__ = "{__version__}"', '__version__ = "9.9.9"', "_version.py"
    )
    remote = ssh(pythonpath=other, cache_name=str(tmp_path / "store"))
    with pytest.warns(RemoteVersionWarning, match="9.9.9"):
        assert remote.info()["fleche"] == "9.9.9"
    assert not remote.contains("abcd")


def test_a_different_protocol_is_an_error(ssh, tmp_path: Path) -> None:
    other = _skewed_copy(tmp_path, "PROTOCOL = 1\n", "PROTOCOL = 2\n", "_remote_protocol.py")
    remote = ssh(pythonpath=other, cache_name=str(tmp_path / "store"))
    with pytest.raises(RemoteConnectionError, match="protocol") as raised:
        remote.contains("abcd")
    assert "same fleche version" in str(raised.value)


def test_an_ssh_table_in_a_configuration_reaches_the_store(ssh, tmp_path: Path) -> None:
    template = ssh(cache_name=str(tmp_path / "store"))
    built = from_config(
        {
            "type": "ssh",
            "host": template.host,
            "cache_name": template.cache_name,
            "python": template.python,
            "ssh_options": list(template.ssh_options),
            "setup_commands": list(template.setup_commands),
        }
    )
    try:
        key = built.save(Call(name="f", module="m", arguments={}, result="via toml"))
        assert open_cache(str(tmp_path / "store")).load_result(key) == "via toml"
    finally:
        built.close()
