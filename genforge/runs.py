"""Run folders and run configs for the API: a model read back from its folder, the config a
resume continues with, and whether a model's training fits in memory.

Between the API and the registry (it builds run configs and objectives; genforge.training,
below the registry, cannot): `genforge.api` is its user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from genforge.config import RunConfig, apply_overrides, read_yaml
from genforge.errors import ConfigError, DataError
from genforge.registry import build_run_config, get_family
from genforge.training.checkpoint import MODEL_FILE, read_model, split_state


def is_transformers_folder(path: Path) -> bool:
    """A transformers model folder (config.json), not a genforge run (config.yaml)."""
    return path.is_dir() and (path / "config.json").exists() and not (path / "config.yaml").exists()


def read_run(path: Path) -> tuple[RunConfig | None, Any, dict[str, Any], int, dict[str, str]]:
    """(config, objective with its weights, data_info, step, {"family", "modality"} where the
    config does not say them) of a run folder, its model.safetensors or a transformers
    folder (then the config is None)."""
    if is_transformers_folder(path):
        from genforge.families.ar.pretrained import load_pretrained
        from genforge.families.ar.spec import FAMILY

        objective, info = load_pretrained(path)
        return None, objective, info, 0, {"family": FAMILY.name, "modality": FAMILY.modalities[0]}
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.exists():
        raise ConfigError(f"{path}: no {MODEL_FILE}; is this a genforge run folder?")
    tensors, meta = read_model(file)
    if meta.get("format") != "genforge-model-v1":
        raise ConfigError(f"{file}: not a genforge model file (metadata format missing)")
    try:
        raw, data_info = json.loads(meta["config"]), json.loads(meta["data_info"])
    except (KeyError, ValueError) as err:
        raise DataError(f"{file}: its metadata is damaged ({type(err).__name__}: {err}); "
                        "copy the run folder again") from None
    cfg = build_run_config(raw, source=str(file))
    objective = get_family(cfg.family).build(cfg.model, data_info)
    for name, state in split_state(tensors, list(objective.sampling_nets)).items():
        try:
            objective.nets[name].load_state_dict(state)
        except RuntimeError as err:  # missing, extra or reshaped tensors
            first = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
            raise DataError(f"{file}: the {name} weights do not fit its config "
                            f"({' '.join(first.split())[:200]}); the file was changed") from None
    for net in objective.nets.values():
        net.eval()
    return cfg, objective, data_info, int(meta.get("step", 0)), {}

def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The saved config of a run, with the overrides that a resume may change."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: no config.yaml; --resume needs a genforge run folder")
    allowed = ("train.max_steps", "train.stop_after", "train.max_minutes", "log.")
    for text in overrides or []:
        key = text.split("=", 1)[0]
        if not key.startswith(allowed):
            raise ConfigError(
                f"override {key!r}: a resume keeps the run's config; only train.max_steps, "
                "train.stop_after, train.max_minutes and log.* may change"
            )
    raw = apply_overrides(read_yaml(path), overrides or [])
    raw["train"].setdefault("stop_after", None)
    if not any(o.startswith("train.stop_after") for o in overrides or []):
        raw["train"]["stop_after"] = None  # the stop that ended the run does not stop it again
    return build_run_config(raw, source=str(path))


def check_model_memory(spec: Any, cfg: RunConfig, info: dict[str, Any]) -> None:
    """Refuse, before anything is allocated, a model whose training would not fit in memory:
    its parameters are counted on the meta device (no memory is used)."""
    from genforge.data.limits import MAX_TRAINING_BYTES, human

    try:
        with torch.device("meta"):
            nets = spec.build(cfg.model, info).nets
        params = sum(p.numel() for net in nets.values() for p in net.parameters())
    except Exception:  # a family that cannot be built on the meta device: not counted here
        return
    need = 16 * params  # fp32 weights, gradients and two Adam moments
    if need > MAX_TRAINING_BYTES:
        raise ConfigError(f"model.*: {params:,} parameters need about {human(need)} to train "
                          f"(weights, gradients, Adam moments); the limit is "
                          f"{human(MAX_TRAINING_BYTES)} (half this machine's memory)")


def provenance(cfg: RunConfig | None, path: Path, *, seed: int | None, modality: str,
               extra: dict[str, Any]) -> dict[str, Any]:
    """The provenance record (genforge.labelling) of files made by the model of `path` (a run
    folder, its model file, a transformers folder): run, config and weights hashes, seed,
    time, the "AI-generated" label, and `extra` fields."""
    from genforge.labelling import build_record, config_hash, file_hash

    config = None
    if cfg is not None:
        plain = cfg.to_dict()
        plain.pop("labelling", None)  # the key stays out, even as a hash input
        config = config_hash(plain)
    weights = path / MODEL_FILE if path.is_dir() else path
    if not weights.is_file():  # a transformers folder
        weights = next(iter(sorted(path.glob("*.safetensors"))), weights)
    return build_record(
        modality=modality, config_sha256=config,
        run=(path if path.is_dir() else path.parent).resolve().name,
        weights_sha256=file_hash(weights) if weights.is_file() else None, seed=seed,
        extra=extra)

