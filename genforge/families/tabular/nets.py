"""Networks of the tabular synthesizers: plain MLPs, CTGAN's residual generator and PacGAN
critic, and TabDDPM's time-conditioned MLP denoiser. Rows are flat vectors (B, D)."""

from __future__ import annotations

import math

import torch
from torch import nn

from genforge.families.tabular.transformer import ModeNormalizer


def mlp(d_in: int, hidden: int, layers: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    blocks: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        blocks += [nn.Linear(d, hidden), nn.ReLU()]
        if dropout:
            blocks.append(nn.Dropout(dropout))
        d = hidden
    blocks.append(nn.Linear(d, d_out))
    return nn.Sequential(*blocks)


class Residual(nn.Module):
    """CTGAN's generator block: [relu(bn(fc(x))), x], so every layer sees the input."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.bn(self.fc(x))), x], 1)


class CTGANGenerator(nn.Module):
    """(noise z, condition vector) -> raw row vector; `norm` holds the column modes."""

    def __init__(self, d_noise: int, d_cond: int, hidden: int, layers: int, d_row: int,
                 n_num: int, max_modes: int) -> None:
        super().__init__()
        blocks, d = [], d_noise + d_cond
        for _ in range(layers):
            blocks.append(Residual(d, hidden))
            d += hidden
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(d, d_row)
        self.norm = ModeNormalizer(n_num, max_modes)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([z, cond], 1)))


class PacDiscriminator(nn.Module):
    """PacGAN critic (Lin et al. 2018): `pac` rows judged together as one input."""

    def __init__(self, d_in: int, hidden: int, layers: int, pac: int) -> None:
        super().__init__()
        self.pac = pac
        blocks: list[nn.Module] = []
        d = d_in * pac
        for _ in range(layers):
            blocks += [nn.Linear(d, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            d = hidden
        blocks.append(nn.Linear(d, 1))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(-1, x.shape[1] * self.pac)).squeeze(1)  # (B / pac,)


class TVAE(nn.Module):
    """Encoder row -> (mu, log var), decoder latent -> raw row vector, a learned noise scale
    per alpha (an Embedding looked up at index 0, so DP-SGD gets its per-row gradient), and
    `norm`, the column modes."""

    def __init__(self, d_row: int, hidden: int, layers: int, latent: int, n_num: int,
                 max_modes: int) -> None:
        super().__init__()
        self.encoder = mlp(d_row, hidden, layers, 2 * latent)
        self.decoder = mlp(latent, hidden, layers, d_row)
        self.log_sigma = nn.Embedding(1, max(n_num, 1))
        nn.init.constant_(self.log_sigma.weight, math.log(0.1))
        self.norm = ModeNormalizer(n_num, max_modes)
        self.n_num = n_num

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(-10, 10)

    def sigma(self, b: int, device: torch.device) -> torch.Tensor:
        """log sigma per alpha, (b, n_num)."""
        return self.log_sigma(torch.zeros(b, dtype=torch.long, device=device))[:, : self.n_num]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return self.decoder(z), mu, log_var, self.sigma(x.shape[0], x.device)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


class Denoiser(nn.Module):
    """TabDDPM's MLP: [x_num_t | one-hot x_cat_t] + time embedding (+ the target's class
    embedding, when `classes`) -> [eps | x0 logits]."""

    def __init__(self, d_in: int, hidden: int, layers: int, dropout: float,
                 classes: int = 0) -> None:
        super().__init__()
        self.d_time = 128
        self.time = nn.Sequential(nn.Linear(self.d_time, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden))
        self.label = nn.Embedding(classes, hidden) if classes else None
        self.proj = nn.Linear(d_in, hidden)
        self.body = mlp(hidden, 2 * hidden, layers, d_in, dropout)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.proj(x) + self.time(timestep_embedding(t, self.d_time))  # (B, hidden)
        if self.label is not None:
            h = h + self.label(labels)
        return self.body(torch.relu(h))
