"""The series network: lagged values + season embedding -> GRU or causal Transformer ->
the parameters of p(z_t | z_<t) for every target step of a window.

x (B, max_lag + L, D) holds the window's targets at [max_lag:] and the steps before them;
for target i the inputs are x[max_lag + i - lag] for each lag, so nothing from step i or later
is seen. Output: loc, scale (> 0) and df (> 2, Student-t only), each (B, L, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genforge.families.series.config import SeriesConfig


class SeriesNet(nn.Module):
    def __init__(self, cfg: SeriesConfig, dims: int, lags: list[int], period: int,
                 window: int) -> None:
        super().__init__()
        self.lags, self.period, self.dims = lags, period, dims
        self.max_lag = max(lags)
        self.season = nn.Embedding(period, cfg.season_dim) if period > 1 else None
        width = dims * len(lags) + (cfg.season_dim if period > 1 else 0)
        self.arch = cfg.arch
        if cfg.arch == "gru":
            self.body = nn.GRU(width, cfg.hidden, cfg.layers, batch_first=True,
                               dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        else:
            self.embed = nn.Linear(width, cfg.hidden)
            self.position = nn.Parameter(torch.zeros(window, cfg.hidden))
            layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, 4 * cfg.hidden,
                                               cfg.dropout, batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.n_params = 3 if cfg.likelihood == "student-t" else 2
        self.head = nn.Linear(cfg.hidden, dims * self.n_params)

    def forward(self, x: torch.Tensor, t0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, max_lag + L, D), t0 (B,) row of the first target -> params, each (B, L, D)."""
        steps = x.shape[1] - self.max_lag
        inputs = [x[:, self.max_lag - lag : self.max_lag - lag + steps] for lag in self.lags]
        h = torch.cat(inputs, -1)  # (B, L, D * lags)
        if self.season is not None:
            phase = (t0[:, None] + torch.arange(steps, device=x.device)) % self.period  # (B, L)
            h = torch.cat([h, self.season(phase)], -1)  # (B, L, width)
        if self.arch == "gru":
            h, _ = self.body(h)  # (B, L, hidden)
        else:
            h = self.embed(h) + self.position[-steps:]  # (B, L, hidden)
            mask = nn.Transformer.generate_square_subsequent_mask(steps, device=x.device)
            h = self.body(h, mask=mask, is_causal=True)  # (B, L, hidden)
        out = self.head(h).view(*h.shape[:2], self.dims, self.n_params)  # (B, L, D, k)
        loc = out[..., 0]
        scale = F.softplus(out[..., 1]) + 1e-3
        if self.n_params == 2:
            return loc, scale
        return loc, scale, 2.0 + F.softplus(out[..., 2])  # df > 2: a finite variance
