"""Images read from files as completion inputs (`genforge complete`, eval's --real)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from genforge.errors import DataError


def read_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images for `complete`: .npz/.npy arrays or a PNG/JPEG file; uint8 (N, C, H, W)."""
    from genforge.data.limits import check_bytes, check_pixels, npy_header_bytes, too_many_pixels
    from genforge.modalities.images.cifar import load_npz, to_nchw

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such input file")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".npy":
        try:
            with path.open("rb") as f:  # the header first: a huge claim is refused unread
                check_bytes(npy_header_bytes(f), str(path), "its header")
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        return to_nchw(array, str(path)), None
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is below
            check_pixels(*im.size, str(path))  # from the header, before decoding
            if im.mode.startswith("I;16"):  # 16-bit grey: its top 8 bits, not clipped
                array = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
            else:
                array = np.asarray(im.convert("L" if im.mode in ("L", "1", "LA") else "RGB"))
    except Image.DecompressionBombError as err:
        raise too_many_pixels(str(path), err) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable PNG/JPEG image ({type(err).__name__})") from None
    return to_nchw(array[None], str(path)), None
