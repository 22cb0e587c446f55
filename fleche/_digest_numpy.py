"""Digests of numpy arrays, scalars and dtypes (imported only once numpy is in use).

An array is its dtype, its shape and its values in C order, little-endian. A
C-contiguous little-endian buffer is hashed straight from memory (no copy);
anything else (Fortran order, strided views, big-endian) is copied in pieces of
at most ``CHUNK_BYTES``, never whole (Fortran-order arrays and transposed views
in blocks of rows, by the C extension :mod:`fleche._transpose` where it is
built, else tile by tile with numpy). So a Fortran-ordered array and a sliced
view digest like their C-ordered copies, with or without the extension.

Decisions:

- Array values are hashed by their bits: NaN payloads and -0.0 in arrays are
  not canonicalised (that would cost a pass over the data). numpy *scalars*
  canonicalise NaN like Python floats.
- Scalars are tagged by dtype: ``np.float64(1) != 1.0 != np.float32(1)``.
- Structured arrays are hashed field by field (padding bytes never enter).
- Object arrays digest every element with the general rules.
- ``np.ma.MaskedArray`` digests its data *and* its mask (data under the mask counts).
- ``np.memmap`` and ``np.recarray`` digest as plain arrays; ``np.matrix`` is
  tagged as a subclass. Other ndarray subclasses are refused (see fleche.digest).
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import xxhash

from fleche._digest_helper import Fill, helper_useful, pieces_in_order
from fleche._digest_scheme import (
    Encoder,
    Tag,
    composite,
    encode,
    header,
    named_callable,
    pack_head,
    qualname,
    relocate,
    stream,
    subclass_encoder,
)
from fleche.errors import Indigestible

CHUNK_BYTES = 1 << 20
"""Largest piece copied at once when an array is not C-contiguous little-endian.

