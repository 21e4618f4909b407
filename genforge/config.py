"""Typed run configuration: dataclasses filled from YAML presets plus dotted `key=value` overrides.

A config is validated completely before anything is built. Every error is a `ConfigError` whose
message is one line naming the source (file or override), the dotted key, the bad value and what
would be accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from genforge.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Shared config sections (each family adds its own model config in families/<name>/config.py)


@dataclass
class DataConfig:
    """Which data set to train on and how to read it."""

    dataset: str = "mnist"  # mnist | fashion-mnist | cifar10 | folder | npz
    split: str = "train"  # train | test
    path: str | None = None  # folder of images or .npz file (dataset folder / npz)
    root: str | None = None  # data root; else --data-root, GENFORGE_DATA, the bundled data/
    image_size: int | None = None  # resize folder images to this square size
    channels: int | None = None  # 1 (grey) or 3 (RGB) for folder images
    limit: int | None = None  # use only the first `limit` examples (quick tests)
    download: bool = False  # fetch missing files from the usual source (checksums verified)

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ConfigError(f"data.split={self.split!r}: allowed values are 'train', 'test'")
        if self.dataset in ("folder", "npz") and not self.path:
            raise ConfigError(f"data.dataset={self.dataset!r} needs data.path (a folder or file)")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"data.channels={self.channels}: allowed values are 1, 3")
        _positive("data.limit", self.limit)
        _positive("data.image_size", self.image_size)


@dataclass
class TrainConfig:
    """The shared loop: steps, batch, optimiser, precision, EMA, reproducibility."""

    max_steps: int = 2000  # optimizer updates in the whole run
    stop_after: int | None = None  # end early at this step with a checkpoint (pre-emption drill)
    max_minutes: float | None = None  # end early after this much wall time, with a checkpoint
    batch_size: int = 128  # global batch: split over processes and accumulation steps
    grad_accum: int = 1  # micro-batches per optimizer update
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None  # max global grad norm per optimizer; None = off
    ema_decay: float | None = None  # EMA of sampling weights; None = off
    ema_start: int = 0  # steps before the EMA starts tracking (it copies the weights until then)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        _positive("train.max_steps", self.max_steps)
        _positive("train.batch_size", self.batch_size)
        _positive("train.grad_accum", self.grad_accum)
        _positive("train.stop_after", self.stop_after)
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"train.max_minutes={self.max_minutes}: must be > 0 or null")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr}: must be > 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay={self.ema_decay}: must be in (0, 1) or null")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip={self.grad_clip}: must be > 0 or null")
        if self.warmup_steps < 0 or self.warmup_steps >= self.max_steps:
            raise ConfigError(
                f"train.warmup_steps={self.warmup_steps}: must be in [0, train.max_steps)"
            )
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not divisible by "
                f"train.grad_accum={self.grad_accum}"
            )


@dataclass
class LogConfig:
    """What the loop writes while it runs."""

    every: int = 50  # steps between metric lines (metrics.jsonl, TensorBoard)
    sample_every: int = 500  # steps between sample grids; 0 = only at the end
    sample_n: int = 64  # images in a sample grid; 0 = no samples at all
    checkpoint_every: int = 1000  # steps between checkpoints; the end always writes one
    tensorboard: bool = True
    progress: bool = True  # progress bar with ETA and losses

    def __post_init__(self) -> None:
        _positive("log.every", self.every)
        if self.sample_n < 0:
            raise ConfigError(f"log.sample_n={self.sample_n}: must be >= 0 (0 = no samples)")
        _positive("log.checkpoint_every", self.checkpoint_every)
        if self.sample_every < 0:
            raise ConfigError(f"log.sample_every={self.sample_every}: must be >= 0")


@dataclass
class PrivacyConfig:
    """DP-SGD (genforge/training/privacy.py); off while epsilon and noise_multiplier are None.

    epsilon: the target budget; the noise multiplier is solved so that train.max_steps spend at
        most this much. noise_multiplier: set sigma directly instead (epsilon is then only
        reported). delta: below 1 / (training records), checked once the data is read.
    max_grad_norm: the per-sample clipping norm C. accountant: rdp | prv. fix_modules: let
        Opacus replace layers it cannot privatise (BatchNorm -> GroupNorm) instead of refusing.
    preprocessing_share: the share of epsilon and delta that buys a table's schema (bounds,
        categories, missing rates) by DP when no public data.schema is given (0: refuse).
    noise_seed: None (the default): the noise, the Poisson draws and the releases come from a
        seed drawn from the operating system's secure source when the run starts, kept only in
        the run's checkpoint (state/, so that a resume continues the same noise), never in
        run.json, the model file or a report. An integer: replayable noise (tests,
        benchmarks); the guarantee then assumes that number secret.
    """

    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    fix_modules: bool = False
    preprocessing_share: float = 0.1
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        if self.epsilon is not None and self.noise_multiplier is not None:
            raise ConfigError(f"privacy.epsilon={self.epsilon} and privacy.noise_multiplier="
                              f"{self.noise_multiplier}: set one of them (a target epsilon "
                              "solves the noise multiplier)")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ConfigError(f"privacy.epsilon={self.epsilon}: must be > 0")
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta={self.delta}: must be in (0, 1), and below "
                              "1 / (number of training records)")
        if self.noise_multiplier is not None and not self.noise_multiplier >= 0:
            raise ConfigError(f"privacy.noise_multiplier={self.noise_multiplier}: must be >= 0")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"privacy.max_grad_norm={self.max_grad_norm}: must be > 0 "
                              "(the per-sample clipping norm)")
        if not 0.0 <= self.preprocessing_share < 1.0:
            raise ConfigError(f"privacy.preprocessing_share={self.preprocessing_share}: must be "
                              "in [0, 1)")
        if self.accountant not in ("rdp", "prv"):
            raise ConfigError(f"privacy.accountant={self.accountant!r}: allowed 'rdp', 'prv'")

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None or self.noise_multiplier is not None


@dataclass
class LabellingConfig:
    """Labelling of generated files (genforge/labelling/): provenance is always written (the
    CLI's --no-provenance skips it); `key` signs the records (HMAC) and keys the watermarks.

    key: the secret, or "file:PATH" to read it from a file. A literal key is saved with the
        run (config.yaml, model metadata): for weights you share, leave it None and set
        GENFORGE_WATERMARK_KEY instead (used when `key` is None).
    """

    key: str | None = None


@dataclass
class RunConfig:
    """One training run: family, model, data, loop and logging."""

    family: str
    model: Any  # the family's model config dataclass (see registry.FAMILIES)
    data: Any = field(default_factory=DataConfig)  # the modality's data config (images: DataConfig)
    modality: str | None = None  # what the run generates; None = the family's first modality
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)  # DP-SGD, off by default
    labelling: LabellingConfig = field(default_factory=LabellingConfig)  # provenance key
    preset: str | None = None  # the preset this run came from, for the record

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


def _positive(key: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{key}={value}: must be a positive integer")


def _to_plain(value: Any) -> Any:
    """Tuples become lists so that YAML stays plain (no python/tuple tags)."""
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Building dataclasses from plain dicts, with teaching errors


def from_dict(cls: type, data: dict[str, Any], *, prefix: str, source: str) -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{dotted}'{suggest(key, fields)}")
        kwargs[key] = _coerce(value, hints[key], dotted, source)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{source}: {prefix or 'config'}: {err}") from None


def suggest(key: str, allowed: Any) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; allowed keys: {', '.join(allowed)}"


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check `value` against the type hint `hint`; convert only where it is lossless."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    bad = f"{source}: {key}={value!r}"
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for option in inner:
            try:
                return _coerce(value, option, key, source)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{bad}: allowed values are {', '.join(map(repr, args))}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{bad}: expected a non-empty list")
        return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{bad}: expected a list of {len(args)} values")
        return tuple(_coerce(v, a, f"{key}[{i}]", source)
                     for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{bad}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{bad}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, str) and _looks_like_number(value):
            value = float(value)  # YAML 1.1 reads '1e-4' as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{bad}: expected a number")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if not math.isfinite(number):  # nan slips through every `x <= 0` check
            raise ConfigError(f"{bad}: expected a finite number")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{bad}: expected a string")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, prefix=key, source=source)
    raise ConfigError(f"{bad}: unsupported config type {hint}")  # a bug in a config class


# --------------------------------------------------------------------------------------------
# YAML + overrides -> RunConfig


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=1e-4' -> (['train', 'lr'], 0.0001); values are read as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.max_steps=500")
    key, raw = text.split("=", 1)
    if not key or any(not part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"override {text!r}: {key!r} is not a dotted key like train.lr")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text; type checking decides
    return key.split("."), value


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); structure is checked later by from_dict."""
    merged = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return merged


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); a config is a UTF-8 "
                          "YAML file") from None
    except OSError as err:  # a folder, no permission
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return raw


def check_combinations(cfg: RunConfig, source: str) -> None:
    t = cfg.train
    if t.stop_after is not None and t.stop_after > t.max_steps:
        raise ConfigError(
            f"{source}: train.stop_after={t.stop_after} is beyond train.max_steps={t.max_steps}"
        )
    if t.ema_start >= t.max_steps and t.ema_decay is not None:
        raise ConfigError(f"{source}: train.ema_start={t.ema_start} >= train.max_steps")


def save_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
