"""Values in S3-compatible object storage: a decorated hit and miss+store against raw obstore.

Run:  PYTHONPATH=. python benchmarks/bench_object_store.py [--repeat N]

Uses the server ``FLECHE_TEST_S3_URL``/``FLECHE_TEST_S3_ENDPOINT`` name (with
the AWS credentials in the environment), else starts one with
``.ci/start-seaweedfs`` and stops it at the end.  For a small result, a
10 MB one and a 10 MB numpy array, in the same run on the same server:

* hit: a decorated call answered from the store (calls in in-memory SQLite,
  the value fetched from the bucket and checked) against a raw
  ``obstore.get`` of the same object's bytes (the array's raw bytes);
* miss + store: a decorated call computing a new result and storing it
  (a small argument and result kept in the call database beside the
  record, one SQLite transaction and no request; a large one an object
  written with create-if-absent, the call record in SQLite; the repeated argument
  ``size`` is not sent again) against one raw ``obstore.put`` of the
  result's bytes to a new name, and against the same two object writes
  done raw, named as fleche names them (a create-if-absent put costs a
  little more than a plain one on SeaweedFS, and a name in a new fan-out
  "directory" more than one in a known one), and against the two writes
  sent at once (the argument's on a thread), as fleche sends them: the
  argument's while the body runs, the result's meanwhile.

``--latency MS`` sends every request (fleche's and the raw ones) through a
local proxy that delays each round trip by ``MS``, as a server across a
network would; on a loopback server a request costs mostly CPU, which a
loaded machine does not overlap.

The requests column counts the object-store requests of one decorated
call (taken in a separate, untimed call).  Issue 14's target: fleche
within 1.5x of raw.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import itertools
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import obstore  # noqa: E402
from _timing import best_of_alternated, ms, print_table  # noqa: E402
from obstore.store import S3Store  # noqa: E402

from fleche import cache, fleche  # noqa: E402
from fleche.config import from_config  # noqa: E402

START = Path(__file__).parent.parent / ".ci" / "start-seaweedfs"
MB10 = 10 * 1024 * 1024
#: label -> (size in bytes, kind of result).
SIZES = {
    "small (~100 B)": (100, "bytes"),
    "10 MB bytes": (MB10, "bytes"),
    "10 MB float64 array": (MB10, "array"),
}


def server() -> str | None:
    """Make sure a server's settings are in the environment; the directory of one started here."""
    if os.environ.get("FLECHE_TEST_S3_URL"):
        return None
    exports = subprocess.run(["bash", str(START)], check=True, capture_output=True, text=True)
    for line in exports.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = value
    return os.environ["FLECHE_TEST_S3_DIR"]


#: Sends a raw argument write while the result's is made, as fleche does.
SENDER = concurrent.futures.ThreadPoolExecutor(1)
RESULTS: dict[int, bytes] = {}
NUMBERS = itertools.count()


@fleche
def produce(size: int, number: int) -> object:
    """A result of ``size`` bytes, made beforehand (the benchmark times storing, not computing)."""
    return RESULTS[number]


def results(size: int, kind: str, count: int) -> list[int]:
    """The numbers of ``count`` new distinct results of ``size`` bytes, made for :func:`produce`.

    ``kind`` is ``"bytes"``, or ``"array"`` for numpy float64 arrays.
    """
    base = os.urandom(size)
    numbers = list(itertools.islice(NUMBERS, count))
    made = {i: i.to_bytes(8, "little") + base[8:] for i in numbers}
    if kind == "array":
        import numpy

        made = {i: numpy.frombuffer(data, numpy.float64).copy() for i, data in made.items()}
    RESULTS.update(made)
    return numbers


def fanned() -> str:
    """A new object name laid out as fleche lays out keys (``raw/abc/<rest>``)."""
    name = uuid.uuid4().hex
    return f"raw/{name[:3]}/{name[3:]}"


def requests(call) -> str:
    """The object-store requests ``call()`` makes, e.g. ``1 put``."""
    made: collections.Counter[str] = collections.Counter()
    originals = {name: getattr(obstore, name) for name in ("get", "put", "head", "list")}

    def counted(name):
        def request(*args, **kwargs):
            made[name] += 1
            return originals[name](*args, **kwargs)

        return request

    try:
        for name in originals:
            setattr(obstore, name, counted(name))
        call()
    finally:
        for name, original in originals.items():
            setattr(obstore, name, original)
    return ", ".join(f"{n} {name}" for name, n in sorted(made.items()))


