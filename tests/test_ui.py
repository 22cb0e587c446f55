"""``fleche ui``: the pages, their status codes and their escaping, through Flask's test client."""

from __future__ import annotations

import io
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flask")

from fleche import Call, fleche  # noqa: E402
from fleche.config import open_cache  # noqa: E402
from fleche.ui import create_app  # noqa: E402

HOSTILE = "<script>alert(1)</script>"


def simulate(rate: float, label: str = "run") -> np.ndarray:
    return np.linspace(0, rate, 50) ** 2


def analyse(profile: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"x": profile[:5], "label": ["<b>bold</b>"] * 5})


@pytest.fixture
def store(tmp_path):
    """A store with calls of two functions: arrays, a frame, a hostile string argument."""
    cache = open_cache(str(tmp_path / "store"))
    sim, ana = fleche(cache=cache)(simulate), fleche(cache=cache)(analyse)
    for i in range(30):
        ana(sim(0.1 * i, label=HOSTILE if i == 3 else f"run{i}"))
    return cache


@pytest.fixture
def client(store):
    return create_app(store).test_client()


def keys(store, name: str) -> list[str]:
    return [c.key() for c in store.query(name=name)]


def test_index_lists_functions_with_their_counts(client):
    page = client.get("/").get_data(as_text=True)
    rows = re.findall(
        r'<tr><td><a href="/f/([^"]+)">(\w+)</a></td><td>[^<]*</td><td class="num">(\d+)</td>', page
    )
    module = simulate.__module__
    assert sorted(rows) == [
        (f"{module}:analyse", "analyse", "30"),
        (f"{module}:simulate", "simulate", "30"),
    ]


def test_metadata_filters_are_template_queries(client, store):
    ident = f"{simulate.__module__}:simulate"
    host = next(iter(store.query(name="simulate"))).digested_call.metadata["environment"]["host"]
    assert (
        client.get(f"/f/{ident}?m.environment.host={host}")
        .get_data(as_text=True)
        .count('class="key"')
        == 30
    )
    assert (
        client.get(f"/f/{ident}?m.environment.host=elsewhere")
        .get_data(as_text=True)
        .count('class="key"')
        == 0
    )


def test_function_table_filters_by_argument_in_sql_terms(client, store):
    ident = f"{simulate.__module__}:simulate"
    every = client.get(f"/f/{ident}?size=500").get_data(as_text=True)
    assert every.count('class="key"') == 30
    one = client.get(f"/f/{ident}?a.rate=0.5").get_data(as_text=True)
    assert one.count('class="key"') == 1
    assert client.get(f"/f/{ident}?a.label=run7").get_data(as_text=True).count('class="key"') == 1


def test_pages_are_cut_and_link_to_the_next(client):
    ident = f"{simulate.__module__}:simulate"
    first = client.get(f"/f/{ident}?size=12").get_data(as_text=True)
    last = client.get(f"/f/{ident}?size=12&page=3").get_data(as_text=True)
    assert first.count('class="key"') == 12 and 'rel="next"' in first
    assert last.count('class="key"') == 6 and 'rel="next"' not in last and 'rel="prev"' in last


def test_sorting_by_an_argument_orders_the_rows(client):
    ident = f"{simulate.__module__}:simulate"
    page = client.get(f"/f/{ident}?sort=-rate&size=3").get_data(as_text=True)
    rates = re.findall(r"<td>(\d\.\d+)</td>", page)
    assert [float(r) for r in rates[:3]] == sorted((float(r) for r in rates[:3]), reverse=True)
    assert float(rates[0]) == pytest.approx(2.9)


