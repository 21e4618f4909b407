"""The IDX format of MNIST and Fashion-MNIST, plain or gzipped."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genforge.data.errors import DataError

# Magic numbers: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes; `.gz` files are decompressed on the fly."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: truncated or corrupt gzip file ({err}); fetch it again") from None
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DataError(
            f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(IDX unsigned-byte {kind}); is this the right file?"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) + header
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw)} bytes, but its header {shape} needs {expected}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
