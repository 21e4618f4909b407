"""The VAE model config (the `model:` section of a VAE preset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from genforge.config import ConfigError

if TYPE_CHECKING:
    from genforge.config import RunConfig


@dataclass
class VAEConfig:
    """Networks, likelihood and KL weight of a VAE (Kingma & Welling 2014).

    likelihood 'bernoulli' reads pixels scaled to [0, 1] as Bernoulli probabilities (the usual
    MNIST choice; for grey values it is a cross-entropy, not a normalised density); 'gaussian'
    is N(x; mu(z), sigma^2) with sigma fixed (obs_sigma) or learned (obs_sigma null).
    beta > 1 gives a beta-VAE (Higgins et al. 2017).
    """

    arch: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = 16
    hidden: int = 512  # MLP hidden units (two layers each side)
    width: int = 32  # conv base channels
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    obs_sigma: float | None = None  # gaussian only: fixed sigma, or null to learn one
    beta: float = 1.0  # weight of the KL term
    conditional: bool = False  # class labels into encoder and decoder
    complete_method: Literal["optimize", "iterate"] = "optimize"
    complete_steps: int = 200  # latent-optimisation or encode/decode iterations

    def __post_init__(self) -> None:
        for key in ("latent_dim", "hidden", "width", "complete_steps"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be a positive integer")
        if self.beta < 0:
            raise ConfigError(f"model.beta={self.beta}: must be >= 0")
        if self.obs_sigma is not None and self.obs_sigma <= 0:
            raise ConfigError(f"model.obs_sigma={self.obs_sigma}: must be > 0 or null")

    def check_run(self, cfg: RunConfig) -> None:
        if self.likelihood == "bernoulli" and self.obs_sigma is not None:
            raise ConfigError("model.obs_sigma applies only to model.likelihood=gaussian")

    def check_data(self, info: dict[str, Any]) -> None:
        if self.conditional and not info["num_classes"]:
            raise ConfigError(
                f"model.conditional=true needs labels, but data set {info['dataset']!r} has none"
            )
        if self.arch == "conv" and info["image_size"] % 4:
            raise ConfigError(
                f"model.arch=conv: image size {info['image_size']} is not a multiple of 4"
            )
