"""The denoiser and the noise schedule: diffusers' UNet2DModel and DDPMScheduler, configured.

Nothing is written again here: the network is diffusers' own class, so its weights load in
diffusers unchanged (see DiffusionObjective.export), and the schedule is diffusers' scheduler.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from genforge.families.diffusion.config import DiffusionConfig

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # ours -> diffusers' names


def build_unet(cfg: DiffusionConfig, channels: int, image_size: int,
               num_classes: int) -> UNet2DModel:
    """eps_theta(x_t, t[, y]): (B, C, H, W) -> (B, C, H, W); `num_classes` 0 = unconditional.

    A conditional UNet embeds num_classes + 1 labels: the last index is the null class.
    """
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(cfg.channels),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_groups,
        attention_head_dim=cfg.attention_head_dim,
        add_attention=cfg.attention[-1],  # the middle block, at the lowest resolution
        dropout=cfg.dropout,
        num_class_embeds=num_classes + 1 if num_classes else None,
    )


def build_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The forward process q(x_t | x_0) and the DDPM reverse process, as diffusers saves it."""
    return DDPMScheduler(
        num_train_timesteps=cfg.timesteps,
        beta_schedule=BETA_SCHEDULES[cfg.schedule],
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        prediction_type=cfg.prediction,
        clip_sample=cfg.clip_sample,
        variance_type="fixed_small",
    )


def ddim_scheduler(ddpm: DDPMScheduler) -> DDIMScheduler:
    """The DDIM scheduler that diffusers' DDIMPipeline makes from the same saved config."""
    return DDIMScheduler.from_config(ddpm.config)
