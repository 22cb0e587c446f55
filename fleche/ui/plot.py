"""Small inline SVG pictures of arrays, drawn on the server (no script, no asset).

Only numbers go into the markup these functions return, so it is safe to
insert unescaped.
"""

from __future__ import annotations

from typing import Any

__all__ = ["heatmap", "line"]

WIDTH, HEIGHT, POINTS, CELLS = 360, 120, 400, 48


def line(values: Any) -> str:
    """A line plot of a 1-D numeric array (at most :data:`POINTS` points sampled evenly)."""
    import numpy as np

    y = np.asarray(values, dtype=float).ravel()
    y = y[:: max(1, y.size // POINTS)]
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return ""
    low, high = float(finite.min()), float(finite.max())
    span = high - low or 1.0
    x = np.linspace(4, WIDTH - 4, y.size) if y.size > 1 else np.array([WIDTH / 2])
    ys = HEIGHT - 4 - (np.nan_to_num(y, nan=low) - low) / span * (HEIGHT - 8)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, ys, strict=True))
    return (
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="line plot, {low:.4g} to {high:.4g}">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" class="frame"/>'
        f'<polyline fill="none" stroke-width="1.5" points="{points}"/></svg>'
    )


def heatmap(values: Any) -> str:
    """A heat map of a 2-D numeric array, averaged down to at most :data:`CELLS` a side."""
    import numpy as np

    a = np.asarray(values, dtype=float)
    rows, cols = (max(1, -(-n // CELLS)) for n in a.shape[:2])
    a = a[: a.shape[0] // rows * rows or None, : a.shape[1] // cols * cols or None]
    a = a.reshape(a.shape[0] // rows, rows, a.shape[1] // cols, cols).mean(axis=(1, 3))
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return ""
    low, span = float(finite.min()), float(finite.max() - finite.min()) or 1.0
    size = min(WIDTH // max(a.shape[1], 1), 2 * HEIGHT // max(a.shape[0], 1), 24) or 1
    cells = []
    for i, row in enumerate(a):
        for j, v in enumerate(row):
            level = 0 if not np.isfinite(v) else int(255 * (v - low) / span)
            fill = f"rgb({level},{64 + level // 2},{255 - level})"
            cells.append(
                f'<rect x="{j * size}" y="{i * size}" width="{size}" height="{size}" fill="{fill}"/>'
            )
    w, h = a.shape[1] * size, a.shape[0] * size
    return f'<svg class="plot" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="heat map">{"".join(cells)}</svg>'
