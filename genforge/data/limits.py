"""Resource bounds: inputs that would need more memory than this machine has are refused up
front, from their headers, with the limit named (not by the OS, minutes later).

    check_bytes(n * 28 * 28, "train-images-idx3-ubyte", "its header")
    check_pixels(width, height, "photo.png")
    npy_header_bytes(fileobj)  # the bytes an .npy's header claims, before reading it
"""

from __future__ import annotations

import math
import os
import tokenize
from typing import IO

import numpy as np

from genforge.errors import DataError

GIB = 1 << 30
# the largest single input array or file content: a quarter of this machine's memory (at most
# 16 GiB); GENFORGE_MAX_INPUT_GIB raises or lowers it
_PHYSICAL = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") \
    if hasattr(os, "sysconf") else 16 * GIB
MAX_INPUT_BYTES = int(float(os.environ.get("GENFORGE_MAX_INPUT_GIB", 0)) * GIB) or \
    min(16 * GIB, _PHYSICAL // 4)
# a model in training: weights, gradients and two Adam moments in half this machine's memory
MAX_TRAINING_BYTES = _PHYSICAL // 2
# one input image (4096 x 4096): the models here work on 28-64 pixel sides
MAX_IMAGE_PIXELS = 4096 * 4096


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def check_bytes(nbytes: int, where: str, what: str = "it") -> None:
    """Refuse an input whose header claims more than MAX_INPUT_BYTES."""
    if nbytes > MAX_INPUT_BYTES:
        raise DataError(f"{where}: {what} claims {human(nbytes)}; inputs are limited to "
                        f"{human(MAX_INPUT_BYTES)} (a quarter of this machine's memory, "
                        "GENFORGE_MAX_INPUT_GIB)")


def check_pixels(width: int, height: int, where: str) -> None:
    """Refuse an image larger than MAX_IMAGE_PIXELS before decoding it."""
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{where}: a {width}x{height} image; input images are limited to "
                        f"{MAX_IMAGE_PIXELS:,} pixels (4096x4096)")


def too_many_pixels(where: str, err: Exception) -> DataError:
    """PIL's own refusal (DecompressionBombError, from the header) in our words."""
    return DataError(f"{where}: {' '.join(str(err).split()).split(',')[0]}; input images are "
                     f"limited to {MAX_IMAGE_PIXELS:,} pixels (4096x4096)")


def npy_header_bytes(f: IO[bytes]) -> int:
    """The size in bytes of the array an .npy stream's header describes (ValueError if the
    header is not one)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
        np.lib.format.read_array_header_2_0
    try:
        shape, _, dtype = read(f)
    except (tokenize.TokenError, SyntaxError) as err:  # numpy tokenizes the header text
        raise ValueError(f"a corrupt .npy header ({err})") from None
    return math.prod(shape) * dtype.itemsize
