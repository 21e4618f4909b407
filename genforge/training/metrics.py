"""metrics.jsonl and TensorBoard: the mean of each value over the steps since the last line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


class MetricsLog:
    """Sums what `training_step` returns (tensors stay on device until a line is written)."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.sums: dict[str, Any] = {}
        self.count = 0  # micro-batches summed
        self.last_step = 0  # step of the last line written
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))

    def add(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def write(self, step: int, extra: dict[str, float]) -> dict[str, float]:
        row: dict[str, float] = {"step": step}
        row.update({k: float(v) / max(self.count, 1) for k, v in self.sums.items()})
        row.update(extra)
        self.sums, self.count, self.last_step = {}, 0, step
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if self._tb is not None:
                for key, value in row.items():
                    if key != "step":
                        self._tb.add_scalar(key, value, step)
        return row

    def state_dict(self) -> dict[str, Any]:
        """The partial sums, so a resumed run writes the same lines as an unbroken one."""
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count,
                "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = dict(state["sums"])
        self.count = int(state["count"])
        self.last_step = int(state["last_step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
