"""Values in files other tools read: ``.npy``, ``.csv``, ``.h5``, ``.png`` (pictures) and pickle.

The file is written to a spooled temporary file (in memory up to
:data:`SPOOL`, on disk past it) and streamed from there in chunks, so a
large array never sits in the response twice.
"""

from __future__ import annotations

import pickle
import tempfile
from typing import IO, Any

from .image import png

__all__ = ["FORMATS", "write"]

SPOOL = 8 * 2**20

#: Format → (media type, file suffix).
FORMATS = {
    "npy": ("application/octet-stream", "npy"),
    "csv": ("text/csv", "csv"),
    "h5": ("application/x-hdf5", "h5"),
    "png": ("image/png", "png"),
    "pickle": ("application/octet-stream", "pkl"),
}


def write(value: Any, form: str) -> IO[bytes]:
    """``value`` in format ``form``, as a file positioned at its start.

    ``ValueError`` if the value has no such form (a dict as ``.npy``).
    """
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL)
    try:
        _WRITERS[form](value, out)
    except (TypeError, ValueError, AttributeError) as err:
        out.close()
        raise ValueError(f"this value cannot be written as .{FORMATS[form][1]}: {err}") from None
    out.seek(0)
    return out


def _npy(value: Any, out: IO[bytes]) -> None:
    import numpy as np

    np.save(out, np.asarray(value), allow_pickle=False)


def _csv(value: Any, out: IO[bytes]) -> None:
    if hasattr(value, "to_csv"):
        out.write(value.to_csv().encode())
        return
    import io

    import numpy as np

    array = np.asarray(value)
    if array.ndim > 2 or array.dtype.kind not in "biufcUSb":
        raise ValueError("only 1-D and 2-D arrays of numbers or text make a table")
    text = io.StringIO()
    np.savetxt(text, array if array.ndim else array.reshape(1), delimiter=",", fmt="%s")
    out.write(text.getvalue().encode())


def _h5(value: Any, out: IO[bytes]) -> None:
    import h5py
    import numpy as np

    with h5py.File(out, "w") as f:
        f.create_dataset("value", data=np.asarray(value))


def _png(value: Any, out: IO[bytes]) -> None:
    out.write(png(value, largest=None))


def _pickle(value: Any, out: IO[bytes]) -> None:
    pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)


_WRITERS = {"npy": _npy, "csv": _csv, "h5": _h5, "png": _png, "pickle": _pickle}
