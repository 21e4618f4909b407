"""Whole new series from a trained series model (not forecasts of the real one).

Each series starts from a context drawn at random from the model's training rows (the held-out
tail never feeds it), at its own season phase; the model then runs ancestrally for a burn-in
of `burn_in` steps, which are dropped, and `length` more, which are kept:

    context z[a : a + c]  (c = max_lag + window - 1, a ~ U)  ->  z_(c+1) ... z_(c+burn)  (dropped)
                                                          ->  z_(c+burn+1) ... (kept, `length`)

The burn-in lets the model forget the particular real stretch it started from (by default
two seasons or one window, the longer), so a series is the model's own, while its level,
season phase and scale are those of a real starting point. Values are returned in the data's
units (the log and the differencing undone from each context's last real value).

    from genforge.families.series.synthetic import synthesize
    series = synthesize(objective, 100, seed=0, length=120)  # (100, 120, D)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genforge.modalities.series.data import scale, unscale
from genforge.training.contract import bare


@torch.no_grad()
def synthesize(objective: Any, n: int, *, seed: int, length: int,
               burn_in: int | None = None) -> torch.Tensor:
    """n series (n, length, D) in the data's units, from a SeriesObjective."""
    if n <= 0 or length <= 0:
        raise ValueError(f"n={n}, length={length}: both must be positive")
    info = objective.info
    period, window, offset = info["period"], info["window"], int(info["difference"])
    burn = max(window, 2 * period) if burn_in is None else burn_in
    rows = info.get("fit_rows", info["train_rows"])  # what the model trained on
    values = np.asarray(info["history"], np.float64)[:rows]  # (T, D)
    values = values.reshape(len(values), -1)
    z = torch.from_numpy(scale(values, info)).float()  # (T', D)
    context = objective.max_lag + window - 1
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(z) - context + 1, (n,), generator=g)  # (n,)
    path = z[starts[:, None] + torch.arange(context)]  # (n, context, D)
    first_row = starts + context + offset  # the data row of the first generated step
    net = bare(objective.nets["net"])
    device = next(net.parameters()).device
    training = net.training
    net.eval()
    path, first_row = path.to(device), first_row.to(device)
    slot = torch.zeros(n, 1, z.shape[1], device=device)
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        for k in range(burn + length):
            t0 = first_row + k - window + 1  # (n,) row of the window's first target
            x = torch.cat([path[:, -context:], slot], 1)  # (n, context + 1, D)
            params = [p[:, -1] for p in net(x, t0)]  # each (n, D)
            draw = objective.distribution(params).sample()  # (n, D)
            path = torch.cat([path, draw[:, None]], 1)
    net.train(training)
    generated = path[:, context:].double().cpu()  # (n, burn + length, D)
    last = torch.from_numpy(values)[(first_row.cpu() - 1)][:, None]  # (n, 1, D)
    return unscale(generated, last, info)[:, burn:].float()
