"""The `gmm` family: a Gaussian mixture with diagonal covariances, fitted by the training loop
(maximum likelihood, Adam) like any network. It makes `points`, samples, and completes a point
whose coordinate is missing from the mixture's conditional distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.families.spec import FamilySpec
from genforge.options import Option


@dataclass
class GMMConfig:
    components: int = 4

    def __post_init__(self) -> None:
        if self.components < 1:
            raise ConfigError(f"model.components={self.components}: must be >= 1")


class Mixture(nn.Module):
    def __init__(self, components: int, dims: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.means = nn.Parameter(torch.randn(components, dims, generator=g) * 1.5)
        self.log_scales = nn.Parameter(torch.zeros(components, dims))
        self.logits = nn.Parameter(torch.zeros(components))

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x | mu_k, diag sigma_k^2): (B, K)."""
        z = (x[:, None] - self.means) / self.log_scales.exp()
        log_normal = (-0.5 * z.pow(2) - self.log_scales - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_normal + self.logits.log_softmax(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.component_log_prob(x).logsumexp(-1)  # log p(x): (B,)


class GMMObjective:
    capabilities = frozenset({"sample", "complete_rows"})  # genforge.inference.sampler
    sample_keywords = ()
    complete_keywords = ()

    def __init__(self, cfg: GMMConfig, data_info: dict[str, Any]) -> None:
        self.cfg = cfg
        self.nets = {"gmm": Mixture(cfg.components, int(data_info["dims"]))}
        self.sampling_nets = ("gmm",)

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        return {"gmm": torch.optim.Adam(self.nets["gmm"].parameters(), lr=train.lr,
                                        betas=train.betas)}

    def training_step(self, batch: Any, step: Any) -> dict[str, torch.Tensor]:
        loss = -self.nets["gmm"](batch.x).mean()
        step.update("gmm", loss)
        return {"loss/gmm": loss.detach(), "nll": loss.detach()}

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, condition: Any = None,
               spread: float = 1.0) -> torch.Tensor:
        """n points; `spread` scales every component's standard deviation."""
        mix = self.nets["gmm"]
        g = torch.Generator().manual_seed(seed)
        k = torch.multinomial(mix.logits.softmax(0), n, replacement=True, generator=g)
        noise = torch.randn(n, mix.means.shape[1], generator=g)
        return mix.means[k] + spread * mix.log_scales.exp()[k] * noise

    @torch.no_grad()
    def complete(self, x: torch.Tensor, *, seed: int) -> np.ndarray:
        """Points whose NaN coordinates are drawn from p(missing | observed): with diagonal
        components, the component is drawn from its posterior given the observed
        coordinates, then the missing ones from that component."""
        mix = self.nets["gmm"]
        g = torch.Generator().manual_seed(seed)
        mask = torch.isnan(x)
        observed = ~mask
        z = (torch.nan_to_num(x)[:, None] - mix.means) / mix.log_scales.exp()
        log_normal = (-0.5 * z.pow(2) - mix.log_scales - 0.5 * math.log(2 * math.pi))
        posterior = (log_normal * observed[:, None]).sum(-1) + mix.logits.log_softmax(0)
        k = torch.multinomial(posterior.softmax(-1), 1, generator=g).squeeze(1)
        draw = mix.means[k] + mix.log_scales.exp()[k] * torch.randn(x.shape, generator=g)
        return torch.where(mask, draw, x).double().numpy()


FAMILY = FamilySpec(
    name="gmm",
    description="Gaussian mixture of diagonal components (a plug-in from outside genforge)",
    model_config=GMMConfig,
    objective="genforge_points.family:GMMObjective",
    modalities=("points",),
    sample_options=(Option("spread", float, "GMM: scale of every component's sigma.",
                           minimum=0.0, maximum=10.0, default=1.0),),
    can_complete=True,
    presets=Path(__file__).parent / "presets",
)