1 MB (an L2-sized piece, hashed while still in cache) measured fastest of
256 KB to 16 MB for Fortran-order and strided arrays (``benchmarks/bench_digest.py``).
"""

TILE_BYTES = 1 << 18
BLOCK_ROWS = (128, 64)
BLOCK_BYTES = 1 << 25
"""The transposing copy of Fortran-order arrays (see ``_transposed_pieces``) fills
blocks of ``BLOCK_ROWS[0]`` whole rows (``BLOCK_ROWS[1]`` if a row is over 16 KiB),
of at most ``BLOCK_BYTES``, in tiles of at most ``TILE_BYTES``. Of 16 to 512 rows
and 128 to 1,024 tile columns, this measured fastest on 100 MB float64 arrays of
125 to 100,000 columns (``benchmarks/bench_digest.py``): fewer rows read too
little of each column at a time, more leave the block and the tiles out of the
caches."""

SHARED_MIN_BYTES = 1 << 21
"""Without the extension, from this size on, the transposing copy is shared with a helper thread
(:mod:`fleche._digest_helper`), through ``HELPER_BUFFERS`` buffers of a block
each: of 2 to 4, 3 measured fastest on 100 MB arrays (``benchmarks/bench_digest.py``).
At 2 MB (four blocks) it still cut the wall time 0.53 -> 0.32 ms, for 0.59 ms
of CPU time; smaller arrays have too few blocks to share."""
HELPER_BUFFERS = 3


def _extension() -> Any:
    """The extension's ``copy_c_order``, or None where it is not built (numpy copies then).

    ``FLECHE_REQUIRE_EXTENSION=1`` makes a missing extension an error, so CI
    proves it is built.
    """
    try:
        from fleche._transpose import copy_c_order
    except ImportError as error:
        if os.environ.get("FLECHE_REQUIRE_EXTENSION") == "1":
            raise ImportError(
                "fleche._transpose (fleche's C extension for Fortran-order arrays) is not "
                "built, and FLECHE_REQUIRE_EXTENSION=1 requires it: reinstall fleche where "
                "a C compiler and Python's headers are present (pip install -e .)"
            ) from error
        return None
    return copy_c_order


_copy_c_order = _extension()

_H_NDARRAY = header(Tag.NDARRAY)
_H_STRUCT = header(Tag.NDARRAY_STRUCT)
_H_OBJECT = header(Tag.NDARRAY_OBJECT)
_H_SCALAR = header(Tag.NPSCALAR)
_H_DTYPE = header(Tag.DTYPE)
_H_MASKED = header(Tag.MASKED)
_H_REDUCTION = header(Tag.REDUCTION)


def _describe(dtype: np.dtype) -> Any:
    """A plain, packing-independent description of a dtype (byte order made little)."""
    if dtype.fields is not None:
        return ("struct", tuple((name, _describe(dtype.fields[name][0])) for name in dtype.names))
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return ("subarray", _describe(base), shape)
    return dtype.newbyteorder("<").str


@functools.lru_cache(maxsize=1024)
def dtype_digest(dtype: np.dtype) -> bytes:
    """Digest of a dtype; cached, as a few dtypes are met again and again."""
    return composite(_H_DTYPE, [encode(_describe(dtype))])


def _pieces(arr: np.ndarray, canonical: np.dtype) -> Iterator[np.ndarray]:
    """Byte views of ``arr`` in C order as ``canonical``; at most CHUNK_BYTES copied at a time.

    Copies go through one reused buffer (fresh large allocations cost page
    faults); each piece is only valid until the next one is requested.
    """
    if arr.flags.c_contiguous and arr.dtype == canonical:
        yield arr.reshape(-1).view(np.uint8)  # zero copy: the hot path for big arrays
        return
    if arr.ndim == 0:
        yield arr.astype(canonical).reshape(-1).view(np.uint8)
        return
    row_bytes = arr.nbytes // len(arr)
    if arr.ndim > 1 and abs(arr.strides[0]) < abs(arr.strides[1]) and row_bytes <= BLOCK_BYTES:
        yield from _transposed_pieces(arr, canonical)
        return
    if row_bytes > CHUNK_BYTES:
        for row in arr:
            yield from _pieces(row, canonical)
        return
    rows = CHUNK_BYTES // row_bytes
    buffer = np.empty((min(rows, len(arr)), *arr.shape[1:]), dtype=canonical)
    for start in range(0, len(arr), rows):
        piece = arr[start : start + rows]
        out = buffer[: len(piece)]
        np.copyto(out, piece)
        yield out.reshape(-1).view(np.uint8)


def _transposed_pieces(arr: np.ndarray, canonical: np.dtype) -> Iterator[np.ndarray]:
    """C-order pieces of an array whose first axis is closer in memory than its second.

    That is a Fortran-order array or a transposed view, and the copy is a
    transpose: row by row, it would touch one cache line and one page per
    element. So blocks of rows are filled tile by tile, and the lines a tile
    reads are used up while they are in the cache.

    The extension :mod:`fleche._transpose` copies each block in one call,
    in 4 x 4 blocks transposed in registers, its source lines requested
    ahead: 100 MB of float64 then digest in about twice the time xxh3 takes
    over a C-order twin, on one thread (``benchmarks/bench_digest.py``).

    Without it, numpy's transposing copy moves one element at a time (~0.7
    ns each, ~8 ms per 100 MB even in the cache), about three times what
    hashing the block costs (copies moving 2, 4 or 8 rows as one wider
    element, or tiles copied whole into a tiled buffer and then into rows,
    were slower: 16 to 40 ms). From ``SHARED_MIN_BYTES`` on, a helper thread
    then copies blocks ahead while this thread hashes them in order
    (:mod:`fleche._digest_helper`): on two idle cores, 100 MB of 10,000 x
    1,250 took 9.4 -> 5.7 ms of wall time (10.6 ms of CPU time), of 1,250 x
    10,000 13.2 -> 9.3 ms (16.9 ms of CPU time); with the other core busy,
    the wait is no shorter than alone, and the CPU time up to twice (issue 13).
    Hashing in the helper while this thread copies, or splitting each block
    between the threads, measured worse.
    """
    row_bytes = arr.nbytes // len(arr)
    rows = BLOCK_ROWS[0] if row_bytes <= 1 << 14 else BLOCK_ROWS[1]
    rows = max(1, min(rows, BLOCK_BYTES // row_bytes, len(arr)))
    count = -(-len(arr) // rows)
    if _copy_c_order is not None:
        fill = _extension_fill(arr, rows, canonical)
        buffer = _block_buffer(arr, rows, canonical)
        for block in range(count):
            yield fill(block, buffer)
        return
    fill = _tiled_fill(arr, rows)
    shared = (
        arr.nbytes >= SHARED_MIN_BYTES
        and count > 1
        and HELPER_BUFFERS * rows * row_bytes <= BLOCK_BYTES  # no more memory than one block
        and helper_useful()
    )
    buffers = [_block_buffer(arr, rows, canonical) for _ in range(HELPER_BUFFERS if shared else 1)]
    if shared:
        spare = functools.partial(_block_buffer, arr, rows, canonical)
        yield from pieces_in_order(count, fill, buffers, spare)
        return
    for block in range(count):
        yield fill(block, buffers[0])


def _extension_fill(arr: np.ndarray, rows: int, canonical: np.dtype) -> Fill:
    """Fills a buffer with block ``block`` of ``rows`` rows by the extension's copy.

    It copies items as raw bytes (a void view passes any dtype through the
    buffer protocol); a big-endian block is then byte-swapped in the buffer.
    """
    raw = arr.view(np.dtype((np.void, arr.itemsize)))
    swap = arr.dtype != canonical

    def fill(block: int, buffer: np.ndarray) -> np.ndarray:
        piece = raw[block * rows : (block + 1) * rows]
        out = buffer[: len(piece)]
        _copy_c_order(piece, out)
        if swap:
            out.byteswap(inplace=True)
        return out.reshape(-1).view(np.uint8)

    return fill


def _tiled_fill(arr: np.ndarray, rows: int) -> Fill:
    """Fills a buffer with block ``block`` by numpy copies, tile by tile."""
    columns = max(1, TILE_BYTES // (rows * (arr.nbytes // len(arr) // arr.shape[1])))

    def fill(block: int, buffer: np.ndarray) -> np.ndarray:
        piece = arr[block * rows : (block + 1) * rows]
        out = buffer[: len(piece)]
        for column in range(0, arr.shape[1], columns):
            end = column + columns
            np.copyto(out[:, column:end], piece[:, column:end])
        return out.reshape(-1).view(np.uint8)

    return fill


def _block_buffer(arr: np.ndarray, rows: int, canonical: np.dtype) -> np.ndarray:
    return np.empty((rows, *arr.shape[1:]), dtype=canonical)


_SHAPES = [struct.Struct(f"<Q{n}Q").pack for n in range(65)]  # numpy allows 64 dimensions
_IN_PLACE: dict[np.dtype, bytes] = {}
"""dtype -> its digest, for the dtypes whose C-contiguous arrays are hashed as they lie."""


def _in_place_prefix(dtype: np.dtype) -> bytes | None:
    """The dtype's digest if its arrays' bytes are the scheme's: numbers, little-endian."""
    prefix = _IN_PLACE.get(dtype)
    if prefix is None and dtype.kind in "biufc" and dtype == dtype.newbyteorder("<"):
        prefix = _IN_PLACE[dtype] = dtype_digest(dtype)
    return prefix


