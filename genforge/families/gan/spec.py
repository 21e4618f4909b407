"""The gan family as the registry sees it (genforge.families.spec)."""

from __future__ import annotations

from genforge.families.gan.config import GANConfig
from genforge.families.spec import FamilySpec

FAMILY = FamilySpec(
    name="gan",
    description="GANs: MLP GAN, DCGAN (28/32 px), conditional DCGAN, WGAN-GP",
    model_config=GANConfig,
    objective="genforge.families.gan.objective:GANObjective",
    modalities=("images", "audio"),
)
