"""GAN networks: plain nn.Modules. Images are (B, C, S, S) in [-1, 1]; labels (B,) int64.

DCGAN (Radford et al. 2016): transposed convolutions doubling the size, BatchNorm + ReLU in G,
strided convolutions + LeakyReLU(0.2) in D, weights drawn from N(0, 0.02).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from genforge.families.gan.config import GANConfig


def _stages(image_size: int) -> tuple[int, int]:
    """(first feature-map size, number of doublings): 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4)."""
    start, n = image_size, 0
    while start % 2 == 0 and start > 7:
        start //= 2
        n += 1
    return start, n


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions and linears, N(1, 0.02) for norm scales (DCGAN paper)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: GANConfig, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        start, n_up = _stages(image_size)
        top = cfg.width * 2 ** (n_up - 1)
        self.embed = nn.Embedding(num_classes, cfg.embed_dim) if cfg.conditional else None
        z_dim = cfg.latent_dim + (cfg.embed_dim if cfg.conditional else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, top, start, 1, 0, bias=False),  # (B, top, s0, s0)
            nn.BatchNorm2d(top), nn.ReLU(True),
        ]
        ch = top
        for _ in range(n_up - 1):  # each doubles the size and halves the channels
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]  # (B, C, S, S)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)  # (B, latent + embed)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Conditional: a projection discriminator (Miyato & Koyama 2018), <embed(y), features>."""

    def __init__(self, cfg: GANConfig, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        start, n_down = _stages(image_size)

        def norm(ch: int) -> nn.Module:  # no batch norm in a gradient-penalised critic
            return nn.GroupNorm(1, ch) if cfg.loss == "wgan-gp" else nn.BatchNorm2d(ch)

        layers: list[nn.Module] = [nn.Conv2d(channels, cfg.width, 4, 2, 1),
                                   nn.LeakyReLU(0.2, True)]
        ch = cfg.width
        for _ in range(n_down - 1):  # each halves the size and doubles the channels
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), norm(ch * 2),
                       nn.LeakyReLU(0.2, True)]
            ch *= 2
        self.body = nn.Sequential(*layers)  # (B, top, s0, s0)
        self.head = nn.Conv2d(ch, 1, start, 1, 0)  # (B, 1, 1, 1)
        self.embed = nn.Embedding(num_classes, ch) if cfg.conditional else None
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        logit = self.head(h).flatten()  # (B,)
        if self.embed is not None:
            logit = logit + (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)
        return logit


class MLPGenerator(nn.Module):
    """z -> hidden -> pixels (the classic 100-256-784 GAN); labels as one-hot inputs."""

    def __init__(self, cfg: GANConfig, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.num_classes = num_classes if cfg.conditional else 0
        dims = [cfg.latent_dim + self.num_classes] + [cfg.mlp_hidden] * cfg.mlp_layers
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2, True)]
        layers += [nn.Linear(dims[-1], channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, nn.functional.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: GANConfig, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes if cfg.conditional else 0
        dims = [channels * image_size * image_size + self.num_classes]
        dims += [cfg.mlp_hidden] * cfg.mlp_layers
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2, True)]
        layers += [nn.Linear(dims[-1], 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.num_classes:
            h = torch.cat([h, nn.functional.one_hot(y, self.num_classes).to(h.dtype)], dim=1)
        return self.net(h).flatten()  # (B,)


def build_nets(cfg: GANConfig, channels: int, image_size: int,
               num_classes: int) -> tuple[nn.Module, nn.Module]:
    if cfg.arch == "dcgan":
        pair = DCGANGenerator, DCGANDiscriminator
    else:
        pair = MLPGenerator, MLPDiscriminator
    return tuple(cls(cfg, channels, image_size, num_classes) for cls in pair)  # type: ignore