def test_a_string_argument_is_shown_as_text(client, store):
    (key,) = [c.key() for c in store.query(name="simulate", arguments={"label": HOSTILE})]
    for url in (f"/c/{key}", f"/f/{simulate.__module__}:simulate?a.label=x"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>" not in page
    page = client.get(f"/c/{key}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    frame = client.get(f"/c/{keys(store, 'analyse')[0]}").get_data(as_text=True)
    assert "<b>bold</b>" not in frame and "&lt;b&gt;bold&lt;/b&gt;" in frame


def test_call_page_shows_previews_snippet_and_lineage(client, store):
    key = keys(store, "analyse")[5]
    record = store.load(key).digested_call
    page = client.get(f"/c/{key}").get_data(as_text=True)
    short = store.shrink(key)
    assert f'D("{short}")' in page
    assert '<svg class="plot"' in page  # the profile argument, plotted
    assert "<table" in page and "frame" in page  # the result's first rows
    producer = next(iter(store.query(result=record.arguments["profile"]))).key()
    assert f'href="/c/{producer}"' in page  # the lineage graph links to the producing call


def test_prefixes_redirect_to_the_stable_url(client, store):
    key = keys(store, "simulate")[0]
    answer = client.get(f"/c/{key[:12]}")
    assert answer.status_code == 302 and answer.location.endswith(f"/c/{key}")
    assert client.get(f"/search?q={key[:12]}").location.endswith(f"/c/{key}")
    result = store.load(key).digested_call.result
    assert client.get(f"/search?q={result[:12]}").location.endswith(f"/v/{result}")
    assert client.get(f"/c/{result}").location.endswith(f"/v/{result}")


@pytest.mark.parametrize(
    ("url", "status", "text"),
    [
        ("/c/0000000000000000000000000000000f", 404, "No stored call or value"),
        ("/v/xyz", 400, "not a hexadecimal"),
        ("/f/nowhere:nothing", 404, "holds no call"),
        ("/f/nocolon", 400, "module:name"),
        ("/f/{sim}?a.nosuch=1", 400, "no argument"),
        ("/f/{sim}?bogus=1", 400, "unknown filter"),
        ("/f/{sim}?page=zero", 400, "page must be"),
        ("/f/{sim}?sort=nosuch", 400, "cannot sort"),
        ("/v/{value}/download?format=exe", 400, "format must be one of"),
        ("/nothing/here", 404, "Not Found"),
    ],
)
def test_bad_input_gives_a_page_not_a_traceback(client, store, url, status, text):
    value = store.load(keys(store, "simulate")[0]).digested_call.result
    answer = client.get(
        url.format(sim=f"{simulate.__module__}:simulate", value=value), follow_redirects=True
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == status
    assert text in page and "Traceback" not in page and 'class="problem"' in page


def test_an_ambiguous_prefix_lists_the_candidates(client, store):
    every = [*keys(store, "simulate"), *keys(store, "analyse")]
    prefix = max("0123456789abcdef", key=lambda c: sum(k.startswith(c) for k in every))
    answer = client.get(f"/c/{prefix}")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "Ambiguous" in page
    listed = re.findall(r'href="/c/([0-9a-f]+)"', page)
    assert len(listed) >= 2 and all(k.startswith(prefix) for k in listed)


def test_downloads_read_back_as_the_stored_value(client, store):
    key = keys(store, "simulate")[4]
    digest = store.load(key).digested_call.result
    stored = store.load_value(digest)
    npy = client.get(f"/v/{digest}/download?format=npy")
    assert npy.status_code == 200 and "attachment" in npy.headers["Content-Disposition"]
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.data)), stored)
    csv = client.get(f"/v/{digest}/download?format=csv").get_data(as_text=True)
    np.testing.assert_allclose(np.loadtxt(io.StringIO(csv), delimiter=","), stored)
    np.testing.assert_array_equal(pickle.loads(client.get(f"/v/{digest}/download").data), stored)
    h5py = pytest.importorskip("h5py")
    with h5py.File(io.BytesIO(client.get(f"/v/{digest}/download?format=h5").data)) as f:
        np.testing.assert_array_equal(f["value"][()], stored)
    frame = store.load(keys(store, "analyse")[0]).digested_call.result
    assert client.get(f"/v/{frame}/download?format=npy").status_code == 400  # object columns


def test_no_write_without_allow_writes(client, store):
    key = keys(store, "simulate")[0]
    assert "Evict" not in client.get(f"/c/{key}").get_data(as_text=True)
    assert client.post(f"/c/{key}/evict").status_code == 403
    assert store.contains(key)


def test_allow_writes_evicts_only_with_the_page_token(store):
    client = create_app(store, allow_writes=True).test_client()
    key = keys(store, "simulate")[0]
    page = client.get(f"/c/{key}").get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    assert client.post(f"/c/{key}/evict", data={"token": "forged"}).status_code == 403
    assert store.contains(key)
    assert client.post(f"/c/{key}/evict", data={"token": token}).status_code == 302
    assert not store.contains(key)


def test_only_loopback_host_names_are_answered(client):
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400


def test_the_command_prints_its_url_first_and_serves(store, tmp_path):
    path = str(tmp_path / "store")
    env = {"PYTHONPATH": str(Path(__file__).parent.parent), "PATH": "/usr/bin:/bin"}
    server = subprocess.Popen(
        [sys.executable, "-m", "fleche", "ui", "--cache", path, "--port", "0", "--no-open"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.status == 200 and "simulate" in answer.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_consumers_are_drawn_on_a_small_store_or_when_asked(client, store):
    key = keys(store, "simulate")[2]
    consumer = next(
        iter(
            store.query(name="analyse", arguments={"profile": store.load(key).digested_call.result})
        )
    )
    link = f'href="/c/{consumer.key()}"'
    assert link in client.get(f"/c/{key}").get_data(as_text=True)  # 60 calls: drawn unasked
    without = client.get(f"/c/{key}?down=0").get_data(as_text=True)
    assert link not in without and 'id="no-consumers"' in without


def test_columns_are_every_argument_any_call_had(tmp_path):
    cache = open_cache(str(tmp_path / "grown"))
    cache.save(Call("grow", {"a": 1}, module="lab", result=1))
    cache.save(
        Call("grow", {"a": 2, "b": "x"}, module="lab", result=2)
    )  # a later version's argument
    page = create_app(cache).test_client().get("/f/lab:grow?a.b=x")
    assert page.status_code == 200 and page.get_data(as_text=True).count('class="key"') == 1