def encode_array(arr: np.ndarray) -> bytes:
    """Digest of a plain ndarray by dtype, shape and values."""
    dtype = arr.dtype
    prefix = _in_place_prefix(dtype)
    if prefix is not None and arr.flags.c_contiguous:  # the common case, in a few calls
        prefix += _SHAPES[arr.ndim](arr.ndim, *arr.shape)
        hasher = xxhash.xxh3_128(pack_head(_H_NDARRAY, len(prefix) + arr.nbytes))
        hasher.update(prefix)
        hasher.update(arr)
        return hasher.digest()
    if dtype.fields is not None:
        return _encode_structured(arr)
    if dtype.hasobject:
        return _encode_objects(arr)
    prefix = dtype_digest(dtype) + _SHAPES[arr.ndim](arr.ndim, *arr.shape)
    pieces = _pieces(arr, dtype.newbyteorder("<")) if arr.nbytes else ()
    return stream(_H_NDARRAY, len(prefix) + arr.nbytes, _chain(prefix, pieces))


def _chain(first: bytes, rest: Any) -> Iterator[Any]:
    yield first
    yield from rest


def _encode_structured(arr: np.ndarray) -> bytes:
    names = arr.dtype.names
    try:
        fields = [encode_array(arr[name]) for name in names]
    except Indigestible:
        relocate((f"[{name!r}]", arr[name]) for name in names)
        raise
    return composite(_H_STRUCT, [dtype_digest(arr.dtype), encode(arr.shape)] + fields)


