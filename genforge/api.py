"""The Python API that the CLI (and later the server) are thin adapters over.

    import genforge
    cfg = genforge.load_config("mnist-dcgan", ["train.max_steps=500"])
    run = genforge.train(cfg).run_dir
    images = genforge.load(run).sample(64, seed=0)          # uint8 (64, 1, 28, 28)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import ConfigError, RunConfig, build_run_config, read_yaml
from genforge.data import DataError, from_model_range, to_model_range
from genforge.data.cifar import load_npz
from genforge.data.masks import make_mask
from genforge.registry import FAMILIES
from genforge.training.checkpoint import MODEL_FILE, read_model, split_state


class GenerativeModel:
    """A trained model rebuilt from its run folder alone (model.safetensors + its metadata)."""

    def __init__(self, cfg: RunConfig, objective: Any, data_info: dict[str, Any], step: int,
                 path: Path) -> None:
        self.config, self.objective, self.data_info = cfg, objective, data_info
        self.step, self.path = step, path

    @property
    def num_classes(self) -> int:
        return self.objective.num_classes

    def to(self, device: str | torch.device) -> GenerativeModel:
        for net in self.objective.nets.values():
            net.to(device)
        return self

    def _labels(self, label: int | list[int] | torch.Tensor | None, n: int) -> torch.Tensor | None:
        if label is None:
            return None
        if not self.num_classes:
            raise ConfigError(f"{self.path}: this model is not conditional; drop the label")
        labels = torch.as_tensor(label, dtype=torch.long).flatten()
        labels = labels.expand(n) if labels.numel() == 1 else labels
        if labels.numel() != n or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ConfigError(f"label {label}: allowed are 0..{self.num_classes - 1}, one or n")
        return labels.clone()

    def sample(self, n: int, *, seed: int = 0, label: Any = None, **options: Any) -> Any:
        """n samples; images come as uint8 (n, C, H, W). `label` (one int or n) conditions a
        conditional model; `options` are the family's own (a sampler, a prompt, ...)."""
        if n <= 0:
            raise ConfigError(f"n={n}: must be a positive number of samples")
        _check_options(self.objective.sample, options, self.config.family)
        samples = self.objective.sample(n, seed=seed, condition=self._labels(label, n), **options)
        if self.data_info.get("kind", "images") == "images":
            return from_model_range(samples)
        return samples

    def write_samples(self, samples: Any, out: Path, *, nrow: int | None = None) -> None:
        """Write what `sample` returned: images as a .png grid or .npz, else the family's way."""
        if hasattr(self.objective, "write_samples"):
            self.objective.write_samples(samples, out)
        elif out.suffix == ".npz":
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out, x=np.asarray(samples))
        elif out.suffix == ".png":
            from genforge.training.images import save_image

            save_image(samples, out, nrow=nrow)
        else:
            raise ConfigError(f"--out {out}: use a .png (grid) or .npz (arrays) file name")

    def complete(self, images: torch.Tensor | np.ndarray, mask: str | torch.Tensor, *,
                 seed: int = 0, label: Any = None, **options: Any) -> torch.Tensor:
        """Fill in missing pixels: `images` uint8 (N, C, H, W); mask True = missing."""
        if not hasattr(self.objective, "complete"):
            family = self.config.family
            raise ConfigError(f"{self.path}: the {family} family cannot complete images")
        x = torch.as_tensor(np.asarray(images))
        c, s = self.data_info["channels"], self.data_info["image_size"]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise DataError(f"input images of shape {tuple(x.shape)}; this model needs (N, {c}, "
                            f"{s}, {s})")
        _check_options(self.objective.complete, options, self.config.family)
        m = make_mask(mask, tuple(x.shape), seed=seed) if isinstance(mask, str) else mask.bool()
        filled = self.objective.complete(to_model_range(x), m, seed=seed,
                                         condition=self._labels(label, x.shape[0]), **options)
        return from_model_range(filled)


def _check_options(fn: Any, options: dict[str, Any], family: str) -> None:
    """Refuse sampling options that this family's `sample` does not take, naming them."""
    import inspect

    accepted = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = sorted(accepted - {"n", "seed", "condition", "batch_size", "x", "mask"})
        names = ", ".join("--" + u.replace("_", "-") for u in unknown)
        raise ConfigError(f"{names} does not apply to {family} models"
                          + (f"; they take {', '.join(allowed)}" if allowed else ""))


def is_transformers_folder(path: Path) -> bool:
    """A transformers model folder (config.json), not a genforge run (config.yaml)."""
    return path.is_dir() and (path / "config.json").exists() and not (path / "config.yaml").exists()


def load(run: str | Path, *, device: str = "cpu") -> GenerativeModel:
    """Rebuild a model from `run` (a run folder or its model.safetensors)."""
    path = Path(run)
    if is_transformers_folder(path):
        from genforge.families.ar.pretrained import load_pretrained  # a transformers folder

        return load_pretrained(path, device=device)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.exists():
        raise ConfigError(f"{path}: no {MODEL_FILE}; is this a genforge run folder?")
    tensors, meta = read_model(file)
    if meta.get("format") != "genforge-model-v1":
        raise ConfigError(f"{file}: not a genforge model file (metadata format missing)")
    cfg = build_run_config(json.loads(meta["config"]), source=str(file))
    data_info = json.loads(meta["data_info"])
    objective = FAMILIES[cfg.family].build(cfg.model, data_info)
    for name, state in split_state(tensors, list(objective.sampling_nets)).items():
        objective.nets[name].load_state_dict(state)
    for net in objective.nets.values():
        net.eval()
    return GenerativeModel(cfg, objective, data_info, int(meta.get("step", 0)), path).to(device)


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The saved config of a run, with the overrides that a resume may change."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: no config.yaml; --resume needs a genforge run folder")
    allowed = ("train.max_steps", "train.stop_after", "log.")
    for text in overrides or []:
        key = text.split("=", 1)[0]
        if not key.startswith(allowed):
            raise ConfigError(
                f"override {key!r}: a resume keeps the run's config; only train.max_steps, "
                "train.stop_after and log.* may change"
            )
    from genforge.config import apply_overrides

    raw = apply_overrides(read_yaml(path), overrides or [])
    raw["train"].setdefault("stop_after", None)
    if not any(o.startswith("train.stop_after") for o in overrides or []):
        raw["train"]["stop_after"] = None  # the stop that ended the run does not stop it again
    return build_run_config(raw, source=str(path))


def read_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images for `complete`: .npz/.npy arrays or a PNG/JPEG file; uint8 (N, C, H, W)."""
    from genforge.data.cifar import to_nchw

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such input file")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".npy":
        return to_nchw(np.load(path, allow_pickle=False), str(path)), None
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im.convert("L" if im.mode in ("L", "1", "LA") else "RGB"))
    return to_nchw(array[None], str(path)), None
