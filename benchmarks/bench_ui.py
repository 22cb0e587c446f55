"""``fleche ui`` on a big store: server time of the pages a visitor opens first.

Run:  PYTHONPATH=. python benchmarks/bench_ui.py [--sizes 100000,1000000] [--dir DIR]

The stores are those of ``bench_scale.py`` (N calls of ``simulate(x, group)``
in pickle files + SQLite, filled through :meth:`Cache.save`, a group query
matching 100 calls), shared through ``--dir``.  Each page is requested
through Flask's test client, so the time is the server's (query, values,
rendering), without a network or a browser.  Issue 15's target: the first
page and a filtered table under 200 ms at 100,000 and 1,000,000 calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import ms, print_table  # noqa: E402
from bench_scale import fill  # noqa: E402

from fleche import QueryCall  # noqa: E402
from fleche.ui import create_app  # noqa: E402

FUNCTION = "/f/bench.scale:simulate"


def request(client, url: str) -> float:
    """Seconds to answer ``url`` (a 200, else the benchmark stops)."""
    start = time.perf_counter()
    answer = client.get(url)
    seconds = time.perf_counter() - start
    if answer.status_code != 200:
        raise SystemExit(f"{url}: status {answer.status_code}")
    return seconds


def best(client, url: str, repeat: int = 3) -> float:
    return min(request(client, url) for _ in range(repeat))


def bench_size(root: Path, size: int) -> list[list[str]]:
    store = fill(root, size)
    start = time.perf_counter()
    app = create_app(store)
    client = app.test_client()
    first = request(client, "/")  # the catalog is still counting: a partial page
    catalog = app.extensions["fleche_ui"].catalog
    while not catalog.complete:
        time.sleep(0.05)
    counted = time.perf_counter() - start
    key = next(iter(store.query(QueryCall(name="simulate", arguments={"x": size // 2})))).key()
    rows = [
        ("first page / (cold, counting)", first),
        ("catalog complete (background)", counted),
        ("/ (counted)", best(client, "/")),
        ("function table, page 1", best(client, FUNCTION)),
        ("filtered table (a.group=7)", best(client, f"{FUNCTION}?a.group=7")),
        ("filtered by two arguments", best(client, f"{FUNCTION}?a.group=7&a.x={size // 100 + 7}")),
        ("page 100 (skip 4,950)", best(client, f"{FUNCTION}?page=100")),
        ("sorted filtered table", best(client, f"{FUNCTION}?a.group=7&sort=-x")),
        ("call page (producers only)", best(client, f"/c/{key}")),
        ("call page with consumers (?down=1)", best(client, f"/c/{key}?down=1", repeat=1)),
    ]
    return [[f"{size:,}", what, ms(seconds)] for what, seconds in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated store sizes")
    parser.add_argument(
        "--dir", help="where the stores are kept between runs (default: a new temp dir)"
    )
    options = parser.parse_args()
    base = Path(options.dir) if options.dir else Path(tempfile.mkdtemp(prefix="fleche-ui-"))
    rows = []
    for size in (int(s) for s in options.sizes.split(",")):
        rows += bench_size(base / f"scale-{size}", size)
    print_table("fleche ui: server time per page", ["calls", "page", "server time"], rows)


if __name__ == "__main__":
    main()
