"""``fleche ui``'s pages of a function's calls: cut in SQL on SQLite, from the query elsewhere."""

from __future__ import annotations

import re
import sqlite3

import pytest

pytest.importorskip("flask")

from fleche import Cache, Call, QueryCall, ReadOnlyCache  # noqa: E402
from fleche.config import open_cache  # noqa: E402
from fleche.storage import CallMemory, ValueMemory  # noqa: E402
from fleche.ui import create_app  # noqa: E402
from fleche.ui.paging import pages_for  # noqa: E402

from .backends import postgres_calls  # noqa: E402

CALLS = 237
URL = "/f/lab:step"


def fill(cache: Cache) -> Cache:
    """``CALLS`` calls of ``lab.step(x, group)``, stored in the order of ``x``."""
    for x in range(CALLS):
        cache.save(
            Call(
                "step",
                {"x": x, "group": x % 3},
                module="lab",
                result=x,
                metadata={"tags": {"odd": x % 2}},
            )
        )
    return cache


@pytest.fixture
def sqlite(tmp_path) -> Cache:
    return fill(open_cache(str(tmp_path / "store")))


def shown(client, url: str) -> tuple[list[str], str]:
    """The call keys a page of the table shows, and the page."""
    answer = client.get(url)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    return re.findall(r'href="/c/([0-9a-f]{32})"', page), page


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def newest_first(cache: Cache, **arguments) -> list[str]:
    """The keys ``query()`` gives, newest stored first (``x`` grows with the order stored)."""
    calls = cache.query(name="step", arguments=arguments or None)
    return [c.key() for c in sorted(calls, key=lambda c: -c.digested_call.created)]


def test_a_sqlite_page_is_the_same_slice_of_the_query_newest_first(sqlite):
    client = create_app(sqlite).test_client()
    every = newest_first(sqlite)
    assert len(every) == CALLS
    for page in (1, 2, 7, 12):
        keys, _ = shown(client, f"{URL}?size=20&page={page}")
        assert keys == every[(page - 1) * 20 : page * 20]
    keys, _ = shown(client, f"{URL}?size=20&page=13")
    assert keys == []


def test_next_previous_first_and_last_links_walk_every_call_once(sqlite):
    client = create_app(sqlite).test_client()
    seen: list[str] = []
    url: str | None = f"{URL}?size=25"
    while url:
        keys, page = shown(client, url)
        seen += keys
        url = link(page, "next")
    assert seen == newest_first(sqlite)
    keys, page = shown(client, f"{URL}?size=25&page=3")
    assert "page 3 of 10" in page
    assert shown(client, link(page, "prev"))[0] == seen[25:50]
    assert shown(client, link(page, "first"))[0] == seen[:25]
    assert shown(client, link(page, "last"))[0] == seen[225:]


def test_a_filtered_deep_page_is_the_same_slice_of_the_template_query(sqlite):
    client = create_app(sqlite).test_client()
    matches = newest_first(sqlite, group=1)
    keys, page = shown(client, f"{URL}?a.group=1&size=10&page=3")
    assert keys == matches[20:30]
    assert f"{len(matches)} calls" in page and "page 3 of 8" in page
    odd = [k for k in newest_first(sqlite) if sqlite.load(k).digested_call.metadata["tags"]["odd"]]
    keys, _ = shown(client, f"{URL}?m.tags.odd=1&size=10&page=4")
    assert keys == odd[30:40]  # metadata only narrowed in SQL: exact in Python


def test_expired_calls_are_left_out_of_a_page(tmp_path):
    cache = open_cache(str(tmp_path / "store"))
    live = cache.save(Call("step", {"x": 1}, module="lab", result=1))
    gone = cache.save(
        Call("step", {"x": 2}, module="lab", result=2, metadata={"expiry": {"expires": 1.0}})
    )
    keys, _ = shown(create_app(cache).test_client(), URL)
    assert live in keys and gone not in keys


