"""Image data sets, found by name in a data root and held in memory as uint8 tensors.

Data roots are searched in the order of `genforge.data.roots`. Models see images scaled to
[-1, 1]; labels are kept. `ImageOutput` turns model samples back into uint8 images and writes
them as a PNG grid or an .npz.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import DataConfig
from genforge.data import roots
from genforge.data.atomic import atomic_path
from genforge.data.batches import Batch, poisson_indices
from genforge.data.download import download
from genforge.data.roots import check_root, data_roots
from genforge.errors import ConfigError, DataError
from genforge.modalities.images import cifar
from genforge.modalities.images.folder import load_folder
from genforge.modalities.images.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from genforge.modalities.images.sources import SOURCES


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
               device: torch.device | str = "cpu", sample_rate: float | None = None) -> Any:
        return BatchStream(self, batch_size=batch_size, seed=seed, rank=rank, world=world,
                           device=device, sample_rate=sample_rate)

    def preview_condition(self, n: int) -> torch.Tensor | None:
        """Labels for a sample grid: one column per class."""
        return torch.arange(n) % self.num_classes if self.num_classes else None

    def write_samples(self, samples: torch.Tensor, stem: Path) -> Path:
        """Model-range images -> stem.png, a grid with one column per class if labelled."""
        from genforge.modalities.images.grids import save_image

        nrow = self.num_classes or None
        return save_image(from_model_range(samples), stem.with_suffix(".png"), nrow)


class BatchStream:
    """Deterministic, resumable global batches of an in-memory image set, sharded over
    processes. Epoch e visits a permutation drawn from seed + e; process r of w takes every
    w-th index of each global batch. The position is two integers, so a checkpoint restores
    the data order exactly. This process's share is split into `micro` micro-batches.

    With `sample_rate` q (DP-SGD), step s is a Poisson sample instead (batches.poisson_indices:
    each image with probability q, a Binomial(n, q) batch size, possibly 0); the position
    counts the steps."""

    def __init__(self, data: ImageData, *, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, device: torch.device | str = "cpu",
                 sample_rate: float | None = None) -> None:
        if batch_size > len(data):
            raise DataError(f"train.batch_size={batch_size} exceeds the {len(data)} examples")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.epoch = 0
        self.position = 0  # global batches taken in this epoch (all steps when Poisson)
        self.sample_rate = sample_rate
        self._order = self._permutation()

    @property
    def batches_per_epoch(self) -> int:
        return len(self.data) // self.batch_size  # the ragged tail is dropped

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.data), generator=g)

    def next(self, micro: int) -> list[Batch]:
        """The next global batch: this process's part, as `micro` micro-batches."""
        if self.sample_rate is not None:
            index = poisson_indices(len(self.data), self.sample_rate, seed=self.seed,
                                    step=self.position)[self.rank :: self.world]
            self.position += 1
            return self._batches(index, micro)
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation()
        start = self.position * self.batch_size
        index = self._order[start : start + self.batch_size][self.rank :: self.world]
        self.position += 1
        return self._batches(index, micro)

    def _batches(self, index: torch.Tensor, micro: int) -> list[Batch]:
        x = to_model_range(self.data.images[index]).to(self.device, non_blocking=True)
        y = None if self.data.labels is None else self.data.labels[index].to(self.device)
        xs = x.chunk(micro)
        ys = y.chunk(micro) if y is not None else [None] * micro
        return [Batch(a, b) for a, b in zip(xs, ys, strict=True)]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div(127.5).sub_(1.0)  # div makes a copy: the input is untouched


def from_model_range(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    # on the CPU: what comes out is for files, arrays and people, whatever device sampled it
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()


def load_images(cfg: DataConfig, data_root: str | Path | None = None) -> ImageData:
    """Read the split `cfg` names; `data_root` (the CLI's --data-root) wins over cfg.root."""
    given = data_root or cfg.root  # a root to download into may not exist yet
    explicit = Path(given).expanduser() if cfg.download and given else check_root(given)
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
    root = Path(explicit) if explicit else Path(env[0]) if env else roots.CACHE_ROOT
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


class ImageOutput:
    """Images out of a model: uint8 (N, C, H, W), written as a .png grid or an .npz (x)."""

    default_out = "samples.png"
    default_n = 64
    suffixes = (".png", ".npz")

    def decode(self, samples: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        return from_model_range(samples)

    def write(self, values: Any, path: Path, info: dict[str, Any], *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None, watermark: bytes | None = None) -> Path:
        """A .png grid or an .npz; `provenance` goes into the file (PNG text chunks + XMP) or
        its sidecar (.npz); `watermark` (a secret) marks the grid, or each image of an .npz."""
        from genforge.labelling import embed_provenance
        from genforge.labelling import image_watermark as wm
        from genforge.modalities.images.grids import make_grid, save_image

        path = Path(path)
        if path.suffix not in (".png", ".npz"):
            raise ConfigError(f"--out {path}: images go to a .png (grid) or .npz (arrays) file")
        if path.suffix == ".npz":
            array = np.asarray(values)
            if watermark is not None:
                array = np.stack([wm.embed(x.transpose(1, 2, 0).squeeze(-1) if x.shape[0] == 1
                                           else x.transpose(1, 2, 0), watermark)
                                  .reshape(x.shape[1], x.shape[2], -1).transpose(2, 0, 1)
                                  for x in array])
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, path.with_name(f".{path.stem}.tmp.npz")) as tmp:
                np.savez_compressed(tmp, x=array)  # a full disk leaves no half-written file
        elif watermark is not None:
            grid = make_grid(values, nrow=nrow)
            grid = wm.embed(grid[..., 0] if grid.shape[-1] == 1 else grid, watermark)
            save_image(grid.reshape(*grid.shape[:2], -1).transpose(2, 0, 1)[None], path,
                       nrow=1, padding=0)
        else:
            save_image(values, path, nrow=nrow)
        if provenance is not None:
            embed_provenance(path, provenance)
        return path