def measure(size: int, kind: str, repeat: int, store: S3Store, fleche_cache) -> dict[str, object]:
    """Seconds per hit and per miss + store, through fleche and raw, taken in turn."""
    number = 3 if size > 1 << 20 else 50  # misses of a large result take ~0.2 s each
    reads = 10 if size > 1 << 20 else 50  # a large GET varies a lot on a loaded machine
    hit, *numbers = results(size, kind, 2 + number * repeat)  # the hit, timed misses, a counted one
    made = [memoryview(RESULTS[n]).cast("B") for n in numbers]
    raw_names = itertools.count()
    misses = iter(numbers)
    hit_path = f"raw/{uuid.uuid4().hex}"
    obstore.put(store, hit_path, memoryview(RESULTS[hit]).cast("B"))

    def raw_put() -> None:
        n = next(raw_names)
        obstore.put(store, f"raw/put-{n}", made[n % len(made)])

    def raw_writes() -> None:  # what a decorated miss writes: its argument, then its result
        n = next(raw_names)
        obstore.put(store, fanned(), n.to_bytes(8, "little"), mode="create")
        obstore.put(store, fanned(), made[n % len(made)], mode="create")

    def raw_writes_at_once() -> None:  # the same, the argument's sent on a thread meanwhile
        n = next(raw_names)
        ahead = SENDER.submit(obstore.put, store, fanned(), n.to_bytes(8, "little"), mode="create")
        obstore.put(store, fanned(), made[n % len(made)], mode="create")
        ahead.result()

    funcs = {
        "raw get": lambda: obstore.get(store, hit_path).bytes(),
        "fleche hit": lambda: produce(size, hit),
        "raw put": raw_put,
        "raw writes": raw_writes,
        "raw writes at once": raw_writes_at_once,
        "fleche miss + store": lambda: produce(size, next(misses)),
    }
    with cache(fleche_cache):
        produce(size, hit)  # stored: what the hit reads
        times: dict[str, object] = dict(
            best_of_alternated(
                funcs,
                {name: reads if "hit" in name or "get" in name else number for name in funcs},
                repeat=repeat,
            )
        )
        times["hit requests"] = requests(funcs["fleche hit"])
        times["miss requests"] = requests(funcs["fleche miss + store"])
    return times


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward bytes, each chunk ``delay`` seconds after it arrived (latency, not bandwidth)."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def feed() -> None:
        while data := await reader.read(1 << 16):
            chunks.put_nowait((loop.time() + delay, data))
        chunks.put_nowait((loop.time() + delay, b""))

    feeding = asyncio.create_task(feed())
    try:
        while True:
            due, data = await chunks.get()
            await asyncio.sleep(due - loop.time())
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        feeding.cancel()
        writer.close()


def delayed(endpoint: str, rtt: float) -> str:
    """A local proxy of ``endpoint`` adding ``rtt`` seconds to each round trip (a thread of its own)."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.new_event_loop()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(
            _pipe(reader, upstream_writer, rtt / 2), _pipe(upstream_reader, writer, rtt / 2)
        )

    proxy = loop.run_until_complete(asyncio.start_server(connect, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="milliseconds added to each round trip (a proxy), as to a server across a network",
    )
    parser.add_argument("--sizes", nargs="*", choices=list(SIZES), help="the rows to run")
    args = parser.parse_args()
    started = server()
    try:
        url = f"{os.environ['FLECHE_TEST_S3_URL'].rstrip('/')}/bench-{uuid.uuid4().hex[:12]}"
        endpoint = os.environ["FLECHE_TEST_S3_ENDPOINT"]
        if args.latency:
            endpoint = delayed(endpoint, args.latency / 1000)
        fleche_cache = from_config({"template": "s3", "url": url, "endpoint": endpoint})
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        store = S3Store(
            bucket, prefix=prefix, endpoint=endpoint, client_options={"allow_http": True}
        )
        rows = []
        for label in args.sizes or SIZES:
            size, kind = SIZES[label]
            t = measure(size, kind, args.repeat, store, fleche_cache)
            for path, ours, raw, made in (
                ("hit vs 1 get", "fleche hit", "raw get", "hit requests"),
                ("miss + store vs 1 put", "fleche miss + store", "raw put", "miss requests"),
                ("miss + store vs its writes", "fleche miss + store", "raw writes", ""),
                ("miss + store vs them at once", "fleche miss + store", "raw writes at once", ""),
            ):
                ratio = f"{t[ours] / t[raw]:.2f}x"
                rows.append([label, path, ms(t[raw]), ms(t[ours]), ratio, t.get(made, "")])
        print_table(
            f"object store ({endpoint}, {args.latency:g} ms added), best of {args.repeat}",
            ["result", "path", "raw obstore", "fleche", "fleche / raw", "fleche requests"],
            rows,
        )
    finally:
        if started:
            subprocess.run(["bash", str(START), "--stop"], check=False)


if __name__ == "__main__":
    main()
