"""The SQL call storage: save, load (the decorator's hit path), query, expand.

Run: python benchmarks/bench_sql.py   (set FLECHE_TEST_POSTGRES_URL for PostgreSQL figures,
e.g. ``eval "$(.ci/start-postgres)"``)
Targets (issue "Persistent stores", SQLite): save of one record <= 0.3 ms; load
<= ~30 µs; query returning 100 of 100,000 calls by one argument <= 10 ms; expand
of a 6-character prefix among 1,000,000 keys <= 1 ms.  Each is printed beside raw
``sqlite3`` doing comparable work on a comparable table in the same run.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of, ms, print_table, us  # noqa: E402

from fleche.call import Call, QueryCall  # noqa: E402
from fleche.digest import Digest, digest  # noqa: E402
from fleche.storage import Sql  # noqa: E402
from fleche.storage.sql_schema import encode_record  # noqa: E402

QUERY_STORE = 100_000
EXPAND_STORE = 1_000_000


def _call(i: int, x: int | None = None) -> Call:
    return Call(
        name="simulate",
        module="bench.model",
        arguments={"x": i if x is None else x, "y": i},
        result=i * 2,
        metadata={"tags": {"project": "bench"}, "runtime": {"started": 1.7e9, "walltime": 0.25}},
    )


def _raw_sqlite(path: Path) -> sqlite3.Connection:
    """A raw sqlite3 connection set up like the store's: WAL, synchronous=NORMAL."""
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "synchronous = NORMAL"):
        connection.execute(f"PRAGMA {pragma}")
    connection.execute(
        "CREATE TABLE calls (key TEXT PRIMARY KEY, name TEXT, module TEXT, created REAL, "
        "result TEXT, arguments TEXT, meta TEXT)"
    )
    connection.execute(
        "CREATE TABLE arguments (call_key TEXT, name TEXT, value TEXT, PRIMARY KEY (call_key, name))"
    )
    connection.execute("CREATE INDEX ix_arguments_value ON arguments (name, value)")
    return connection


def _bulk(sql: Sql, records: list[dict]) -> None:
    """Fill a SQLite store fast: the store's own save statement, executemany in one transaction."""
    handle = sql._runtime().handle()
    handle.cursor.execute("BEGIN IMMEDIATE")
    handle.cursor.executemany(sql._runtime().statements.save, records)
    handle.connection.commit()


def bench_save_load(sql: Sql, label: str, rows: list[list[str]]) -> None:
    records = [_call(i).digested() for i in range(2000)]
    keys = [sql.save(r) for r in records[:1000]]  # warm-up; these are overwritten below
    counter = iter(range(10**9))
    save = best_of(lambda: sql.save(records[next(counter) % 2000]), number=1000, repeat=3)
    key = keys[0]
    load = best_of(lambda: sql.load(key), number=5000, repeat=5)
    rows.append([f"{label} save (upsert of one record)", ms(save), "<= 0.3 ms (SQLite)"])
    rows.append([f"{label} load (hit path)", us(load), "<= ~30 µs (SQLite)"])


def bench_raw(root: Path, rows: list[list[str]]) -> None:
    connection = _raw_sqlite(root / "raw.db")
    record = _call(1).digested()
    row = encode_record(record, record.key())
    counter = iter(range(10**9))

    def insert() -> None:
        key = f"{next(counter) % 2000:032x}"
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                row["name"],
                row["module"],
                row["created"],
                row["result"],
                row["arguments"],
                row["meta"],
            ),
        )
        connection.execute("DELETE FROM arguments WHERE call_key = ?", (key,))
        connection.executemany(
            "INSERT INTO arguments VALUES (?, ?, ?)",
            [(key, n, str(v)) for n, v in record.arguments.items()],
        )
        connection.execute("COMMIT")

    def select() -> None:
        name, module, created, result, args, meta = connection.execute(
            "SELECT name, module, created, result, arguments, meta FROM calls WHERE key = ?",
            (f"{1:032x}",),
        ).fetchone()
        json.loads(args), json.loads(meta)

    for _ in range(2000):
        insert()
    rows.append(
        [
            "raw sqlite3 insert of a comparable row + 2 argument rows",
            ms(best_of(insert, 1000, 3)),
            "reference",
        ]
    )
    rows.append(
        ["raw sqlite3 select of that row (+ json.loads)", us(best_of(select, 5000, 5)), "reference"]
    )
    connection.close()


