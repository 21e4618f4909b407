"""VAE networks: an encoder q(z|x[,y]) giving (mu, log sigma^2) and a decoder p(x|z[,y]).

Images are (B, C, S, S) in [-1, 1]; the decoder returns Bernoulli logits or Gaussian means.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genforge.families.vae.config import VAEConfig


class VAE(nn.Module):
    """Encoder and decoder in one module, so they are saved, averaged and loaded together."""

    def __init__(self, cfg: VAEConfig, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.num_classes = num_classes if cfg.conditional else 0
        body = _mlp_parts if cfg.arch == "mlp" else _conv_parts
        self.encoder, self.decoder = body(cfg, channels, image_size, self.num_classes)
        # log sigma of a Gaussian likelihood, learned when obs_sigma is null
        learned = cfg.likelihood == "gaussian" and cfg.obs_sigma is None
        self.log_sigma = nn.Parameter(torch.zeros(()), requires_grad=learned)
        if cfg.obs_sigma is not None:
            self.log_sigma.data.fill_(math.log(cfg.obs_sigma))

    def _label(self, y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        return F.one_hot(y, self.num_classes).to(like.dtype)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        h = x.flatten(1)  # (B, C*S*S)
        onehot = self._label(y, h)
        stats = self.encoder(h if onehot is None else torch.cat([h, onehot], 1))  # (B, 2L)
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Encode, reparameterise, decode: (decoder output, mu, log sigma^2)."""
        mu, logvar = self.encode(x, y)  # (B, L) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z, y), mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        onehot = self._label(y, z)
        out = self.decoder(z if onehot is None else torch.cat([z, onehot], 1))
        return out.view(-1, *self.shape)  # (B, C, S, S): logits or means


def _mlp_parts(cfg: VAEConfig, channels: int, size: int, classes: int):
    pixels = channels * size * size
    encoder = nn.Sequential(
        nn.Linear(pixels + classes, cfg.hidden), nn.ReLU(),
        nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
        nn.Linear(cfg.hidden, 2 * cfg.latent_dim),
    )
    decoder = nn.Sequential(
        nn.Linear(cfg.latent_dim + classes, cfg.hidden), nn.ReLU(),
        nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
        nn.Linear(cfg.hidden, pixels),
    )
    return encoder, decoder


class _Unflatten(nn.Module):
    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, *self.shape)


def _conv_parts(cfg: VAEConfig, channels: int, size: int, classes: int):
    w, s4 = cfg.width, size // 4
    feat = 2 * w * s4 * s4
    encoder = nn.Sequential(
        _Unflatten(channels, size, size),
        nn.Conv2d(channels, w, 4, 2, 1), nn.SiLU(),  # (B, w, S/2, S/2)
        nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),  # (B, 2w, S/4, S/4)
        nn.Flatten(),
    )
    if classes:  # labels join after the convolutions
        encoder = _JoinLabels(encoder, channels * size * size)
    encoder = nn.Sequential(encoder, nn.Linear(feat + classes, 2 * cfg.latent_dim))
    decoder = nn.Sequential(
        nn.Linear(cfg.latent_dim + classes, feat), nn.SiLU(),
        _Unflatten(2 * w, s4, s4),
        nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU(),  # (B, w, S/2, S/2)
        nn.ConvTranspose2d(w, channels, 4, 2, 1),  # (B, C, S, S)
        nn.Flatten(),
    )
    return encoder, decoder


class _JoinLabels(nn.Module):
    """Runs the conv stack on the pixels of [pixels, one-hot] and appends the one-hot again."""

    def __init__(self, convs: nn.Module, pixels: int) -> None:
        super().__init__()
        self.convs, self.pixels = convs, pixels

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, onehot = h[:, : self.pixels], h[:, self.pixels :]
        return torch.cat([self.convs(x), onehot], dim=1)
