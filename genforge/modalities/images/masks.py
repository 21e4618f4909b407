"""The mask language of `complete`: which pixels are missing (True) and must be filled in.

    bottom-half | top-half | left-half | right-half | center | random:0.5 | path/to/mask.png|.npy
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genforge.errors import DataError

NAMED = ("bottom-half", "top-half", "left-half", "right-half", "center")


def make_mask(spec: str, shape: tuple[int, int, int, int], *, seed: int = 0) -> torch.Tensor:
    """A bool mask (N, 1, H, W), True where pixels are missing."""
    n, _, h, w = shape
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
    if spec == "bottom-half":
        mask[..., h // 2 :, :] = True
    elif spec == "top-half":
        mask[..., : h // 2, :] = True
    elif spec == "left-half":
        mask[..., :, : w // 2] = True
    elif spec == "right-half":
        mask[..., :, w // 2 :] = True
    elif spec == "center":
        mask[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    elif spec.startswith("random:"):
        try:
            share = float(spec.split(":", 1)[1])
        except ValueError:
            share = -1.0
        if not 0.0 < share < 1.0:
            raise DataError(f"mask {spec!r}: random:P needs 0 < P < 1, e.g. random:0.5")
        g = torch.Generator().manual_seed(seed)
        mask = torch.rand(n, 1, h, w, generator=g) < share
    elif Path(spec).suffix.lower() in (".png", ".npy", ".jpg", ".bmp"):
        mask = _mask_file(Path(spec), h, w).expand(n, 1, h, w).clone()
    else:
        raise DataError(
            f"mask {spec!r}: allowed are {', '.join(NAMED)}, random:P, or a .png/.npy file"
        )
    return mask


def _mask_file(path: Path, h: int, w: int) -> torch.Tensor:
    if not path.exists():
        raise DataError(f"{path}: no such mask file")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                array = np.asarray(im.convert("L"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable mask ({err}); use a .png or .npy of 0/1") from None
    array = np.squeeze(array)
    if array.shape != (h, w):
        raise DataError(f"{path}: mask of shape {array.shape}, images are {h}x{w}")
    return torch.from_numpy(array > (127 if array.dtype == np.uint8 else 0.5))[None, None]
