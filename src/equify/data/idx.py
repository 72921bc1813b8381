"""A reader for the idx file format of MNIST and Fashion-MNIST (plain or gzip-compressed).

Format: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the data in C order, big-endian. Type codes: ``0x08`` uint8, ``0x09`` int8,
``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_TYPES", "parse_idx", "read_idx"]

#: idx type code -> numpy dtype (big-endian).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes | bytearray | memoryview, source: str = "idx data") -> np.ndarray:
    """Parse the bytes of an (uncompressed) idx file.

    Args:
        data: the whole file content.
        source: how to name the data in error messages (e.g. the file path).

    Returns:
        An array of the file's shape. Single-byte types are a read-only view of ``data`` (no
        copy); multi-byte types are converted to native byte order.

    Raises:
        ValueError: a bad magic number, an unknown type code, zero dimensions, or a size that does
            not match the header (truncated or trailing bytes); the message names ``source``.
    """
    buf = memoryview(data).cast("B")
    if len(buf) < 4:
        raise ValueError(f"{source}: not an idx file: {len(buf)} bytes, shorter than the header")
    zero0, zero1, code, ndim = buf[0], buf[1], buf[2], buf[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{source}: not an idx file: the magic number must start with two zero bytes, got "
            f"0x{bytes(buf[:4]).hex()}"
        )
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise ValueError(f"{source}: unknown idx type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{source}: idx header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(
            f"{source}: truncated idx header: {ndim} dimensions need {header} bytes, got {len(buf)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "has trailing bytes"
        raise ValueError(
            f"{source}: idx file {what}: header says shape {dims} of {dtype.name} "
            f"({expected} bytes with the header), got {len(buf)} bytes"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file, gzip-compressed or not (detected from the content, not the name).

    Args:
        path: the file.

    Returns:
        The array (see :func:`parse_idx`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a corrupt gzip stream or a malformed idx file; the message names the file.
    """
    p = Path(path)
    raw = p.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{p}: corrupt or truncated gzip file ({err})") from err
    return parse_idx(raw, source=str(p))
