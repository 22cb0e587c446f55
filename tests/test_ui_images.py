"""``fleche ui`` draws values that are pictures as PNG, served by the server and decoded here."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

pytest.importorskip("flask")
Image = pytest.importorskip("PIL.Image")

from fleche import Call  # noqa: E402
from fleche.config import open_cache  # noqa: E402
from fleche.ui import create_app  # noqa: E402

RGB = np.arange(24 * 40 * 3, dtype=np.uint8).reshape(24, 40, 3)
GREY = np.linspace(-5.0, 5.0, 30 * 20).reshape(30, 20)  # floats outside [0, 1]: stretched


@pytest.fixture
def store(tmp_path):
    cache = open_cache(str(tmp_path / "store"))
    cache.save(Call("camera", {"frame": 1}, module="lab", result=RGB))
    cache.save(Call("field", {"frame": GREY}, module="lab", result="<b>a caption</b>"))
    cache.save(Call("photo", {"n": 1}, module="lab", result=Image.new("RGB", (600, 300), "red")))
    cache.save(Call("table", {"n": 1}, module="lab", result=np.zeros((100, 3))))
    return cache


def only(store, name: str):
    (call,) = store.query(name=name)
    return call.key(), call.digested_call


def picture(client, page: str):
    """The one picture a page shows, fetched and decoded."""
    (src,) = re.findall(r'<img class="picture" src="([^"]+)"', page)
    answer = client.get(src)
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    return Image.open(io.BytesIO(answer.data))


def test_an_rgb_array_is_drawn_pixel_for_pixel(store):
    client = create_app(store).test_client()
    key, record = only(store, "camera")
    page = client.get(f"/c/{key}").get_data(as_text=True)
    drawn = picture(client, page)
    assert drawn.size == (40, 24)
    np.testing.assert_array_equal(np.asarray(drawn.convert("RGB")), RGB)
    download = client.get(f"/v/{record.result}/download?format=png")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(download.data))), RGB)


def test_a_float_field_is_stretched_to_grey_levels_and_text_shown_as_text(store):
    client = create_app(store).test_client()
    key, record = only(store, "field")
    page = client.get(f"/c/{key}").get_data(as_text=True)
    levels = np.asarray(picture(client, page))
    assert levels.shape == (30, 20) and levels.min() == 0 and levels.max() == 255
    assert "&lt;b&gt;a caption&lt;/b&gt;" in page and "<b>a caption" not in page


def test_a_pillow_image_is_scaled_down_for_its_preview_only(store):
    client = create_app(store).test_client()
    key, record = only(store, "photo")
    page = client.get(f"/v/{record.result}").get_data(as_text=True)
    assert "600 × 300" in page
    assert picture(client, page).size == (512, 256)
    full = client.get(f"/v/{record.result}/download?format=png")
    assert Image.open(io.BytesIO(full.data)).size == (600, 300)


def test_a_thin_array_or_a_text_is_no_picture(store):
    client = create_app(store).test_client()
    key, record = only(store, "table")
    assert "<img" not in client.get(f"/c/{key}").get_data(as_text=True)
    answer = client.get(f"/v/{record.result}/preview.png")
    assert answer.status_code == 404 and "not a picture" in answer.get_data(as_text=True)
    _, field = only(store, "field")
    assert client.get(f"/v/{field.result}/preview.png").status_code == 404
