"""Image data sets, found by name in a data root and held in memory as uint8 tensors.

Root order: `data.root` / `--data-root`, then `GENFORGE_DATA` (a path list), then the repo's
bundled `data/` (MNIST ships there), then `~/.cache/genforge/data` (where downloads go when no
root is given). Models see images scaled to [-1, 1]; labels are kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import DataConfig
from genforge.data import cifar
from genforge.data.download import download
from genforge.data.errors import DataError
from genforge.data.folder import load_folder
from genforge.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from genforge.data.sources import SOURCES

__all__ = ["DataError", "ImageData", "data_roots", "find_in_roots", "from_model_range",
           "load_images", "to_model_range"]

BUNDLED_ROOT = Path(__file__).resolve().parents[2] / "data"
CACHE_ROOT = Path.home() / ".cache" / "genforge" / "data"


@dataclass
class ImageData:
    """A whole split in memory: `images` uint8 (N, C, H, W), `labels` int64 (N,) or None."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def __len__(self) -> int:
        return self.images.shape[0]

    # --- what the training loop asks of any data kind (see training/contract.py) ---

    def info(self) -> dict[str, Any]:
        """What a model must know of its data, saved with it so that loading needs no data."""
        return {
            "kind": "images",
            "dataset": self.name,
            "channels": self.channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names) if self.num_classes else [],
        }

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu") -> Any:
        from genforge.training.batches import BatchStream

        return BatchStream(self, batch_size=batch_size, seed=seed, rank=rank, world=world,
                           device=device)

    def preview_condition(self, n: int) -> torch.Tensor | None:
        """Labels for a sample grid: one column per class."""
        return torch.arange(n) % self.num_classes if self.num_classes else None

    def write_samples(self, samples: torch.Tensor, stem: Path) -> Path:
        """Model-range images -> stem.png, a grid with one column per class if labelled."""
        from genforge.training.images import save_image

        nrow = self.num_classes or None
        return save_image(from_model_range(samples), stem.with_suffix(".png"), nrow)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div(127.5).sub_(1.0)  # div makes a copy: the input is untouched


