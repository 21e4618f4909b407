"""The GAN model config (the `model:` section of a GAN preset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from genforge.config import ConfigError

if TYPE_CHECKING:
    from genforge.config import RunConfig

DCGAN_SIZES = (28, 32, 64)


@dataclass
class GANConfig:
    """Networks and objective of a GAN.

    loss: 'bce' is the non-saturating GAN loss of Goodfellow et al. (the DCGAN default);
    'wgan-gp' is the Wasserstein loss with gradient penalty (Gulrajani et al. 2017), whose
    critic uses layer normalisation instead of batch norm, as the paper prescribes.
    """

    arch: Literal["mlp", "dcgan"] = "dcgan"
    loss: Literal["bce", "wgan-gp"] = "bce"
    conditional: bool = False  # class labels in G (embedding) and D (projection)
    latent_dim: int = 100
    width: int = 64  # DCGAN base channels (ngf = ndf)
    mlp_hidden: int = 256  # MLP hidden units (784-256-784 by default)
    mlp_layers: int = 1  # MLP hidden layers in each player
    embed_dim: int = 32  # label embedding concatenated to z (conditional G)
    gp_weight: float = 10.0  # lambda of the gradient penalty (wgan-gp)
    critic_steps: int = 1  # discriminator updates per generator update

    def __post_init__(self) -> None:
        for key in ("latent_dim", "width", "mlp_hidden", "mlp_layers", "embed_dim",
                    "critic_steps"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be a positive integer")
        if self.gp_weight < 0:
            raise ConfigError(f"model.gp_weight={self.gp_weight}: must be >= 0")

    def check_run(self, cfg: RunConfig) -> None:
        if self.loss == "bce" and self.gp_weight != 10.0:
            raise ConfigError("model.gp_weight applies only to model.loss=wgan-gp")
        if cfg.data.dataset == "folder" and self.arch == "dcgan" and \
                cfg.data.image_size not in DCGAN_SIZES:
            raise ConfigError(
                f"data.image_size={cfg.data.image_size}: a DCGAN needs one of "
                f"{', '.join(map(str, DCGAN_SIZES))} for a folder of images"
            )

    def check_data(self, info: dict[str, Any]) -> None:
        if self.conditional and not info["num_classes"]:
            raise ConfigError(
                f"model.conditional=true needs labels, but data set {info['dataset']!r} has none"
            )
        if self.arch == "dcgan" and info["image_size"] not in DCGAN_SIZES:
            raise ConfigError(
                f"model.arch=dcgan: images are {info['image_size']} px; allowed sizes are "
                f"{', '.join(map(str, DCGAN_SIZES))} (set data.image_size or use model.arch=mlp)"
            )