def bench_query(root: Path, rows: list[list[str]]) -> None:
    sql = Sql(url=str(root / "query.db"))
    records = []
    for i in range(QUERY_STORE):
        record = _call(i, x=i % 1000).digested()
        records.append(encode_record(record, record.key()))
    _bulk(sql, records)
    template = QueryCall(arguments={"x": 7})
    assert len(list(sql.query(template))) == 100
    by_argument = best_of(lambda: list(sql.query(template)), number=20, repeat=3)
    named = QueryCall(name="simulate", arguments={"x": Digest(digest(7))})
    by_name = best_of(lambda: list(sql.query(named)), number=20, repeat=3)
    tagged = QueryCall(arguments={"x": 7}, metadata={"tags": {"project": "bench"}})
    with_meta = best_of(lambda: list(sql.query(tagged)), number=20, repeat=3)

    raw = sqlite3.connect(root / "query.db")
    value = str(digest(7))

    def select() -> None:
        raw.execute(
            "SELECT c.* FROM calls c JOIN arguments a ON a.call_key = c.key WHERE a.name = 'x' AND a.value = ?",
            (value,),
        ).fetchall()

    n = f"{QUERY_STORE:,}"
    rows.append([f"query 100 of {n} by one argument", ms(by_argument), "<= 10 ms"])
    rows.append([f"query 100 of {n} by name + argument", ms(by_name), "<= 10 ms"])
    rows.append([f"query 100 of {n} by argument + metadata tag", ms(with_meta), "-"])
    rows.append(
        ["raw sqlite3 join selecting those 100 rows", ms(best_of(select, 20, 3)), "reference"]
    )
    raw.close()


def bench_expand(root: Path, rows: list[list[str]]) -> None:
    sql = Sql(url=str(root / "expand.db"))
    rng = random.Random(0)
    keys = sorted({f"{rng.getrandbits(128):032x}" for _ in range(EXPAND_STORE)})
    template = encode_record(_call(0).digested(), "")
    _bulk(sql, [{**template, "key": k} for k in keys])
    probes = [keys[rng.randrange(len(keys))][:6] for _ in range(1000)]
    counter = iter(range(10**9))

    def expand() -> None:
        try:
            sql.expand(probes[next(counter) % 1000])
        except ValueError:  # an ambiguous 6-character prefix is a valid outcome too
            pass

    raw = sqlite3.connect(root / "expand.db")

    def select() -> None:
        prefix = probes[next(counter) % 1000]
        raw.execute(
            "SELECT key FROM calls WHERE key >= ? AND key < ? ORDER BY key LIMIT 32",
            (prefix, prefix + "g"),
        ).fetchall()

    n = f"{len(keys):,}"
    rows.append([f"expand a 6-char prefix among {n} keys", us(best_of(expand, 2000, 3)), "<= 1 ms"])
    rows.append(
        ["raw sqlite3 range select of that prefix", us(best_of(select, 2000, 3)), "reference"]
    )
    raw.close()


def bench_postgres(rows: list[list[str]]) -> None:
    url = os.environ.get("FLECHE_TEST_POSTGRES_URL")
    if not url:
        rows.append(["PostgreSQL", "skipped", "set FLECHE_TEST_POSTGRES_URL"])
        return
    # A schema of its own, dropped at the end: the server's other stores (and other
    # fleche versions' tables) are left alone.
    import sqlalchemy

    schema = f"fleche_bench_{os.getpid()}"
    admin = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        private = sqlalchemy.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        _bench_postgres(Sql(url=private.render_as_string(hide_password=False)), rows)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _bench_postgres(sql: Sql, rows: list[list[str]]) -> None:
    bench_save_load(sql, "PostgreSQL", rows)
    import psycopg

    record = _call(1).digested()
    row = encode_record(record, record.key())
    raw = psycopg.connect(
        sql.engine.url.set(drivername="postgresql").render_as_string(False), autocommit=True
    )
    raw.execute(
        "CREATE TEMPORARY TABLE raw_calls (key TEXT PRIMARY KEY, created FLOAT8, result TEXT, meta JSONB)"
    )
    insert = (
        "INSERT INTO raw_calls VALUES (%(key)s, %(created)s, %(result)s, %(meta)s::jsonb) "
        "ON CONFLICT (key) DO UPDATE SET created = excluded.created, meta = excluded.meta"
    )
    raw_insert = best_of(lambda: raw.execute(insert, row), number=300, repeat=3)
    raw_select = best_of(
        lambda: raw.execute("SELECT * FROM raw_calls WHERE key = %s", (row["key"],)).fetchone(),
        number=1000,
        repeat=3,
    )
    raw.close()
    rows.append(
        ["raw psycopg upsert of a comparable row (one statement)", ms(raw_insert), "reference"]
    )
    rows.append(["raw psycopg select of that row", us(raw_select), "reference"])
    sql.engine.dispose()


def main() -> None:
    started = time.perf_counter()
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="fleche-bench-sql-") as tmp:
        root = Path(tmp)
        bench_save_load(Sql(url=str(root / "calls.db")), "SQLite", rows)
        bench_raw(root, rows)
        bench_query(root, rows)
        bench_expand(root, rows)
    bench_postgres(rows)
    print_table("Sql call storage", ["case", "time", "target"], rows)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
