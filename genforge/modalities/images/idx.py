"""The IDX format of MNIST and Fashion-MNIST, plain or gzipped."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from genforge.data.limits import check_bytes
from genforge.errors import DataError

# Magic numbers: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes; `.gz` files are decompressed on the fly. The header
    is checked before the body is read, so a file claiming 10^12 items is refused unread."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: {len(head)} bytes is too short for an IDX header")
            magic = int.from_bytes(head, "big")
            if magic != expected_magic:
                kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
                raise DataError(
                    f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                    f"(IDX unsigned-byte {kind}); is this the right file?"
                )
            ndim = magic & 0xFF
            dims = f.read(4 * ndim)
            shape = tuple(int.from_bytes(dims[4 * i : 4 + 4 * i], "big") for i in range(ndim))
            header = 4 + 4 * ndim
            expected = math.prod(shape) + header  # Python ints: no overflow
            if len(dims) == 4 * ndim:
                check_bytes(expected, str(path), f"its header {shape}")
            body = f.read(expected - header + 1) if len(dims) == 4 * ndim else b""
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: truncated or corrupt gzip file ({err}); fetch it again") from None
    size = header + len(body) if len(dims) == 4 * ndim else 4 + len(dims)
    if size != expected:
        raise DataError(
            f"{path}: {'more than ' if size > expected else ''}{size} bytes, but its header "
            f"{shape} needs {expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)
