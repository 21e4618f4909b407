"""What a family says of itself: its model config, objective, the modalities it makes and the
options its `sample` and `complete` take.

A family is one `FamilySpec`, defined in its own package (`genforge/families/<name>/spec.py`
for genforge's own, any module of a plug-in package for others) and found by
genforge.registry. Code outside a family's package never compares its name: it asks the spec.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genforge.config import RunConfig
from genforge.errors import ConfigError
from genforge.options import Option


@dataclass(frozen=True)
class FamilySpec:
    name: str
    description: str
    model_config: type  # the dataclass of a run's `model:` section
    objective: str  # "module:attribute"; attribute(model_cfg, data_info) builds the objective
    modalities: tuple[str, ...]  # what it can generate; the first is a run's default
    sample_options: tuple[Option, ...] = ()
    can_complete: bool = False
    complete_options: tuple[Option, ...] = ()
    presets: Path | None = None  # a folder of preset YAML files that come with the family

    def build(self, model_cfg: Any, data_info: dict[str, Any]) -> Any:
        module, _, name = self.objective.partition(":")
        return getattr(importlib.import_module(module), name)(model_cfg, data_info)

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

    def options(self) -> list[Option]:
        return list(self.sample_options)
