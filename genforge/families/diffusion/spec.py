"""The diffusion family as the registry sees it (genforge.families.spec)."""

from __future__ import annotations

from genforge.families.diffusion.config import DiffusionConfig
from genforge.families.spec import FamilySpec
from genforge.options import Option

FAMILY = FamilySpec(
    name="diffusion",
    description="Diffusion: diffusers UNet, DDPM/DDIM sampling, guidance, RePaint inpainting",
    model_config=DiffusionConfig,
    objective="genforge.families.diffusion.objective:DiffusionObjective",
    modalities=("images", "audio"),
    sample_options=(
        Option("scheduler", str, "Diffusion: the sampler.", choices=("ddpm", "ddim"),
               default_field="sampler"),
        Option("steps", int, "Diffusion: sampling steps.", minimum=1, maximum=10000,
               default_field="sampling_steps", maximum_field="timesteps"),
        Option("eta", float, "Diffusion: DDIM eta (0 = deterministic).", 0.0, 1.0),
        Option("guidance", float, "Diffusion: classifier-free guidance scale.", 0.0, 100.0),
    ),
    can_complete=True,
    complete_options=(
        Option("method", str, "Diffusion: repaint (RePaint resampling) or replace.",
               choices=("repaint", "replace"), default_field="complete_method"),
        Option("steps", int, "Diffusion: noise levels.", minimum=1, maximum=10000,
               default_field="complete_steps", maximum_field="timesteps"),
        Option("jump", int, "Diffusion repaint: levels per jump.", minimum=1, maximum=10000,
               default_field="repaint_jump"),
        Option("resample", int, "Diffusion repaint: resampling rounds per jump.", minimum=1,
               maximum=1000, default_field="repaint_resample"),
    ),
)
