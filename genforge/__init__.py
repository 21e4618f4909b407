"""genforge: train, evaluate and serve generative models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genforge.version import __version__

if TYPE_CHECKING:
    from genforge.api import GenerativeModel
    from genforge.config import RunConfig
    from genforge.training.loop import TrainResult

__all__ = ["__version__", "load", "load_config", "train"]


def load_config(spec: str, overrides: list[str] | None = None) -> RunConfig:
    """A preset name or YAML path plus `key=value` overrides -> a validated RunConfig."""
    from genforge.registry import load_config as _load

    return _load(spec, overrides)


def train(config: RunConfig | str, **kwargs: Any) -> TrainResult:
    """Train a config (or a preset name); see `genforge.api.train` for the options."""
    from genforge.api import train as _train

    cfg = load_config(config) if isinstance(config, str) else config
    return _train(cfg, **kwargs)


def load(run: str, **kwargs: Any) -> GenerativeModel:
    """Rebuild a trained model from its run folder: `load(run).sample(n, seed=0)`."""
    from genforge.api import load as _load

    return _load(run, **kwargs)
