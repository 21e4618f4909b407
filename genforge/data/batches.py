"""The micro-batch every modality's stream hands the training loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """One micro-batch: `x` the model's input ((B, C, H, W) images in [-1, 1], token windows,
    encoded rows...) and `y` labels (B,) or None."""

    x: torch.Tensor
    y: torch.Tensor | None
