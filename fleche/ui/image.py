"""Values that are pictures, drawn as PNG on the server with Pillow.

A picture is a Pillow image, or an array shaped like one: ``(H, W)`` grey
levels or ``(H, W, 3|4)`` RGB(A), of ``uint8`` or floats, at least
:data:`SMALLEST` pixels each way (a thin 2-D array is a table, not a
picture).  Floats within ``[0, 1]`` are taken as intensities; other floats
are stretched from their minimum to their maximum.  Without Pillow nothing
is a picture, and pages fall back to the other previews.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["LARGEST", "SMALLEST", "is_image", "png"]

#: Fewest pixels along each axis of an array shown as a picture.
SMALLEST = 8
#: Longest side of a preview; larger pictures are scaled down.
LARGEST = 512


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _pillow_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "mode")


def _image_array(value: Any) -> bool:
    if type(value).__module__ != "numpy" or not hasattr(value, "ndim"):
        return False
    shape = value.shape
    if value.ndim not in (2, 3) or (value.ndim == 3 and shape[2] not in (3, 4)):
        return False
    pixels = value.dtype.kind == "f" or value.dtype.name == "uint8"
    return pixels and min(shape[:2]) >= SMALLEST


def is_image(value: Any) -> bool:
    """Whether ``value`` is a picture the pages can draw (Pillow is needed for any)."""
    return _pillow() is not None and (_pillow_image(value) or _image_array(value))


def _levels(array: Any) -> Any:
    """An image array as ``uint8`` levels (NaNs black)."""
    import numpy as np

    if array.dtype.name == "uint8":
        return array
    data = np.asarray(array, dtype=float)
    finite = data[np.isfinite(data)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low < 0 or high > 1:  # not intensities: stretch to the full range
        data = (data - low) / ((high - low) or 1.0)
    return (np.nan_to_num(np.clip(data, 0, 1), nan=0.0) * 255).round().astype(np.uint8)


def png(value: Any, largest: int | None = LARGEST) -> bytes:
    """The picture ``value`` as PNG bytes, scaled down to ``largest`` pixels a side (``None``: as is)."""
    image_type = _pillow()
    if image_type is None or not is_image(value):
        raise ValueError("this value is not a picture (or Pillow is not installed)")
    if _pillow_image(value):
        picture = value.copy()
        if picture.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            picture = picture.convert("RGBA")
    else:
        picture = image_type.fromarray(_levels(value))
    if largest is not None:
        picture.thumbnail((largest, largest))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()
