"""What a page shows of a value: a one-line summary for a table cell, a preview for its page.

Arrays get their shape, dtype, statistics and a plot; pictures (Pillow
images, arrays shaped like images: :mod:`fleche.ui.image`) are drawn as
PNG; data frames show their first rows; text itself; anything else a
clipped ``repr``.  Every piece of
text is escaped by the templates; only the plots (numbers only) and the
frame tables (escaped by pandas) are inserted as markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from .image import is_image
from .plot import heatmap, line

__all__ = ["Preview", "clip", "preview", "summary"]

CELL, TEXT, ROWS = 40, 20_000, 10


def clip(text: str, width: int = CELL) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis if cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _kind(value: Any) -> str:
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return "array" if getattr(value, "ndim", 0) else "scalar"
    if module == "pandas" and hasattr(value, "to_frame") or type(value).__name__ == "DataFrame":
        return "frame"
    if module == "PIL" and is_image(value):
        return "image"
    return "text" if isinstance(value, str) else "other"


def summary(value: Any) -> str:
    """One short line: ``float64[1000]``, ``DataFrame 10×3``, or a clipped ``repr``."""
    kind = _kind(value)
    if kind == "array":
        return f"{value.dtype}[{'×'.join(map(str, value.shape))}]"
    if kind == "frame":
        return f"{type(value).__name__} {'×'.join(map(str, value.shape))}"
    if kind == "image":
        return f"{value.mode} image {value.width}×{value.height}"
    return clip(repr(value.item() if kind == "scalar" else value))


@dataclass(frozen=True)
class Preview:
    """A value as a page shows it: facts (label → text), text to show, markup (plot, table), a picture."""

    kind: str
    type: str
    facts: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    markup: Markup | None = None
    downloads: tuple[str, ...] = ("pickle",)
    #: Whether the page shows the value drawn as PNG (``/v/<digest>/preview.png``).
    image: bool = False


def preview(value: Any) -> Preview:
    """The preview of ``value`` for its call's or its own page."""
    kind = _kind(value)
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    if kind == "array":
        return _array(value, name)
    if kind == "image":
        facts = {"size": f"{value.width} × {value.height}", "mode": value.mode}
        return Preview("image", name, facts, downloads=("png", "pickle"), image=True)
    if kind == "frame":
        frame = value.to_frame() if hasattr(value, "to_frame") else value
        table = frame.head(ROWS).to_html(escape=True, border=0, classes="frame")
        facts = {
            "shape": " × ".join(map(str, value.shape)),
            "columns": clip(", ".join(map(str, frame.columns)), 200),
        }
        return Preview("frame", name, facts, markup=Markup(table), downloads=("csv", "pickle"))
    if kind == "text":
        return Preview(
            "text", name, {"length": f"{len(value):,} characters"}, text=clip(value, TEXT)
        )
    return Preview(kind, name, {}, text=clip(repr(value), TEXT))


def _array(value: Any, name: str) -> Preview:
    import numpy as np

    facts = {
        "shape": " × ".join(map(str, value.shape)),
        "dtype": str(value.dtype),
        "size": f"{value.size:,}",
    }
    numeric = np.issubdtype(value.dtype, np.number) and not np.issubdtype(
        value.dtype, np.complexfloating
    )
    image, plot = is_image(value), ""
    if numeric and value.size:
        with np.errstate(all="ignore"):
            facts.update(
                min=f"{np.nanmin(value):.6g}",
                max=f"{np.nanmax(value):.6g}",
                mean=f"{np.nanmean(value):.6g}",
            )
        if not image:
            plot = line(value) if value.ndim == 1 else heatmap(value) if value.ndim == 2 else ""
    downloads = ("npy", "csv", "h5", "pickle") if value.ndim <= 2 else ("npy", "h5", "pickle")
    if image:
        downloads = ("png", *downloads)
    with np.printoptions(threshold=50, edgeitems=5):
        text = clip(repr(value), TEXT)
    markup = Markup(plot) if plot else None
    return Preview("array", name, facts, text=text, markup=markup, downloads=downloads, image=image)
