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
from typing import Any, Literal

from genforge.config import RunConfig
from genforge.errors import ConfigError
from genforge.options import Option

Verb = Literal["sample", "complete"]


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
    # True: the family's kinds take different sample options, and every objective names the
    # ones its kind takes in its `sample_options` attribute (a tuple of names; tabular: only
    # TabDDPM takes a temperature)
    options_by_kind: bool = False

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

    def options(self, verb: Verb = "sample", objective: Any = None) -> list[Option]:
        """The options `verb` takes; with a built `objective`, only those its kind takes."""
        declared = self.sample_options if verb == "sample" else self.complete_options
        if verb == "sample" and self.options_by_kind and objective is not None:
            return [o for o in declared if o.name in objective.sample_options]
        return list(declared)

    def option(self, name: str, verb: Verb = "sample") -> Option | None:
        """The option `name` of `verb`, or None where this family does not declare it."""
        return next((o for o in self.options(verb) if o.name == name), None)

    def check_options(self, verb: Verb, given: dict[str, Any],
                      objective: Any = None) -> dict[str, Any]:
        """`given` with each value checked by its option; an option this family (or the
        objective's kind) does not take is refused in one line naming what it takes."""
        table = {o.name: o for o in self.options(verb, objective)}
        unknown = [name for name in given if name not in table]
        if unknown:
            names = ", ".join("--" + u.replace("_", "-") for u in sorted(unknown))
            takes = f"; they take {', '.join(sorted(table))}" if table else ""
            raise ConfigError(f"{names} does not apply to {self.name} models{takes}")
        return {name: table[name].check(value) for name, value in given.items()}
