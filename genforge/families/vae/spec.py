"""The vae family as the registry sees it (genforge.families.spec)."""

from __future__ import annotations

from genforge.families.spec import FamilySpec
from genforge.families.vae.config import VAEConfig
from genforge.options import Option

FAMILY = FamilySpec(
    name="vae",
    description="VAEs: MLP/conv, Bernoulli or Gaussian likelihood, beta-VAE, conditional",
    model_config=VAEConfig,
    objective="genforge.families.vae.objective:VAEObjective",
    modalities=("images",),
    can_complete=True,
    complete_options=(
        Option("method", str, "VAE: optimize (MAP latent) or iterate (encode/decode chain).",
               choices=("optimize", "iterate"), default_field="complete_method"),
        Option("steps", int, "VAE: optimizer or chain steps.", minimum=1, maximum=10000,
               default_field="complete_steps"),
    ),
)