def _encode_objects(arr: np.ndarray) -> bytes:
    flat = arr.ravel(order="C")  # a copy of the pointers only if arr is not C-contiguous
    try:
        parts = [encode(x) for x in flat]
    except Indigestible:
        relocate((_index(i, arr.shape), x) for i, x in enumerate(flat))
        raise
    return composite(_H_OBJECT, [encode(arr.shape)] + parts)


def _index(flat_index: int, shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(k)) for k in np.unravel_index(flat_index, shape)) + "]"


def _encode_masked(arr: np.ma.MaskedArray) -> bytes:
    data = encode_array(np.ma.getdata(arr).view(np.ndarray))
    mask = encode_array(np.ma.getmaskarray(arr).view(np.ndarray))
    return composite(_H_MASKED, [data, mask])


def _encode_scalar(value: np.generic) -> bytes:
    arr = np.array(value)
    if arr.dtype.kind in "fc":  # one NaN per dtype, like Python floats
        for part in (arr.real, arr.imag) if arr.dtype.kind == "c" else (arr,):
            np.copyto(part, np.nan, where=np.isnan(part))
    return composite(_H_SCALAR, [encode_array(arr)])


def _state_encoder(cls: type, state: Any) -> Encoder:
    name = encode(qualname(cls))
    return lambda obj: composite(_H_REDUCTION, [name, encode(state(obj))])


def resolve(cls: type) -> Encoder | None:
    """The encoder for a class defined by numpy, or None if numpy has no rule for it."""
    if cls is np.ndarray:
        return encode_array
    if issubclass(cls, np.ma.MaskedArray):
        return _encode_masked
    if issubclass(cls, np.matrix):
        return subclass_encoder(cls, lambda obj: encode_array(obj.view(np.ndarray)))
    if issubclass(cls, (np.memmap, np.recarray)):
        return lambda obj: encode_array(obj.view(np.ndarray))
    if issubclass(cls, np.generic):
        return _encode_scalar
    if issubclass(cls, np.dtype):
        return dtype_digest
    if issubclass(cls, np.ufunc):
        return lambda func: named_callable(f"numpy.{func.__name__}")
    if cls.__name__ == "_ArrayFunctionDispatcher":  # np.sum and friends: library code, by name
        return lambda func: named_callable(f"{func.__module__}.{func.__qualname__}")
    if issubclass(cls, np.random.Generator):
        return _state_encoder(cls, lambda rng: rng.bit_generator.state)
    if issubclass(cls, np.random.RandomState):
        return _state_encoder(cls, lambda rng: rng.get_state(legacy=False))
    if issubclass(cls, np.random.BitGenerator):
        return _state_encoder(cls, lambda bits: bits.state)
    return None
