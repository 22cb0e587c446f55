"""``fleche ui`` on a big store: server time of the pages a visitor opens, against raw SQLite.

Run:  PYTHONPATH=. python benchmarks/bench_ui.py [--sizes 100000,1000000] [--dir DIR]

The stores are those of ``bench_scale.py`` (N calls of ``simulate(x, group)``
in pickle files + SQLite, filled through :meth:`Cache.save`, a group query
matching 100 calls), shared through ``--dir`` (filling a million calls
takes many minutes).  Each page is requested through Flask's test client,
so the time is the server's (query, values, rendering) without a network
or a browser; the best of three.  The reference, measured in the same run,
is raw ``sqlite3`` selecting the same rows of the same database (the rows
of the page, not the values it then loads and shows).  Issue 15's target:
the first page and a filtered table under 200 ms at 100,000 and 1,000,000
calls; every page of a table as fast as the first.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best, ms, print_table  # noqa: E402
from bench_scale import fill  # noqa: E402

from fleche import QueryCall  # noqa: E402
from fleche.digest import digest  # noqa: E402
from fleche.ui import create_app  # noqa: E402

FUNCTION = "/f/bench.scale:simulate"
SIZE = 50
#: The database rows of a page: what SQLite alone needs to answer it.
ROWS = "SELECT * FROM calls WHERE name = 'simulate' AND module = 'bench.scale'"
JOIN = (
    "SELECT calls.* FROM calls JOIN arguments a ON a.call_key = calls.key "
    "AND a.name = 'group' AND a.value = ? WHERE calls.name = 'simulate'"
)
#: Largest store whose call page is timed with its consumers (it reads every record).
CONSUMERS_UP_TO = 100_000


def request(client, url: str) -> float:
    """Seconds to answer ``url`` (a 200, else the benchmark stops)."""
    start = time.perf_counter()
    answer = client.get(url)
    seconds = time.perf_counter() - start
    if answer.status_code != 200:
        raise SystemExit(f"{url}: status {answer.status_code}")
    return seconds


def page_rows(page: int) -> str:
    return f"{ROWS} ORDER BY rowid DESC LIMIT {SIZE + 1} OFFSET {(page - 1) * SIZE}"


def bench_size(root: Path, size: int) -> list[list[str]]:
    store = fill(root, size)
    raw = sqlite3.connect(root / "calls.db")
    group = str(digest(7 % max(size // 100, 1)))
    start = time.perf_counter()
    app = create_app(store)
    client = app.test_client()
    first = request(client, "/")  # the catalog is still counting: a partial page
    catalog = app.extensions["fleche_ui"].catalog
    while not catalog.complete:
        time.sleep(0.05)
    counted = time.perf_counter() - start
    catalog.idle(600)  # the argument names, listed after the counts: not timed with the pages
    listed = time.perf_counter() - start
    key = next(iter(store.query(QueryCall(name="simulate", arguments={"x": size // 2})))).key()
    last = -(-size // SIZE)

    def page(url: str) -> float:
        return best(lambda: request(client, url))

    def sql(text: str, *params: str) -> float:
        return best(lambda: raw.execute(text, params).fetchall())

    rows = [
        ("first page / (cold, counting)", first, None),
        ("calls counted (background)", counted, None),
        ("argument names listed (background)", listed, None),
        ("/ (counted)", page("/"), None),
        ("function table, page 1", page(FUNCTION), sql(page_rows(1))),
        ("filtered table (a.group=7)", page(f"{FUNCTION}?a.group=7"), sql(JOIN, group)),
        ("filtered, two arguments", page(f"{FUNCTION}?a.group=7&a.x={size // 100 + 7}"), None),
        ("filtered, page 2", page(f"{FUNCTION}?a.group=7&page=2"), None),
        ("page 100", page(f"{FUNCTION}?page=100"), sql(page_rows(100))),
        (f"last page ({last:,})", page(f"{FUNCTION}?page={last}"), sql(page_rows(last))),
        ("sorted filtered table", page(f"{FUNCTION}?a.group=7&sort=-x"), None),
        ("call page (producers only)", page(f"/c/{key}"), None),
    ]
    if size <= CONSUMERS_UP_TO:
        down = request(client, f"/c/{key}?down=1")
        rows.append(("call page with consumers (?down=1)", down, None))
    return [
        [f"{size:,}", what, ms(seconds), "" if ref is None else ms(ref)]
        for what, seconds, ref in rows
    ]


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
    print_table(
        "fleche ui: server time per page (best of 3)",
        ["calls", "page", "server time", "raw sqlite3 rows"],
        rows,
    )


if __name__ == "__main__":
    main()
