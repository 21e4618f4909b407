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


def poisson_indices(n: int, rate: float, *, seed: int, step: int) -> torch.Tensor:
    """Poisson sampling, the draw DP-SGD's accountants assume: each of the n records joins
    step `step`'s batch independently with probability `rate`, so the batch size is
    Binomial(n, rate) and may be 0. What Opacus' UniformWithReplacementSampler draws
    (`torch.rand(n) < rate`); a generator seeded by (seed, step) makes a resumed run draw
    the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + 2 * step + 1)
    return (torch.rand(n, generator=g) < rate).nonzero().squeeze(1)  # (B,) with B ~ Bin(n, q)