def from_model_range(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def data_roots(explicit: str | Path | None = None) -> list[Path]:
    roots = [Path(explicit)] if explicit else []
    env = os.environ.get("GENFORGE_DATA")
    if env:
        roots += [Path(p) for p in env.split(os.pathsep) if p]
    roots += [BUNDLED_ROOT, CACHE_ROOT]
    return list(dict.fromkeys(r.expanduser() for r in roots))


def find_in_roots(path: str, explicit: str | Path | None = None, what: str = "the file") -> Path:
    """An absolute `path`, or `path` under the first data root that has it (text corpora,
    CSV series); the error lists every place looked at."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        if candidate.exists():
            return candidate
        raise DataError(f"data.path={path}: no such file or folder")
    roots = data_roots(explicit)
    for root in roots:
        if (root / candidate).exists():
            return root / candidate
    where = ", ".join(str(r / candidate) for r in roots)
    raise DataError(f"data.path={path}: not found; put {what} at one of: {where} (or point "
                    f"GENFORGE_DATA / --data-root at the folder that holds {candidate})")


def load_images(cfg: DataConfig, data_root: str | Path | None = None) -> ImageData:
    """Read the split `cfg` names; `data_root` (the CLI's --data-root) wins over cfg.root."""
    explicit = data_root or cfg.root
    if cfg.dataset == "folder":
        images, labels, classes = load_folder(
            Path(cfg.path), image_size=cfg.image_size, channels=cfg.channels
        )
        data = ImageData(Path(cfg.path).name, torch.from_numpy(images),
                         torch.from_numpy(labels), classes)
    elif cfg.dataset == "npz":
        images, labels = cifar.load_npz(Path(cfg.path))
        classes = [str(c) for c in range(int(labels.max()) + 1)] if labels is not None else []
        data = ImageData(Path(cfg.path).stem, torch.from_numpy(images),
                         None if labels is None else torch.from_numpy(labels), classes)
    elif cfg.dataset in ("mnist", "fashion-mnist"):
        data = _load_idx_dataset(cfg, explicit)
    elif cfg.dataset == "cifar10":
        data = _load_cifar10(cfg, explicit)
    else:
        known = ", ".join([*SOURCES, "folder", "npz"])
        raise DataError(f"data.dataset={cfg.dataset!r}: unknown; known data sets are {known}")
    if cfg.limit is not None:
        data.images = data.images[: cfg.limit]
        data.labels = None if data.labels is None else data.labels[: cfg.limit]
    return data


def _find(folder: str, names: list[str], explicit: str | Path | None) -> Path | None:
    """The first root whose `folder` holds all of `names` (or their un-gzipped versions)."""
    for root in data_roots(explicit):
        base = root / folder
        if all((base / n).exists() or (base / n.removesuffix(".gz")).exists() for n in names):
            return base
    return None


def _missing_error(dataset: str, names: list[str], explicit: str | Path | None) -> DataError:
    where = ", ".join(str(r / SOURCES[dataset].folder) for r in data_roots(explicit))
    return DataError(
        f"{dataset}: missing {', '.join(names)}; put them in one of: {where} "
        f"(or pass data.download=true to fetch them, checksums verified)"
    )


def _download_target(dataset: str, explicit: str | Path | None) -> Path:
    env = [p for p in os.environ.get("GENFORGE_DATA", "").split(os.pathsep) if p]
    root = Path(explicit) if explicit else Path(env[0]) if env else CACHE_ROOT
    return root.expanduser() / SOURCES[dataset].folder


def _load_idx_dataset(cfg: DataConfig, explicit: str | Path | None) -> ImageData:
    source = SOURCES[cfg.dataset]
    files = source.files[cfg.split]
    names = [f.name for f in files]
    base = _find(source.folder, names, explicit)
    if base is None:
        if not cfg.download:
            raise _missing_error(cfg.dataset, names, explicit)
        base = _download_target(cfg.dataset, explicit)
        for remote in files:
            if not (base / remote.name).exists():
                download(remote, base)

    def path_of(name: str) -> Path:
        return base / name if (base / name).exists() else base / name.removesuffix(".gz")

    images = read_idx(path_of(names[0]), IMAGES_MAGIC)  # (N, 28, 28)
    labels = read_idx(path_of(names[1]), LABELS_MAGIC)  # (N,)
    if len(images) != len(labels):
        raise DataError(
            f"{base}: {len(images)} images but {len(labels)} labels; the files do not match"
        )
    return ImageData(cfg.dataset, torch.from_numpy(images.copy())[:, None],
                     torch.from_numpy(labels.astype(np.int64)), list(source.classes))


def _load_cifar10(cfg: DataConfig, explicit: str | Path | None) -> ImageData:
    source = SOURCES["cifar10"]
    classes = list(source.classes)
    for root in data_roots(explicit):
        base = root / source.folder
        if (base / cifar.BATCH_FOLDER).is_dir() or (base / "cifar-10-python.tar.gz").exists():
            images, labels = cifar.load_batches(base, cfg.split)
            return ImageData("cifar10", torch.from_numpy(images), torch.from_numpy(labels), classes)
    for root in data_roots(explicit):
        npz = root / source.folder / cifar.NPZ_COPY
        if npz.exists() and cfg.split == "test":
            images, labels = cifar.load_npz(npz)
            return ImageData("cifar10", torch.from_numpy(images),
                             torch.from_numpy(labels), classes)
    if cfg.download:
        base = _download_target("cifar10", explicit)
        download(source.files["train"][0], base)
        images, labels = cifar.load_batches(base, cfg.split)
        return ImageData("cifar10", torch.from_numpy(images), torch.from_numpy(labels), classes)
    hint = " (only the .npz test copy was found: use data.split=test)" if cfg.split == "train" \
        and _find(source.folder, [cifar.NPZ_COPY], explicit) else ""
    raise DataError(
        f"cifar10: missing cifar-10-python.tar.gz or its {cifar.BATCH_FOLDER}/ folder for split "
        f"{cfg.split!r}{hint}; put it in one of: "
        f"{', '.join(str(r / source.folder) for r in data_roots(explicit))}, "
        "or pass data.download=true"
    )
