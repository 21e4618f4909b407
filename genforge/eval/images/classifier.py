"""The domain feature extractor: a small CNN classifier per data set, trained once with a fixed
seed on the training split and cached next to the data.

Its penultimate layer (128 units) gives the features for FID/KID/PR in "domain" space; its
logits give class probabilities for the Inception Score, the class histogram and the accuracy
of conditional samples. It exists for every labelled data set, also where no Inception weights
are on disk. The file is safetensors; its metadata carry the training recipe and test accuracy.

    clf = domain_classifier("mnist")              # cached file, or trains it (~30 s, once)
    feats, probs = clf(images)                    # uint8 (B, 1, 28, 28) -> (B, 128), (B, 10)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from genforge.config import ConfigError, DataConfig
from genforge.data import data_roots
from genforge.eval.images.features import sha256_file
from genforge.eval.stats import cache_root
from genforge.modalities.images.data import ImageData, load_images
from genforge.modalities.images.sources import SOURCES
from genforge.version import __version__

CLASSIFIER_FILE = "genforge-classifier-v1.safetensors"
FORMAT = "genforge-classifier-v1"
# The bar each cached classifier must reach on the test split; checked by the slow test and the
# benchmark. Epochs are the fewest that reached it on a 2-core CPU (benchmarks/eval_speed.py).
ACCURACY_BAR = {"mnist": 0.99, "fashion-mnist": 0.90}
EPOCHS = {"mnist": 2, "fashion-mnist": 3}


@dataclass
class TrainSettings:
    """How a domain classifier is trained; all of it is saved in the file's metadata."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 4e-3  # peak of a one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    width: int = 32  # channels of the first conv; doubled twice
    seed: int = 0
    precision: str = "fp32"  # or bf16 (autocast; faster on CPUs with AVX-512 BF16)
    limit: int | None = None  # train on the first `limit` images only (tests)


class DomainNet(nn.Module):
    """Three stride-2 conv blocks, then 128 features, then logits. Any image size >= 8."""

    def __init__(self, channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU())

        self.body = nn.Sequential(block(channels, width), block(width, 2 * width),
                                  block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(4 * width * 16, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, C, H, W) -> features (B, 128)."""
        x = x.float().div(127.5).sub(1)  # (B, C, H, W) in [-1, 1]
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, K) logits


class DomainClassifier:
    """A trained DomainNet as a feature extractor (see features.Extractor)."""

    dim = 128

    def __init__(self, net: DomainNet, meta: dict[str, Any], path: Path | None,
                 precision: str = "fp32") -> None:
        self.net, self.meta, self.path, self.precision = net.eval(), meta, path, precision
        self.name = f"domain-classifier-v1-{meta['dataset']}"
        self.num_classes = int(meta["num_classes"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.path.resolve()) if self.path else None,
                "sha256": sha256_file(self.path) if self.path else None, "dim": self.dim,
                "input": "uint8 at the data set's size and channels, scaled to [-1, 1]; "
                         "no resize", "precision": self.precision,
                "test_accuracy": self.meta.get("test_accuracy"),
                "trained_on": f"{self.meta['dataset']}:train ({self.meta['train_n']} images)"}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, s = self.meta["channels"], self.meta["image_size"]
        if tuple(images.shape[1:]) != (c, s, s):
            raise ConfigError(f"images of shape {tuple(images.shape[1:])}, but the "
                              f"{self.meta['dataset']} classifier takes ({c}, {s}, {s}); "
                              "use --features inception for other image sets")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            feats = self.net.features(images)  # (B, 128)
            logits = self.net.head(feats)  # (B, K)
        return feats.float(), logits.float().softmax(dim=1)


# --------------------------------------------------------------------------------------------
# Training


def train_classifier(train: ImageData, test: ImageData, settings: TrainSettings, *,
                     progress: bool = True) -> tuple[DomainNet, dict[str, Any]]:
    """Train on `train` with a fixed seed; return the net and its metadata (test accuracy)."""
    if train.labels is None or not train.num_classes:
        raise ConfigError(f"{train.name}: a domain classifier needs labels; this data set "
                          "has none (use --features inception)")
    images, labels = train.images, train.labels
    if settings.limit is not None:
        images, labels = images[: settings.limit], labels[: settings.limit]
    start = time.perf_counter()
    net = fit_net(images, labels, train.num_classes, settings, progress=progress,
                  desc=f"training the {train.name} domain classifier (once)")
    seconds = time.perf_counter() - start
    meta = {"format": FORMAT, "dataset": train.name, "channels": train.channels,
            "image_size": train.image_size, "num_classes": train.num_classes,
            "class_names": list(train.class_names), "train_n": len(images),
            "test_n": len(test), "test_accuracy": accuracy(net, test),
            "train_seconds": round(seconds, 1), "settings": asdict(settings),
            "torch": torch.__version__, "genforge": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return net, meta


def fit_net(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
            settings: TrainSettings, *, steps: int | None = None, progress: bool = True,
            desc: str = "training a classifier") -> DomainNet:
    """A DomainNet trained on uint8 `images` (N, C, H, W) and int64 `labels` (N,) with the
    recipe of `settings` (its `limit` is the caller's business); returned in eval mode.
    `steps` fixes the number of optimiser steps (else epochs x full batches per epoch), so
    that training sets of different sizes get the same budget (genforge.eval.images.downstream)."""
    torch.manual_seed(settings.seed)  # the initial weights
    net = DomainNet(images.shape[1], num_classes, settings.width)
    opt = torch.optim.AdamW(net.parameters(), settings.lr / 4, weight_decay=settings.weight_decay)
    batch = min(settings.batch_size, len(images))
    steps_per_epoch = max(1, len(images) // batch)  # drop the last partial batch
    total = steps if steps is not None else settings.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=total)
    order = torch.Generator().manual_seed(settings.seed)  # the batch order
    bar = tqdm(total=total, disable=not progress, unit="step", desc=desc, dynamic_ncols=True)
    net.train()
    done = 0
    while done < total:  # epochs: a fresh permutation each
        perm = torch.randperm(len(images), generator=order)  # (N,)
        for i in range(min(steps_per_epoch, total - done)):
            idx = perm[i * batch : (i + 1) * batch]  # (B,)
            with torch.autocast("cpu", dtype=torch.bfloat16,
                                enabled=settings.precision == "bf16"):
                logits = net(images[idx])  # (B, K)
            loss = F.cross_entropy(logits.float(), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done += min(steps_per_epoch, total - done)
    bar.close()
    return net.eval()


@torch.no_grad()
def accuracy(net: DomainNet, data: ImageData, batch_size: int = 1000) -> float:
    """Share of `data` classified as its label."""
    assert data.labels is not None
    hits = sum(int((net(data.images[i : i + batch_size]).argmax(1)
                    == data.labels[i : i + batch_size]).sum())
               for i in range(0, len(data), batch_size))
    return hits / len(data)


def save_classifier(net: DomainNet, meta: dict[str, Any], path: Path) -> Path:
    """Weights + metadata (all values JSON) to `path`, through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two trainers never collide
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"format": FORMAT, "meta": json.dumps(meta)})
    tmp.chmod(0o644)  # a data folder may be shared: others read the cached classifier too
    tmp.replace(path)
    return path