def test_any_other_store_pages_its_query(sqlite):
    memory = Cache(ValueMemory(), CallMemory())
    for call in sqlite.query():
        memory.save(call)
    client = create_app(memory).test_client()
    every = [c.key() for c in memory.query(name="step")]
    assert shown(client, f"{URL}?size=20&page=5")[0] == every[80:100]
    keys, page = shown(client, f"{URL}?a.group=2&size=20&page=4")
    assert keys == [c.key() for c in memory.query(name="step", arguments={"group": 2})][60:80]
    assert 'rel="next"' not in page and 'rel="prev"' in page


def test_a_page_past_the_end_is_empty_and_links_back(sqlite):
    client = create_app(sqlite).test_client()
    keys, page = shown(client, f"{URL}?page=1000000000&a.group=1")
    assert keys == [] and "No call matches" in page and 'rel="first"' in page
    answer = client.get(f"{URL}?page=2&size=501")
    assert answer.status_code == 400 and "size must be" in answer.get_data(as_text=True)
    quoted = client.get("/f/lab:step'--?m.tags.odd=1")
    assert quoted.status_code == 404 and "holds no call" in quoted.get_data(as_text=True)


def test_a_function_whose_calls_all_expired_still_has_its_page(tmp_path):
    cache = open_cache(str(tmp_path / "store"))
    expired = {"expiry": {"expires": 1.0}}
    key = cache.save(Call("step", {"x": 1}, module="lab", result=1, metadata=expired))
    memory = Cache(ValueMemory(), CallMemory())
    memory.save(next(iter(cache.query(expired=True))))
    for store in (cache, memory):  # its columns come from an expired call
        assert pages_for(store).sample(QueryCall(name="step", module="lab")).key() == key
        keys, page = shown(create_app(store).test_client(), URL)
        assert keys == [] and "No call matches" in page and "sort=x" in page


def test_sqlite_counts_the_catalog_itself_and_lists_every_argument_name(sqlite):
    sqlite.save(Call("step", {"x": 0, "group": 0, "seed": 4}, module="lab", result=0))
    pages = pages_for(sqlite)
    assert pages.counts() == {("lab", "step"): CALLS + 1}
    assert pages.parameters() == {("lab", "step"): ("x", "group", "seed")}
    memory = Cache(ValueMemory(), CallMemory())
    assert pages_for(memory).counts() is None  # read from the records instead
    app = create_app(sqlite)
    catalog = app.extensions["fleche_ui"].catalog
    assert catalog.wait(30) and catalog.idle(30)
    assert catalog.parameters("lab", "step") == ("x", "group", "seed")
    assert f">{CALLS + 1}</td>" in app.test_client().get("/").get_data(as_text=True)


def test_a_damaged_row_is_left_out_of_its_page(tmp_path):
    cache = open_cache(str(tmp_path / "store"))
    keys = [cache.save(Call("step", {"x": x}, module="lab", result=x)) for x in range(3)]
    (database,) = (tmp_path / "store").rglob("*.db")
    with sqlite3.connect(database) as raw:  # its seal no longer matches its result
        raw.execute("UPDATE calls SET result = ? WHERE key = ?", ("0" * 32, keys[1]))
    shown_keys, page = shown(create_app(cache).test_client(), URL)
    assert shown_keys == [keys[2], keys[0]] and "Traceback" not in page


def test_only_a_sqlite_store_cuts_its_windows_itself(sqlite):
    """The capability behind the deep pages: declared by the store, forwarded by a plain cache."""
    assert sqlite.newest_first() is not None
    assert Cache(ValueMemory(), CallMemory()).newest_first() is None
    assert ReadOnlyCache(sqlite).newest_first() is None  # wrappers cut pages from their query


def test_a_postgresql_store_pages_from_its_query(tmp_path):
    calls = postgres_calls(tmp_path)  # skips, saying why, without a server
    assert Cache(ValueMemory(), calls).newest_first() is None
