"""The diffusion model config (the `model:` section of a diffusion preset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from genforge.config import ConfigError

if TYPE_CHECKING:
    from genforge.config import RunConfig


@dataclass
class DiffusionConfig:
    """A denoising diffusion model (Ho et al. 2020) on diffusers' UNet2DModel and schedulers.

    The UNet has one resolution level per entry of `channels` (diffusers' block_out_channels);
    each level but the last halves the image, so 28 px MNIST runs natively at 28 -> 14 -> 7
    with three levels (no padding), and 32 px CIFAR-10 at 32 -> 16 -> 8 (or -> 4 with four).
    `attention` says which levels use self-attention; the middle block does where the lowest
    level does.

    schedule 'linear' is the DDPM betas (beta_start..beta_end); 'cosine' is the alpha-bar
    schedule of Nichol & Dhariwal 2021 (diffusers' 'squaredcos_cap_v2'). prediction 'epsilon'
    regresses the noise; 'v_prediction' regresses v = sqrt(abar) eps - sqrt(1 - abar) x_0
    (Salimans & Ho 2022).

    conditional: class labels are embedded and added to the time embedding; during training a
    label is replaced by the null class (index num_classes) with probability label_dropout, so
    one network gives both eps(x, y) and eps(x) for classifier-free guidance (Ho & Salimans
    2022): eps = eps(x) + guidance * (eps(x, y) - eps(x)); 0 is unconditional, 1 conditional.

    The sampling_* / guidance / complete_* keys are defaults that `sample` and `complete`
    options override per call.
    """

    # the denoiser
    arch: Literal["unet"] = "unet"  # diffusers' UNet2DModel (the one denoiser so far)
    channels: tuple[int, ...] = (32, 64, 64)  # block_out_channels, one per resolution level
    attention: tuple[bool, ...] = (False, False, True)  # self-attention per level
    layers_per_block: int = 1  # ResNet blocks per level (the decoder has one more)
    norm_groups: int = 8  # GroupNorm groups; must divide every entry of channels
    attention_head_dim: int = 8
    dropout: float = 0.0
    # the forward process q(x_t | x_0)
    timesteps: int = 1000  # T
    schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = 1.0e-4  # linear only
    beta_end: float = 0.02  # linear only
    prediction: Literal["epsilon", "v_prediction"] = "epsilon"
    clip_sample: bool = True  # clip the predicted x_0 to [-1, 1] while sampling
    # class conditioning and classifier-free guidance
    conditional: bool = False
    label_dropout: float = 0.1  # probability of training on the null class
    guidance: float = 1.0  # default guidance scale w
    # sampling defaults
    sampler: Literal["ddim", "ddpm"] = "ddim"
    sampling_steps: int = 50  # DDIM steps; the DDPM sampler defaults to all T
    eta: float = 0.0  # DDIM eta: 0 deterministic, 1 DDPM-like noise
    # inpainting (complete): RePaint (Lugmayr et al. 2022) on a `complete_steps` schedule
    complete_method: Literal["repaint", "replace"] = "repaint"
    complete_steps: int = 50
    repaint_jump: int = 5  # j: levels gone back up in one jump
    repaint_resample: int = 4  # r: times each jump is made (1 = plain replacement)

    def __post_init__(self) -> None:
        for key in ("layers_per_block", "norm_groups", "attention_head_dim", "timesteps",
                    "sampling_steps", "complete_steps", "repaint_jump", "repaint_resample"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be a positive integer")
        if any(c <= 0 or c % self.norm_groups for c in self.channels):
            raise ConfigError(f"model.channels={list(self.channels)}: each must be a positive "
                              f"multiple of model.norm_groups={self.norm_groups}")
        if len(self.attention) != len(self.channels):
            raise ConfigError(f"model.attention has {len(self.attention)} entries; it needs one "
                              f"per level of model.channels ({len(self.channels)})")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"model.label_dropout={self.label_dropout}: must be in [0, 1)")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ConfigError(f"model.beta_start={self.beta_start}, model.beta_end="
                              f"{self.beta_end}: need 0 < beta_start < beta_end < 1")
        for key in ("dropout", "guidance", "eta"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be >= 0")
        for key in ("sampling_steps", "complete_steps"):
            if getattr(self, key) > self.timesteps:
                raise ConfigError(f"model.{key}={getattr(self, key)}: at most model.timesteps="
                                  f"{self.timesteps}")

    def check_run(self, cfg: RunConfig) -> None:
        if not self.conditional and self.guidance != 1.0:
            raise ConfigError("model.guidance applies only to model.conditional=true")

    def check_data(self, info: dict[str, Any]) -> None:
        if self.conditional and not info["num_classes"]:
            raise ConfigError(
                f"model.conditional=true needs labels, but data set {info['dataset']!r} has none"
            )
        factor = 2 ** (len(self.channels) - 1)
        if info["image_size"] % factor:
            raise ConfigError(
                f"model.channels has {len(self.channels)} levels, so images are halved "
                f"{len(self.channels) - 1} times and their size must be a multiple of {factor}; "
                f"they are {info['image_size']} px (use fewer levels or set data.image_size)"
            )
