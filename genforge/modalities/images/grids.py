"""Image grids and files with PIL and numpy (torchvision is not a dependency)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genforge.data.atomic import atomic_path


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None,
              padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """uint8 (N, C, H, W) -> one uint8 image (H', W', C) with `nrow` images a row."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
    images = np.asarray(images)
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = images[i].transpose(1, 2, 0)
    return grid


def save_image(images: torch.Tensor | np.ndarray, path: str | Path,
               nrow: int | None = None, padding: int = 2) -> Path:
    """Write uint8 (N, C, H, W) images as one PNG grid, through a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images, nrow=nrow, padding=padding)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with atomic_path(path) as tmp:  # a full disk leaves no half-written file
        picture.save(tmp, format="PNG")
    return path
