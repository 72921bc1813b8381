"""The idx parser on small synthetic files, plain and gzip, valid and corrupt."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from equify.data import parse_idx, read_idx

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
_CODES[np.float64] = 0x0E


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` in the idx format (written independently of the parser under test)."""
    code = _CODES[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, compress: bool) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64], ids=str
)
def test_roundtrip(tmp_path: Path, dtype, compress: bool) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(5, 4, 3)) * 100).astype(dtype)
    # the file name does not matter: gzip is detected from the content
    out = read_idx(write_idx(tmp_path / "f.bin", arr, compress))
    assert out.shape == (5, 4, 3) and out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_labels_file_one_dimension(tmp_path: Path) -> None:
    arr = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l.gz", arr, True)), arr)


def test_big_endian_dimensions_are_decoded() -> None:
    arr = np.zeros((300, 2, 1), dtype=np.uint8)  # 300 needs two bytes: big-endian matters
    assert parse_idx(idx_bytes(arr)).shape == (300, 2, 1)


def _good() -> bytes:
    return idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "shorter than the header"),
        (b"\x01\x00\x08\x01" + _good()[4:], "two zero bytes"),
        (b"\x00\x00\x07\x03" + _good()[4:], "unknown idx type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (_good()[:10], "truncated idx header"),
        (_good()[:-1], "truncated"),
        (_good() + b"\x00", "trailing bytes"),
        (b"\x00\x00\x0b\x01" + struct.pack(">I", 3) + b"\x00" * 5, "truncated"),
    ],
    ids=["short", "magic", "type", "ndim0", "header", "truncated", "trailing", "int16-odd"],
)
def test_corrupt_data_raises_value_error(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_idx(data, source="x.idx")


def test_corrupt_files_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_good())[:-12])  # truncated gzip stream
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*gzip"):
        read_idx(p)
    p.write_bytes(gzip.compress(_good()[:-3]))  # valid gzip of a truncated idx
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: idx file truncated"):
        read_idx(p)
    p.write_bytes(b"\x1f\x8bgarbage")  # gzip magic, corrupt stream
    with pytest.raises(ValueError, match="gzip"):
        read_idx(p)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")
