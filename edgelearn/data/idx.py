"""The IDX file format of MNIST: a big-endian header (magic, dimension sizes) followed by the raw array.

The magic number is ``0x0000TTDD``: two zero bytes, a type code ``TT`` and the number of dimensions ``DD``.
MNIST images are ``2051`` (0x0803: unsigned bytes, 3 dims) and labels ``2049`` (0x0801: unsigned bytes, 1 dim).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import read_bytes

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# type code -> numpy dtype (IDX data is big-endian)
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}


def parse_idx(buf: bytes, source: str, expected_magic: int | None = None) -> np.ndarray:
    """Decode an IDX buffer into an array of the declared shape (native byte order; no copy for uint8).

    ``source`` names the file in error messages. Raises DataError on a bad magic number, a truncated header or
    body, or trailing bytes.
    """
    size = len(buf)
    if size < 4:
        raise DataError(f"{source}: truncated IDX file ({size} bytes, shorter than the 4-byte magic number)")
    magic = int.from_bytes(buf[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{source}: bad magic number {magic} (0x{magic:08x}), expected {expected_magic} "
            f"for an IDX {_KIND.get(expected_magic, 'data')} file"
        )
    code, ndim = buf[2], buf[3]
    if buf[0] != 0 or buf[1] != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{source}: not an IDX file (bad magic number 0x{magic:08x})")
    header = 4 + 4 * ndim
    if size < header:
        raise DataError(f"{source}: truncated IDX file ({size} bytes, header alone needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if size < expected:
        raise DataError(
            f"{source}: truncated IDX file: header declares shape {dims} ({expected} bytes) "
            f"but the file holds {size} bytes"
        )
    if size > expected:
        raise DataError(
            f"{source}: corrupt IDX file: {size - expected} unexpected trailing bytes after the declared "
            f"shape {dims}"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (``*.gz``)."""
    path = Path(path)
    return parse_idx(read_bytes(path), str(path), expected_magic)


def encode_idx(arr: np.ndarray) -> bytes:
    """The IDX encoding of ``arr`` (the inverse of :func:`parse_idx`; used to write test fixtures)."""
    arr = np.asarray(arr)
    for code, dtype in IDX_DTYPES.items():
        if dtype.kind == arr.dtype.kind and dtype.itemsize == arr.dtype.itemsize:
            break
    else:
        raise DataError(f"cannot encode dtype {arr.dtype} as IDX")
    if arr.ndim == 0 or arr.ndim > 255:
        raise DataError(f"cannot encode a {arr.ndim}-dimensional array as IDX")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=dtype).tobytes()
