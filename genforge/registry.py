"""The one table of model families and presets; the CLI, docs and `genforge list` read it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genforge.config import ConfigError, DataConfig, RunConfig
from genforge.families.ar.config import ARConfig, TextDataConfig
from genforge.families.diffusion.config import DiffusionConfig
from genforge.families.gan.config import GANConfig
from genforge.families.series.config import SeriesConfig, SeriesDataConfig
from genforge.families.vae.config import VAEConfig

PRESET_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class FamilySpec:
    """A family: its model config class and where its objective lives (imported on use)."""

    name: str
    description: str
    model_config: type
    objective: str  # "module:Class"; Class(model_cfg, data_info) builds the objective
    can_complete: bool
    data_config: type = DataConfig  # the `data:` section's dataclass
    data_loader: str = "genforge.data:load_images"  # fn(data_cfg, data_root) -> TrainingData

    def build(self, model_cfg: Any, data_info: dict[str, Any]) -> Any:
        module, _, cls = self.objective.partition(":")
        return getattr(importlib.import_module(module), cls)(model_cfg, data_info)

    def validate(self, cfg: RunConfig, source: str) -> None:
        """Family-specific combination checks, before anything is built."""
        check: Callable[[RunConfig], None] | None = getattr(cfg.model, "check_run", None)
        if check is not None:
            try:
                check(cfg)
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None

    def load_data(self, data_cfg: Any, data_root: str | Path | None = None) -> Any:
        module, _, fn = self.data_loader.partition(":")
        return getattr(importlib.import_module(module), fn)(data_cfg, data_root)

    def check_data(self, cfg: RunConfig, info: dict[str, Any]) -> None:
        """Checks that need the data set (labels for a conditional model, image size)."""
        check = getattr(cfg.model, "check_data", None)
        if check is not None:
            check(info)


FAMILIES: dict[str, FamilySpec] = {
    "gan": FamilySpec(
        name="gan",
        description="GANs: MLP GAN, DCGAN (28/32 px), conditional DCGAN, WGAN-GP",
        model_config=GANConfig,
        objective="genforge.families.gan.objective:GANObjective",
        can_complete=False,
    ),
    "vae": FamilySpec(
        name="vae",
        description="VAEs: MLP/conv, Bernoulli or Gaussian likelihood, beta-VAE, conditional",
        model_config=VAEConfig,
        objective="genforge.families.vae.objective:VAEObjective",
        can_complete=True,
    ),
    "diffusion": FamilySpec(
        name="diffusion",
        description="Diffusion: diffusers UNet, DDPM/DDIM sampling, guidance, RePaint inpainting",
        model_config=DiffusionConfig,
        objective="genforge.families.diffusion.objective:DiffusionObjective",
        can_complete=True,
    ),
    "ar": FamilySpec(
        name="ar",
        description="Autoregressive text: GPT-2/Llama-style decoders, char or byte-level BPE",
        model_config=ARConfig,
        objective="genforge.families.ar.objective:ARObjective",
        can_complete=False,
        data_config=TextDataConfig,
        data_loader="genforge.families.ar.data:load_text",
    ),
    "series": FamilySpec(
        name="series",
        description="Autoregressive time series: GRU/Transformer, Gaussian or Student-t paths",
        model_config=SeriesConfig,
        objective="genforge.families.series.objective:SeriesObjective",
        can_complete=False,
        data_config=SeriesDataConfig,
        data_loader="genforge.families.series.data:load_series",
    ),
}

# Preset name -> YAML file in genforge/configs/ (the repo's configs/ links there).
PRESETS: dict[str, str] = {
    "mnist-gan": "mnist-gan.yaml",
    "mnist-dcgan": "mnist-dcgan.yaml",
    "mnist-cdcgan": "mnist-cdcgan.yaml",
    "mnist-wgan-gp": "mnist-wgan-gp.yaml",
    "fashion-dcgan": "fashion-dcgan.yaml",
    "cifar10-dcgan": "cifar10-dcgan.yaml",
    "mnist-vae": "mnist-vae.yaml",
    "mnist-conv-vae": "mnist-conv-vae.yaml",
    "mnist-beta-vae": "mnist-beta-vae.yaml",
    "mnist-cvae": "mnist-cvae.yaml",
    "fashion-vae": "fashion-vae.yaml",
    "mnist-ddpm": "mnist-ddpm.yaml",
    "mnist-ddpm-cond": "mnist-ddpm-cond.yaml",
    "fashion-ddpm": "fashion-ddpm.yaml",
    "cifar10-ddpm": "cifar10-ddpm.yaml",
    "cifar10-ddpm-gpu": "cifar10-ddpm-gpu.yaml",
    "shakespeare-char": "shakespeare-char.yaml",
    "shakespeare-bpe": "shakespeare-bpe.yaml",
    "tang-poems": "tang-poems.yaml",
    "airline-ar": "airline-ar.yaml",
}
DEFAULT_PRESET = "mnist-dcgan"


def resolve_preset(spec: str) -> tuple[Path, str | None]:
    """A preset name or a YAML path -> (file, preset name or None)."""
    if spec in PRESETS:
        return PRESET_DIR / PRESETS[spec], spec
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"{path}: no such config file")
        stem = path.stem
        return path, stem if stem in PRESETS else None
    import difflib

    close = difflib.get_close_matches(spec, list(PRESETS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"{spec!r} is neither a preset nor a YAML file{hint}; presets: {', '.join(PRESETS)}"
    )