def load_classifier(path: str | Path, precision: str = "fp32") -> DomainClassifier:
    """A classifier file written by save_classifier."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--classifier {path}: no such file")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if header.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a genforge domain classifier ({FORMAT}) file")
    meta = json.loads(header["meta"])
    net = DomainNet(meta["channels"], meta["num_classes"], meta["settings"]["width"])
    net.load_state_dict(load_file(str(path)))
    return DomainClassifier(net, meta, path, precision)


# --------------------------------------------------------------------------------------------
# Where a classifier lives, and training it on first use


def _writable(folder: Path) -> bool:
    # os.access alone says yes to root even on folders marked read-only (like ../shared),
    # so a folder without any write bit counts as read-only too.
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def classifier_paths(dataset: str, data_root: str | Path | None = None) -> list[Path]:
    """Candidate files, in lookup order: beside the data set, then the user cache."""
    paths = []
    source = SOURCES.get(dataset)
    if source is not None:
        for root in data_roots(data_root):
            folder = root / source.folder
            if folder.is_dir() and any(p.name != CLASSIFIER_FILE for p in folder.iterdir()):
                paths.append(folder / CLASSIFIER_FILE)  # the folder the data are read from
                break
    paths.append(cache_root() / "classifiers" / f"{dataset}-{CLASSIFIER_FILE}")
    return paths


def domain_classifier(dataset: str, data_root: str | Path | None = None, *,
                      path: str | Path | None = None, precision: str = "fp32",
                      progress: bool = True) -> DomainClassifier:
    """The cached classifier of `dataset` (or the file `path`); trains and caches it first if
    there is none. Training shows a progress bar; on 2 CPU cores it took about 30 s for
    MNIST and 1 min for Fashion-MNIST."""
    if path is not None:
        return load_classifier(path, precision)
    if dataset not in SOURCES:
        raise ConfigError(f"no domain classifier for data set {dataset!r} (known: "
                          f"{', '.join(SOURCES)}); pass --classifier FILE or use "
                          "--features inception")
    candidates = classifier_paths(dataset, data_root)
    for candidate in candidates:
        if candidate.is_file():
            return load_classifier(candidate, precision)
    train = load_images(DataConfig(dataset=dataset, split="train"), data_root)
    test = load_images(DataConfig(dataset=dataset, split="test"), data_root)
    settings = TrainSettings(epochs=EPOCHS.get(dataset, 3))
    net, meta = train_classifier(train, test, settings, progress=progress)
    target = next((c for c in candidates if _writable(c.parent) or not c.parent.exists()),
                  candidates[-1])
    save_classifier(net, meta, target)
    if progress:
        print(f"domain classifier for {dataset}: test accuracy {meta['test_accuracy']:.4f}, "
              f"saved to {target}")
    return load_classifier(target, precision)
