"""The one table of model families, their sampling options and the presets; the CLI, the
server, docs and `genforge list` read it. Building a run config from a family name is here too.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genforge.config import (
    LabellingConfig,
    LogConfig,
    PrivacyConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    check_combinations,
    from_dict,
    read_yaml,
    suggest,
)
from genforge.data.modalities import get_modality
from genforge.errors import ConfigError
from genforge.families.ar.config import ARConfig
from genforge.families.diffusion.config import DiffusionConfig
from genforge.families.gan.config import GANConfig
from genforge.families.series.config import SeriesConfig
from genforge.families.tabular.config import TabularConfig
from genforge.families.vae.config import VAEConfig

PRESET_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class SampleOption:
    """A knob of `sample` beyond n, seed and label: the CLI's flags and the server's request
    fields are both made from these, so they cannot drift apart."""

    name: str  # the keyword `GenerativeModel.sample` takes; the CLI flag is --name-with-dashes
    type: type  # int, float, str, or list (of str)
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    exclusive_minimum: bool = False  # the minimum itself is refused (top_p 0, unlike temperature 0)

    def check(self, value: Any) -> Any:
        """The value, or a ConfigError naming the option and what it takes."""
        flag = "--" + self.name.replace("_", "-")
        if self.type is list:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
                raise ConfigError(f"{flag}={value!r}: expected text or a list of texts")
            return list(items)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (isinstance(value, bool) and self.type is not bool):
            raise ConfigError(f"{flag}={value!r}: expected {self.type.__name__}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{flag}={value!r}: allowed values are {', '.join(self.choices)}")
        low, high = self.minimum, self.maximum
        if low is not None and (value < low or (self.exclusive_minimum and value == low)):
            raise ConfigError(f"{flag}={value}: must be {'>' if self.exclusive_minimum else '>='}"
                              f" {low:g}")
        if high is not None and value > high:
            raise ConfigError(f"{flag}={value}: must be <= {high:g}")
        return value

    def describe(self) -> dict[str, Any]:
        """Plain facts for an API listing (types, ranges, choices)."""
        return {"name": self.name, "type": self.type.__name__, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum,
                "exclusive_minimum": self.exclusive_minimum, "choices": list(self.choices)}


SAMPLE_OPTIONS: dict[str, SampleOption] = {o.name: o for o in (
    SampleOption("scheduler", str, "Diffusion: the sampler.", choices=("ddpm", "ddim")),
    SampleOption("steps", int, "Diffusion: sampling steps.", minimum=1, maximum=10000),
    SampleOption("eta", float, "Diffusion: DDIM eta (0 = deterministic).", 0.0, 1.0),
    SampleOption("guidance", float, "Diffusion: classifier-free guidance scale.", 0.0, 100.0),
    SampleOption("prompt", str, "Text: the prompt the samples continue."),
    SampleOption("max_new_tokens", int, "Text: tokens to add.", minimum=1, maximum=100000),
    SampleOption("temperature", float, "Text: temperature (0 = greedy). Tables (tabddpm): "
                 "below 1 sharpens the categorical columns (> 0).", 0.0, 100.0),
    SampleOption("top_k", int, "Text: keep the k likeliest tokens.", minimum=1),
    SampleOption("top_p", float, "Text: nucleus top-p.", 0.0, 1.0, exclusive_minimum=True),
    SampleOption("repetition_penalty", float, "Text: repetition penalty.", 0.0, 100.0,
                 exclusive_minimum=True),
    SampleOption("stop", list, "Text: stop string(s)."),
    SampleOption("horizon", int, "Series: steps ahead.", minimum=1, maximum=100000),
    SampleOption("calibrated", bool, "Series: widen the paths by the run's calibration "
                 "(default: on where the run has calibration rows)."),
    SampleOption("synthetic", bool, "Series: whole new series instead of forecasts."),
    SampleOption("length", int, "Series: steps of each --synthetic series (120).", minimum=1,
                 maximum=100000),
    SampleOption("where", str, "Tables: fix columns, e.g. 'sex=Female,income=>50K' (a number "
                 "or LOW..HIGH for a numeric column)."),
)}


@dataclass(frozen=True)
class FamilySpec:
    """A family: its model config, its objective (imported on use) and what it makes."""

    name: str
    description: str
    model_config: type
    objective: str  # "module:Class"; Class(model_cfg, data_info) builds the objective
    modalities: tuple[str, ...]  # what it can generate; the first is a run's default
    can_complete: bool
    sample_options: tuple[str, ...] = ()  # names in SAMPLE_OPTIONS

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

    def check_data(self, cfg: RunConfig, info: dict[str, Any]) -> None:
        """Checks that need the data set (labels for a conditional model, image size)."""
        check = getattr(cfg.model, "check_data", None)
        if check is not None:
            check(info)

    def options(self) -> list[SampleOption]:
        return [SAMPLE_OPTIONS[name] for name in self.sample_options]


TEXT_OPTIONS = ("prompt", "max_new_tokens", "temperature", "top_k", "top_p",
                "repetition_penalty", "stop")

FAMILIES: dict[str, FamilySpec] = {
    "gan": FamilySpec(
        name="gan",
        description="GANs: MLP GAN, DCGAN (28/32 px), conditional DCGAN, WGAN-GP",
        model_config=GANConfig,
        objective="genforge.families.gan.objective:GANObjective",
        modalities=("images", "audio"),
        can_complete=False,
    ),
    "vae": FamilySpec(
        name="vae",
        description="VAEs: MLP/conv, Bernoulli or Gaussian likelihood, beta-VAE, conditional",
        model_config=VAEConfig,
        objective="genforge.families.vae.objective:VAEObjective",
        modalities=("images",),
        can_complete=True,
    ),
    "diffusion": FamilySpec(
        name="diffusion",
        description="Diffusion: diffusers UNet, DDPM/DDIM sampling, guidance, RePaint inpainting",
        model_config=DiffusionConfig,
        objective="genforge.families.diffusion.objective:DiffusionObjective",
        modalities=("images", "audio"),
        can_complete=True,
        sample_options=("scheduler", "steps", "eta", "guidance"),
    ),
    "ar": FamilySpec(
        name="ar",
        description="Autoregressive text: GPT-2/Llama-style decoders, char or byte-level BPE",
        model_config=ARConfig,
        objective="genforge.families.ar.objective:ARObjective",
        modalities=("text",),
        can_complete=False,
        sample_options=TEXT_OPTIONS,
    ),
    "series": FamilySpec(
        name="series",
        description="Autoregressive time series: GRU/Transformer, Gaussian or Student-t paths",
        model_config=SeriesConfig,
        objective="genforge.families.series.objective:SeriesObjective",
        modalities=("series",),
        can_complete=False,
        sample_options=("horizon", "calibrated", "synthetic", "length"),
    ),
    "tabular": FamilySpec(
        name="tabular",
        description="Tables: Gaussian copula, TVAE, CTGAN, TabDDPM; conditions and imputation",
        model_config=TabularConfig,
        objective="genforge.families.tabular.build:build_objective",
        modalities=("tables",),
        can_complete=True,
        sample_options=("where", "temperature"),
    ),
}

# Preset name -> YAML file in genforge/configs/ (the repo's configs/ links there).
PRESETS: dict[str, str] = {
    "mnist-gan": "mnist-gan.yaml",
    "mnist-dcgan": "mnist-dcgan.yaml",
    "mnist-quick": "mnist-quick.yaml",
    "mnist-20min": "mnist-20min.yaml",
    "mnist-cdcgan": "mnist-cdcgan.yaml",
    "mnist-wgan-gp": "mnist-wgan-gp.yaml",
    "fashion-dcgan": "fashion-dcgan.yaml",
    "fashion-20min": "fashion-20min.yaml",
    "cifar10-dcgan": "cifar10-dcgan.yaml",
    "cifar10-60min": "cifar10-60min.yaml",
    "mnist-vae": "mnist-vae.yaml",
    "mnist-conv-vae": "mnist-conv-vae.yaml",
    "mnist-beta-vae": "mnist-beta-vae.yaml",
    "mnist-cvae": "mnist-cvae.yaml",
    "mnist-dp-vae": "mnist-dp-vae.yaml",
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
    "airline-series": "airline-series.yaml",
    "co2-series": "co2-series.yaml",
    "sunspots-series": "sunspots-series.yaml",
    "nile-series": "nile-series.yaml",
    "elnino-series": "elnino-series.yaml",
    "macrodata-series": "macrodata-series.yaml",
    "fsdd-diffusion": "fsdd-diffusion.yaml",
    "fsdd-cdcgan": "fsdd-cdcgan.yaml",
    "audio": "audio.yaml",  # any WAV folder: data.path=...
    "adult-copula": "adult-copula.yaml",
    "adult-tvae": "adult-tvae.yaml",
    "adult-ctgan": "adult-ctgan.yaml",
    "adult-tabddpm": "adult-tabddpm.yaml",
    "adult-aim": "adult-aim.yaml",
    "adult-mst": "adult-mst.yaml",
    "german-credit-tabddpm": "german-credit-tabddpm.yaml",
    "tables": "tables.yaml",
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
    close = difflib.get_close_matches(spec, list(PRESETS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"{spec!r} is neither a preset nor a YAML file{hint}; presets: {', '.join(PRESETS)}"
    )


def build_run_config(raw: dict[str, Any], *, source: str) -> RunConfig:
    """Turn a nested dict (YAML + overrides) into a validated RunConfig."""
    raw = dict(raw)
    family = raw.get("family")
    if family not in FAMILIES:
        allowed = ", ".join(FAMILIES)
        raise ConfigError(f"{source}: family={family!r}: allowed values are {allowed}")
    spec = FAMILIES[family]
    allowed_top = {"family", "modality", "model", "data", "train", "log", "privacy", "labelling",
                   "preset"}
    for key in raw:
        if key not in allowed_top:
            raise ConfigError(f"{source}: unknown key '{key}'{suggest(key, sorted(allowed_top))}")
    modality = raw.get("modality") or spec.modalities[0]  # runs before modalities: default
    if modality not in spec.modalities:
        raise ConfigError(f"{source}: modality={modality!r}: the {family} family makes "
                          f"{', '.join(spec.modalities)}")
    preset = raw.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"{source}: preset={preset!r}: expected a string")
    cfg = RunConfig(
        family=family,
        model=from_dict(spec.model_config, raw.get("model", {}), prefix="model", source=source),
        data=from_dict(get_modality(modality).data_config, raw.get("data", {}), prefix="data",
                       source=source),
        modality=modality,
        train=from_dict(TrainConfig, raw.get("train", {}), prefix="train", source=source),
        log=from_dict(LogConfig, raw.get("log", {}), prefix="log", source=source),
        # runs saved before DP-SGD have no privacy section: off
        privacy=from_dict(PrivacyConfig, raw.get("privacy") or {}, prefix="privacy",
                          source=source),
        labelling=from_dict(LabellingConfig, raw.get("labelling") or {}, prefix="labelling",
                            source=source),
        preset=preset,
    )
    check_combinations(cfg, source)
    spec.validate(cfg, source)
    return cfg


def load_config(spec: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A preset name or YAML path plus overrides -> a validated RunConfig."""
    path, preset = resolve_preset(str(spec))
    raw = read_yaml(path)
    raw.setdefault("preset", preset)
    raw = apply_overrides(raw, overrides or [])
    source = f"{path}" + (" + overrides" if overrides else "")
    return build_run_config(raw, source=source)
