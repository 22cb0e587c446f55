"""``fleche ui`` in a real browser: headless Chromium (Debian's) driven by Selenium.

A real ``fleche ui`` server runs over the demo store on a free loopback
port; the test opens the function list, filters a function's calls, opens
a call, follows its lineage down to a consumer and back up to the
producing call, and downloads an array to compare with the stored one.
Screenshots of the main pages go to ``$FLECHE_UI_SCREENSHOTS`` if set,
else to the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium is missing: apt-get install chromium chromium-driver (.ci/install-chromium)",
)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from fleche import Call, QueryCall  # noqa: E402
from fleche.config import open_cache  # noqa: E402

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo store, built by ``fleche demo`` in a directory of its own."""
    where = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, "-m", "fleche", "demo"],
        cwd=where,
        env=ENV,
        check=True,
        capture_output=True,
    )
    return where / ".fleche"


@contextlib.contextmanager
def serving(store: Path) -> Iterator[str]:
    """A ``fleche ui`` process over ``store``; yields the URL of its first line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fleche", "ui", "--cache", str(store), "--port", "0", "--no-open"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
    )  # fmt: skip
    try:
        yield process.stdout.readline().strip().rstrip("/")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(demo):
    with serving(demo) as url:
        yield url


@pytest.fixture
def shots(tmp_path):
    where = Path(os.environ.get("FLECHE_UI_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(tmp_path / "downloads"),
            "download.prompt_for_download": False,
        },
    )
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def settle(browser, condition) -> None:
    """Wait (up to a minute) for ``condition(browser)``: a click starts a navigation, it does not finish it."""
    WebDriverWait(browser, 60).until(condition)


def at(path: str):
    return lambda b: (
        b.current_url.endswith(path)
        and b.execute_script("return document.readyState") == "complete"
    )


def node(browser, key: str):
    return browser.find_element(By.CSS_SELECTOR, f'#lineage a[data-key="{key}"] rect')


def test_browse_filter_follow_lineage_and_download(server, demo, browser, shots, tmp_path):
    store = open_cache(str(demo))
    (diffuse,) = store.query(QueryCall(name="diffuse", arguments={"diffusivity": 0.1}))
    (spread,) = store.query(
        QueryCall(name="spread", arguments={"profile": diffuse.digested_call.result})
    )

    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "functions"))
    assert browser.title.startswith("Functions")
    browser.save_screenshot(str(shots / "index.png"))
    browser.find_element(By.LINK_TEXT, "diffuse").click()
    settle(browser, at("/f/fleche.demo:diffuse"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#calls a.key")) == 4
    browser.find_element(By.NAME, "a.diffusivity").send_keys("0.1")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    settle(browser, lambda b: "a.diffusivity=0.1" in b.current_url and at("")(b))
    rows = browser.find_elements(By.CSS_SELECTOR, "#calls a.key")
    assert len(rows) == 1 and "a.diffusivity=0.1" in browser.current_url
    browser.save_screenshot(str(shots / "function.png"))

    rows[0].click()
    settle(browser, at(f"/c/{diffuse.key()}"))
    assert browser.current_url.endswith(f"/c/{diffuse.key()}")
    browser.save_screenshot(str(shots / "call.png"))
    node(browser, spread.key()).click()  # downstream: the analysis of this profile
    settle(browser, at(f"/c/{spread.key()}"))
    assert browser.current_url.endswith(f"/c/{spread.key()}")
    node(browser, diffuse.key()).click()  # upstream: the call that produced its argument
    settle(browser, at(f"/c/{diffuse.key()}"))
    assert browser.current_url.endswith(f"/c/{diffuse.key()}")

    result = diffuse.digested_call.result
    browser.find_element(By.CSS_SELECTOR, f'#value-{result} a.download[href$="format=npy"]').click()
    target = tmp_path / "downloads" / f"{store.shrink(result)}.npy"
    deadline = time.monotonic() + 60
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    np.testing.assert_array_equal(np.load(target), store.load_value(result))

    browser.get(f"{server}/v/{result}")
    browser.save_screenshot(str(shots / "value.png"))
    starts = {str(call.key())[0] for call in store.query()}  # a prefix no call has
    browser.get(f"{server}/c/{min(set('0123456789abcdef') - starts)}")
    assert "Not found" in browser.page_source
    browser.save_screenshot(str(shots / "error.png"))


def test_a_picture_is_drawn_on_its_call_page(tmp_path, browser, shots):
    store = open_cache(str(tmp_path / "pictures"))
    y, x = np.mgrid[0:1:192j, 0:1:320j]
    picture = np.stack([x, y, 0.5 + 0.5 * np.sin(12 * x * y)], axis=-1)  # floats in [0, 1]
    key = store.save(Call("render", {"width": 320, "height": 192}, module="lab", result=picture))
    with serving(tmp_path / "pictures") as url:
        browser.get(f"{url}/c/{key}")
        settle(browser, at(f"/c/{key}"))
        image = browser.find_element(By.CSS_SELECTOR, "img.picture")
        settle(browser, lambda b: b.execute_script("return arguments[0].complete", image))
        assert browser.execute_script("return arguments[0].naturalWidth", image) == 320
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        browser.save_screenshot(str(shots / "picture.png"))
