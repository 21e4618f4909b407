"""Finds the families, modalities and presets, and builds run configs from them.

Families and modalities are objects their own packages define (genforge.families.spec,
genforge.modalities.base): genforge's own are found by listing their folders, a plug-in's
through the entry-point groups `genforge.families` and `genforge.modalities`. Presets are the
YAML files of the preset folders: genforge's, the families' own and GENFORGE_CONFIG_PATH's.
The CLI, the server, docs and `genforge list` read what is found here; nothing is listed by
hand.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import os
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
from genforge.errors import ConfigError
from genforge.families.spec import FamilySpec, Verb
from genforge.modalities.base import Modality
from genforge.options import Option, union

PRESET_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_PRESET = "mnist-dcgan"
CONFIG_PATH_ENV = "GENFORGE_CONFIG_PATH"  # more preset folders, os.pathsep-separated
FAMILY_GROUP, MODALITY_GROUP = "genforge.families", "genforge.modalities"  # entry points


def _builtins(package: str, attribute: str) -> list[tuple[str, Any]]:
    """genforge's own families or modalities: every subpackage of `package` with a `spec`
    module, found by listing the folder (no table to keep in step)."""
    root = Path(importlib.import_module(package).__path__[0])
    return [(f"{package}.{p.name}.spec:{attribute}",
             getattr(importlib.import_module(f"{package}.{p.name}.spec"), attribute))
            for p in sorted(root.iterdir()) if (p / "spec.py").is_file()]


def _plugins(group: str) -> list[tuple[str, Any]]:
    """Objects that installed packages register under the entry-point `group` (as pytest
    and diffusers take plug-ins); a broken plug-in is named in one line."""
    found = []
    for point in importlib.metadata.entry_points(group=group):
        try:
            found.append((f"{point.value} (entry point {point.name!r})", point.load()))
        except Exception as err:
            raise ConfigError(f"entry point {point.name!r} of {group} ({point.value}) does not "
                              f"load: {type(err).__name__}: {err}") from None
    return found


def _by_name(items: list[tuple[str, Any]], kind: type, what: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    where: dict[str, str] = {}
    for origin, item in items:
        if not isinstance(item, kind):
            raise ConfigError(f"{origin}: not a {kind.__name__} (a {what} plug-in must be one)")
        if item.name in table:
            raise ConfigError(f"{what} {item.name!r} is defined twice: {where[item.name]} and "
                              f"{origin}")
        table[item.name], where[item.name] = item, origin
    return dict(sorted(table.items()))  # alphabetical, plug-ins among genforge's own


@functools.cache
def families() -> dict[str, FamilySpec]:
    """Every family, genforge's own and installed plug-ins', by name."""
    return _by_name(_builtins("genforge.families", "FAMILY") + _plugins(FAMILY_GROUP),
                    FamilySpec, "family")


@functools.cache
def modalities() -> dict[str, Modality]:
    """Every modality, genforge's own and installed plug-ins', by name."""
    return _by_name(_builtins("genforge.modalities", "MODALITY") + _plugins(MODALITY_GROUP),
                    Modality, "modality")


def get_modality(name: str) -> Modality:
    table = modalities()
    if name not in table:
        raise ConfigError(f"modality={name!r}: allowed values are {', '.join(table)}")
    return table[name]


def get_family(name: str) -> FamilySpec:
    table = families()
    if name not in table:
        raise ConfigError(f"family={name!r}: allowed values are {', '.join(table)}")
    return table[name]


def preset_folders() -> list[Path]:
    """Where presets are found: genforge's configs, the families' own folders, then the
    folders of GENFORGE_CONFIG_PATH."""
    extra = [Path(p) for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    return [PRESET_DIR, *(f.presets for f in families().values() if f.presets), *extra]


def presets() -> dict[str, Path]:
    """Preset name -> YAML file, by listing the preset folders, alphabetical (a name found
    twice is an error naming both files: a preset never silently shadows another)."""
    found: dict[str, Path] = {}
    for folder in preset_folders():
        for path in sorted(folder.resolve().glob("*.yaml")):
            if path.stem in found and found[path.stem] != path:
                raise ConfigError(f"preset {path.stem!r} is defined twice: {found[path.stem]} "
                                  f"and {path}")
            found[path.stem] = path
    return dict(sorted(found.items()))


def sample_options() -> dict[str, Option]:
    """Every family's sample options by name: the CLI's `sample` flags and the server's
    request fields (genforge.options.union where families share a name)."""
    return _options("sample")


def complete_options() -> dict[str, Option]:
    """Every family's complete options by name: the CLI's `complete` flags and the fields of
    the server's complete requests."""
    return _options("complete")


def _options(verb: Verb) -> dict[str, Option]:
    declared: dict[str, list[tuple[str, Option]]] = {}
    for spec in families().values():
        for option in spec.options(verb):
            declared.setdefault(option.name, []).append((spec.name, option))
    for name, found in declared.items():
        (family, first), *rest = found
        for other_family, other in rest:
            if other.type is not first.type:
                raise ConfigError(f"option {name!r}: {other_family} declares it "
                                  f"{other.type.__name__}, {family} {first.type.__name__}")
    return {name: union([o for _, o in found]) for name, found in declared.items()}


def reload() -> None:
    """Find families and modalities again (after a plug-in was installed)."""
    families.cache_clear()
    modalities.cache_clear()


def __getattr__(name: str) -> Any:
    """FAMILIES, MODALITIES, PRESETS, SAMPLE_OPTIONS and COMPLETE_OPTIONS, as tables."""
    tables = {"FAMILIES": families, "MODALITIES": modalities, "PRESETS": presets,
              "SAMPLE_OPTIONS": sample_options, "COMPLETE_OPTIONS": complete_options}
    if name in tables:
        return tables[name]()
    raise AttributeError(f"module 'genforge.registry' has no attribute {name!r}")


def resolve_preset(spec: str) -> tuple[Path, str | None]:
    """A preset name or a YAML path -> (file, preset name or None)."""
    table = presets()
    if spec in table:
        return table[spec], spec
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"{path}: no such config file")
        stem = path.stem
        return path, stem if table.get(stem) == path.resolve() else None
    close = difflib.get_close_matches(spec, list(table), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"{spec!r} is neither a preset nor a YAML file{hint}; presets: {', '.join(table)}"
    )


def build_run_config(raw: dict[str, Any], *, source: str) -> RunConfig:
    """Turn a nested dict (YAML + overrides) into a validated RunConfig."""
    raw = dict(raw)
    family = raw.get("family")
    table = families()
    if family not in table:
        allowed = ", ".join(table)
        raise ConfigError(f"{source}: family={family!r}: allowed values are {allowed}")
    spec = table[family]
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
