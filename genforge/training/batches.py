"""Deterministic, resumable batches from an in-memory data set, sharded over processes.

Epoch e visits a permutation drawn from seed + e; process r of w takes every w-th index of each
global batch. The stream's position is two integers, so a checkpoint restores the data order
exactly.
"""

from __future__ import annotations

import torch

from genforge.data import ImageData, to_model_range
from genforge.training.contract import Batch


class BatchStream:
    """Global batches of `batch_size`; this process's share is split into `micro` micro-batches."""

    def __init__(self, data: ImageData, *, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, device: torch.device | str = "cpu") -> None:
        if batch_size > len(data):
            raise ValueError(f"train.batch_size={batch_size} exceeds the {len(data)} examples")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.epoch = 0
        self.position = 0  # global batches taken in this epoch
        self._order = self._permutation()

    @property
    def batches_per_epoch(self) -> int:
        return len(self.data) // self.batch_size  # the ragged tail is dropped

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.data), generator=g)

    def next(self, micro: int) -> list[Batch]:
        """The next global batch: this process's part, as `micro` micro-batches."""
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation()
        start = self.position * self.batch_size
        index = self._order[start : start + self.batch_size][self.rank :: self.world]
        self.position += 1
        x = to_model_range(self.data.images[index]).to(self.device, non_blocking=True)
        y = None if self.data.labels is None else self.data.labels[index].to(self.device)
        xs = x.chunk(micro)
        ys = y.chunk(micro) if y is not None else [None] * micro
        return [Batch(a, b) for a, b in zip(xs, ys, strict=True)]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation()
