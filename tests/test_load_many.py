"""Many values loaded at once (ValueBulkReads.load_many), as a table of a store's calls reads them."""

from __future__ import annotations

import dataclasses

import pytest

from fleche import Call, from_config
from fleche.digest import digest
from fleche.storage import sql_values
from fleche.storage.entry_pages import CHECK_SIZE

from .backends import inline_values, postgres_inline_values


@pytest.fixture(params=[inline_values, postgres_inline_values], ids=["sqlite", "postgres"])
def values(request, tmp_path):
    return request.param(tmp_path)


@pytest.mark.parametrize("asked", [3, 600, 2000], ids=["few", "sparse", "dense"])
def test_every_value_asked_for_is_found_however_many(values, asked):
    # Few keys are looked up by key; many are read by a scan of the table, which
    # turns to lookups by key for the rest once a page holds few of them.
    stored = [values.save(n) for n in range(6 * sql_values.CHUNK)]
    keys = stored[:: len(stored) // asked][:asked]
    assert values.load_many(keys) == {key: stored.index(key) for key in keys}


def test_keys_past_the_last_row_or_before_the_first_are_missing(values):
    keys = {values.save(n) for n in range(2 * sql_values.CHUNK)}
    outside = {"0" * 32, "f" * 32}
    assert set(values.load_many(keys | outside)) == keys


def test_a_table_shows_values_kept_in_the_database_and_in_files(tmp_path):
    store = from_config({"template": "sql", "root": str(tmp_path)})
    big = "x" * 10_000  # a file
    for n in range(3):
        store.save(Call("f", {"n": n, "text": big}, module="tests", result=[n, big]))
    table = store.query().table().sort_values("n")
    assert list(table["n"]) == [0, 1, 2] and set(table["text"]) == {big}
    assert list(table["result"]) == [[n, big] for n in range(3)]
    assert digest(big) in store.values.load_many([digest(big)])


@pytest.mark.parametrize("damage", ["payload", "check", "header", "truncated"])
def test_a_damaged_row_among_many_is_refused_alone(values, damage):
    # A page of rows is checked and unpickled in bulk; a damaged row sends it row by row.
    keys = [values.save([n, n / 2]) for n in range(2 * sql_values.CHUNK)]
    table = values.database.small_values()
    data = bytearray(table.get(keys[7]))
    if damage == "truncated":  # its header and check, no payload
        del data[len(values._head) + CHECK_SIZE :]
    else:
        data[{"payload": -2, "check": 16, "header": 0}[damage]] ^= 0xFF
    table.put(keys[7], bytes(data), replace=True)
    with pytest.warns(Warning):
        found = values.load_many(keys)
    assert found == {key: [n, n / 2] for n, key in enumerate(keys) if n != 7}


MISSING = object()


@pytest.mark.parametrize("asked", [3, 2000], ids=["sparse", "dense"])
def test_values_of_gives_each_cell_its_value_in_order(values, asked):
    # Many cells are answered by one scan of the table joined to them; few by load_many.
    stored = [values.save([n, n / 2]) for n in range(2 * sql_values.CHUNK)]
    big = values.save("x" * 10_000)  # a file
    keys = [*stored[:asked], big, "0" * 32, stored[0], str(stored[1])]
    found = values.values_of(keys, MISSING)
    expected = [[n, n / 2] for n in range(len(stored[:asked]))]
    assert found == [*expected, "x" * 10_000, MISSING, [0, 0.0], [1, 0.5]]
    assert found[0] is found[-2]  # a value read once however many cells show it


def test_values_of_a_damaged_row_is_missing_and_warned_of(values):
    keys = [values.save([n, n / 2]) for n in range(2 * sql_values.CHUNK)]
    table = values.database.small_values()
    data = bytearray(table.get(keys[7]))
    data[-2] ^= 0xFF
    table.put(keys[7], bytes(data), replace=True)
    with pytest.warns(Warning):
        found = values.values_of(keys, MISSING)
    assert found == [MISSING if n == 7 else [n, n / 2] for n in range(len(keys))]
    with pytest.warns(Warning):  # each cell that shows it, wherever the cells are
        found = values.values_of([keys[7], *keys[::-1], keys[7]], MISSING)
    assert found[0] is found[-1] is found[len(keys) - 7] is MISSING
    assert found.count(MISSING) == 3 and found[1] == [len(keys) - 1, (len(keys) - 1) / 2]


def test_values_of_compressed_entries_and_keys_in_capitals(tmp_path):
    # Rows not written plainly are decoded one by one; text in capitals is left to load_many.
    values = dataclasses.replace(inline_values(tmp_path), compress=True)
    keys = [values.save(n) for n in range(300)]
    assert values.values_of(keys) == list(range(300))
    capitals = [str(key).upper() for key in keys]
    found = values.load_many(capitals)
    assert values.values_of(capitals, MISSING) == [found.get(k, MISSING) for k in capitals]


def test_values_of_destructured_values(tmp_path):
    values = inline_values(tmp_path)
    nested = [{"a": ("x" * 300, n)} for n in range(300)]  # a long string: a part stored apart
    keys = [values.save(v) for v in nested]
    assert values.values_of(keys) == nested
