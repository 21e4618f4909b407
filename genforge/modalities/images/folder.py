"""A folder of images: sub-folders are classes (as in ImageFolder), loose files are class 0."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from genforge.data.limits import check_pixels, too_many_pixels
from genforge.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_folder(
    root: Path, *, image_size: int | None, channels: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images under `root`, centre-cropped to squares and resized; uint8 (N, C, S, S)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of images (data.path)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    groups = [(d.name, _images_in(d)) for d in class_dirs] or [(root.name, _images_in(root))]
    groups = [(name, files) for name, files in groups if files]
    if not groups:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    mode = {1: "L", 3: "RGB", None: "RGB"}[channels]
    images, labels = [], []
    for label, (_, files) in enumerate(groups):
        for path in files:
            images.append(_read(path, mode, image_size))
            labels.append(label)
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        raise DataError(f"{root}: images differ in size {sorted(sizes)[:3]}; set data.image_size")
    stacked = np.stack(images)
    stacked = stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(stacked), np.asarray(labels, np.int64), [g[0] for g in groups]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read(path: Path, mode: str, size: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is below
            check_pixels(*im.size, str(path))  # from the header, before decoding
            im = im.convert(mode)
            if size is not None:
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side))
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError as err:
        raise too_many_pixels(str(path), err) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:200]})") from None
