"""Exponential moving average of a network's weights, swapped in for sampling and saving."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copies of the floating-point parameters of `net`; buffers are copied as they are.

    w_ema <- decay * w_ema + (1 - decay) * w, after each optimizer step past `start`.
    """

    def __init__(self, net: nn.Module, decay: float, start: int = 0) -> None:
        self.net = net
        self.decay = decay
        self.start = start
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        live = self.net.state_dict()
        names = [k for k, v in self.shadow.items() if v.is_floating_point()]
        current = [live[k].detach() for k in names]
        if step < self.start:
            torch._foreach_copy_([self.shadow[k] for k in names], current)
        else:
            torch._foreach_lerp_([self.shadow[k] for k in names], current, 1.0 - self.decay)
        for k, v in self.shadow.items():
            if not v.is_floating_point():
                v.copy_(live[k])  # integer buffers such as BatchNorm's step counter

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in self.shadow.items():
            v.copy_(state[k])

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[nn.Module]:
        """Run with the averaged weights in the net, then put the live weights back."""
        backup = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.net.load_state_dict(self.shadow)
        try:
            yield self.net
        finally:
            self.net.load_state_dict(backup)
