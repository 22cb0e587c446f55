"""The SQLite save bound by position: the same rows as bound by name, NULL written for absent columns."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import literal_column  # noqa: E402
from sqlalchemy.dialects import sqlite  # noqa: E402

from fleche.storage.sql_positional import PositionalSave  # noqa: E402
from fleche.storage.sql_schema import calls  # noqa: E402


def _upsert(**set_: object) -> object:
    row = sqlite.insert(calls)
    return row.on_conflict_do_update(
        index_elements=[calls.c.key],
        set_=set_ or {c.name: row.excluded[c.name] for c in calls.c if c.name != "key"},
    )


def _row(key: str, **changes: object) -> dict[str, object]:
    row = dict.fromkeys(c.name for c in calls.c)
    row.update(key=key, name="f", module="m", unkeyed="", created=1.5, arguments="{}", meta="{}")
    return {**row, **changes}


@pytest.fixture
def database() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    columns = ", ".join(c.name if c.name != "key" else '"key" PRIMARY KEY' for c in calls.c)
    connection.execute(f"CREATE TABLE calls ({columns})")
    return connection


def test_absent_columns_are_null_in_the_text_and_not_bound(database: sqlite3.Connection) -> None:
    save = PositionalSave(_upsert())
    text, parameters = save(_row("a"))
    assert text.count("NULL") == 7 and text.count("?") == 7
    assert None not in parameters and parameters[0] == "a"
    database.execute(text, parameters)
    full = _row("b", version="1", code="c" * 32, result="r", meta_typed="[]", seal="s", expires=2.0)
    database.execute(*save(full))
    found = {r[0]: r for r in database.execute('SELECT * FROM calls ORDER BY "key"')}
    assert found["a"] == tuple(_row("a").values())
    assert found["b"] == tuple(full.values())


def test_one_text_per_pattern_of_absent_columns() -> None:
    save = PositionalSave(_upsert())
    first, _ = save(_row("a"))
    assert save(_row("b"))[0] is first
    assert save(_row("c", version="2"))[0] != first


def test_a_saved_row_is_replaced_whole_by_the_upsert(database: sqlite3.Connection) -> None:
    save = PositionalSave(_upsert())
    database.execute(*save(_row("a", version="1", expires=3.0)))
    database.execute(*save(_row("a", result="r")))
    (row,) = database.execute("SELECT * FROM calls")
    assert row == tuple(_row("a", result="r").values())


def test_a_statement_whose_text_holds_a_question_mark_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot bind by position"):
        PositionalSave(_upsert(name=literal_column("'?'")))
