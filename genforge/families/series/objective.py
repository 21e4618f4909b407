"""The series objective: negative log-likelihood of the next step, and sampled future paths.

    loss = -1/(B L D) sum log p(z_t | z_<t)        (Student-t or Normal, in scaled units)
    sampling (ancestral): z_{T+k} ~ p(. | z_<T+k), each draw fed back as the next input;
    n paths in one batch, then undo the scaling, differencing and log
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributions import Distribution, Normal, StudentT

from genforge.config import ConfigError, TrainConfig
from genforge.families.series.config import SeriesConfig
from genforge.families.series.data import scale, unscale, write_paths
from genforge.families.series.nets import SeriesNet
from genforge.training.contract import Batch, StepContext, bare


class SeriesObjective:
    sampling_nets = ("net",)
    default_out = "forecast.csv"  # `genforge sample` writes paths here unless told
    default_n = 100

    def __init__(self, cfg: SeriesConfig, data_info: dict[str, Any]) -> None:
        self.cfg, self.info = cfg, data_info
        self.max_lag, self.window = max(data_info["lags"]), data_info["window"]
        self.nets = {"net": SeriesNet(cfg, len(data_info["columns"]), data_info["lags"],
                                      data_info["period"], self.window)}

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.AdamW(self.nets["net"].parameters(), lr=train.lr,
                                         betas=train.betas, weight_decay=train.weight_decay)}

    def distribution(self, params: tuple[torch.Tensor, ...]) -> Distribution:
        if len(params) == 3:
            loc, scale_, df = params
            return StudentT(df, loc, scale_)
        return Normal(*params)

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        x, t0 = batch.x, batch.y  # (B, max_lag + L, D), (B,)
        params = self.nets["net"](x, t0)  # each (B, L, D)
        target = x[:, self.max_lag :]  # (B, L, D)
        loss = -self.distribution(params).log_prob(target).mean()
        step.update("net", loss)
        return {"loss/nll": loss.detach()}

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               horizon: int | None = None, history: Any = None) -> torch.Tensor:
        """n future paths (n, horizon, D) in the data's units, after `history` (T, D)
        (default: the whole series the model was trained with, held-out tail included)."""
        horizon = horizon or self.cfg.horizon
        if horizon <= 0:
            raise ConfigError(f"--horizon={horizon}: must be a positive integer")
        values = np.asarray(self.info["history"] if history is None else history, np.float64)
        values = values.reshape(len(values), -1)  # (T, D)
        z = torch.from_numpy(scale(values, self.info)).float()  # (T', D)
        need = self.max_lag + self.window
        if len(z) < need - 1:
            raise ConfigError(f"history of {len(values)} steps; this model needs at least "
                              f"{need - 1 + int(self.info['difference'])}")
        net = bare(self.nets["net"])
        device = next(net.parameters()).device
        training = net.training
        net.eval()
        path = z[-(need - 1) :].to(device).expand(n, -1, -1)  # (n, need - 1, D)
        slot = torch.zeros(n, 1, z.shape[1], device=device)  # the step to predict
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)
            for k in range(horizon):
                row = len(values) + k  # data row of the new step
                t0 = torch.full((n,), row - self.window + 1, device=device)
                x = torch.cat([path[:, -(need - 1) :], slot], 1)  # (n, need, D)
                params = [p[:, -1] for p in net(x, t0)]  # each (n, D)
                draw = self.distribution(params).sample()  # (n, D)
                path = torch.cat([path, draw[:, None]], 1)
        net.train(training)
        future = path[:, need - 1 :].double().cpu()  # (n, horizon, D)
        return unscale(future, torch.from_numpy(values[-1]), self.info).float()

    def write_samples(self, samples: torch.Tensor, out: Path | str) -> Path:
        return write_paths(samples, out, self.info["columns"])
