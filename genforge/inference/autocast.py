"""The precision a sampling call computes in, as an autocast context."""

from __future__ import annotations

from typing import Any

import torch

from genforge.runtime.precision import choose_precision


def autocast(nets: dict[str, torch.nn.Module], precision: str) -> Any:
    """bf16 autocast where `precision` (auto, fp32, bf16) resolves to it on the device of
    `nets`. Only the networks compute in bf16: families cast their outputs to fp32."""
    device = next((p.device for net in nets.values() for p in net.parameters()),
                  torch.device("cpu"))
    chosen, _ = choose_precision(precision, device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=chosen == "bf16")
