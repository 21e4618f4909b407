"""Downstream measures of a conditional image model: do its labelled samples train a classifier?

    block = downstream_metrics(fake_images, fake_labels, "mnist", DownstreamSettings())
    block["cas"]["accuracy"], block["cas"]["real_reference"], block["augmentation"]["gain"]

- Classification accuracy score (CAS; Ravuri & Vinyals 2019): a classifier trained on N
  generated labelled images only, tested on the real test split; next to the same classifier
  trained on N real training images (a balanced seeded subset), the real reference.
- Augmentation gain: a classifier trained on `real_n` real training images (balanced, seeded)
  plus M generated ones, against the same classifier on the `real_n` real images alone; both
  tested on the real test split; averaged over `seeds` (each seed draws its own real subset,
  initial weights and batch order).

Every classifier is the domain classifier's DomainNet trained with its recipe (AdamW, one-cycle
learning rate, batch 128, genforge.eval.images.classifier.fit_net) for the same fixed number
of steps,whatever the size of its training set, so that only the training images differ between
arms.
The real-only arms do not depend on the model: their accuracies are cached by protocol.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from genforge.config import ConfigError, DataConfig
from genforge.eval.images.classifier import TrainSettings, accuracy, fit_net
from genforge.eval.stats import cache_root, images_sha256, protocol_hash
from genforge.modalities.images.data import ImageData, load_images

FORMAT = "genforge-downstream-v1"


@dataclass
class DownstreamSettings:
    """The protocol's numbers; all of them are recorded next to the results."""

    n: int | None = None  # CAS: generated (and real reference) images; None = all given
    real_n: int = 1000  # augmentation: the small real training set
    augment_m: int | None = None  # augmentation: generated images added; None = n
    seeds: int = 1  # augmentation repeats (seed, seed+1, ...); CAS uses the first seed
    seed: int = 0
    # Fewer steps than the domain classifier's 2-3 epochs of the full train split (936 for
    # MNIST): 400 steps of 128 images reach 98.4% on 10,000 real MNIST images and keep one
    # classifier under a CPU-minute (~50 CPU-s measured on a busy 2-core AVX2 machine).
    steps: int = 400
    test_n: int | None = None  # the first test_n test images (tiny tests); None: all
    data_root: str | None = None
    use_cache: bool = True
    progress: bool = False

    def check(self, available: int) -> None:
        for name in ("n", "augment_m"):
            value = getattr(self, name)
            if value is not None and not 10 <= value <= available:
                raise ConfigError(f"--downstream-{name.replace('_', '-')} {value}: allowed "
                                  f"are 10..{available} (the generated images; raise --n)")
        if self.real_n < 10 or self.seeds < 1 or self.steps < 1:
            raise ConfigError(f"downstream real_n {self.real_n}, seeds {self.seeds}, steps "
                              f"{self.steps}: real_n >= 10, seeds and steps >= 1 are allowed")


def balanced_subset(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices (n,) of n images, n // K per class (the first n % K classes one more), each
    class drawn without replacement with `seed`; sorted."""
    rng = torch.Generator().manual_seed(seed)
    picks = []
    for k in range(num_classes):
        members = (labels == k).nonzero().flatten()  # (N_k,)
        want = n // num_classes + (k < n % num_classes)
        if want > len(members):
            raise ConfigError(f"downstream: {want} real images of class {k} wanted, the "
                              f"training split has {len(members)}; lower --downstream-n")
        picks.append(members[torch.randperm(len(members), generator=rng)[:want]])
    return torch.cat(picks).sort().values


def _train_and_test(images: torch.Tensor, labels: torch.Tensor, test: ImageData,
                    settings: DownstreamSettings, seed: int, desc: str) -> float:
    recipe = TrainSettings(seed=seed)
    net = fit_net(images, labels, test.num_classes, recipe, steps=settings.steps,
                  progress=settings.progress, desc=desc)
    return accuracy(net, test)


def _cached_accuracy(record: dict[str, Any], compute: Any, use_cache: bool) -> float:
    """A real-only arm's test accuracy, cached under its protocol hash (it has no model in
    it); a different torch or genforge gives a fresh key, as the numbers may move."""
    path = cache_root() / "downstream" / f"{protocol_hash(record)}.json"
    if use_cache and path.is_file():
        return float(json.loads(path.read_text())["accuracy"])
    value = compute()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"record": record, "accuracy": value}))
        tmp.replace(path)
    return value


def downstream_metrics(fake: torch.Tensor, fake_labels: np.ndarray | torch.Tensor,
                       dataset: str, settings: DownstreamSettings) -> dict[str, Any]:
    """CAS and augmentation gain of the labelled `fake` images (uint8 (N, C, H, W), labels
    (N,)) of the labelled data set `dataset`; the block that metrics.json holds."""
    start = time.perf_counter()
    settings.check(len(fake))
    train = load_images(DataConfig(dataset=dataset, split="train"), settings.data_root)
    test = load_images(DataConfig(dataset=dataset, split="test", limit=settings.test_n),
                       settings.data_root)
    if train.labels is None or not train.num_classes:
        raise ConfigError(f"downstream: data set {dataset!r} has no labels")
    if tuple(fake.shape[1:]) != tuple(train.images.shape[1:]):
        raise ConfigError(f"downstream: generated images of shape {tuple(fake.shape[1:])}, "
                          f"{dataset} has {tuple(train.images.shape[1:])}")
    k = train.num_classes
    labels = torch.as_tensor(np.asarray(fake_labels), dtype=torch.int64)  # (N,)
    if labels.shape != (len(fake),) or labels.min() < 0 or labels.max() >= k:
        raise ConfigError(f"downstream: need one label in 0..{k - 1} per generated image")
    n = settings.n or len(fake)
    m = settings.augment_m or n
    base = {"format": FORMAT, "dataset": dataset, "steps": settings.steps,
            "recipe": asdict(TrainSettings()), "test_sha256": images_sha256(test.images),
            "torch": torch.__version__}

    def real_arm(size: int, seed: int, what: str) -> float:
        pick = balanced_subset(train.labels, size, k, seed)
        record = {**base, "arm": what, "real_n": size, "seed": seed,
                  "train_sha256": images_sha256(train.images[pick])}
        return _cached_accuracy(record, lambda: _train_and_test(
            train.images[pick], train.labels[pick], test, settings, seed, what),
            settings.use_cache)

    # CAS: the first n generated images (label i mod K when sampled by the eval: balanced)
    seed0 = settings.seed
    cas = _train_and_test(fake[:n], labels[:n], test, settings, seed0, "CAS (generated)")
    reference = real_arm(n, seed0, "CAS real reference")
    per_seed = []
    for seed in range(settings.seed, settings.seed + settings.seeds):
        pick = balanced_subset(train.labels, settings.real_n, k, seed)
        mixed = _train_and_test(torch.cat([train.images[pick], fake[:m]]),
                                torch.cat([train.labels[pick], labels[:m]]), test, settings,
                                seed, "augmentation (real + generated)")
        alone = real_arm(settings.real_n, seed, "augmentation (real only)")
        per_seed.append({"seed": seed, "real_only": alone, "real_plus_generated": mixed,
                         "gain": mixed - alone})
    mean = {key: float(np.mean([s[key] for s in per_seed]))
            for key in ("real_only", "real_plus_generated", "gain")}
    return {
        "format": FORMAT,
        "protocol": {
            "classifier": "genforge.eval.images.classifier.DomainNet, trained by fit_net with the "
                          "domain classifier's recipe (TrainSettings) for a fixed number of "
                          "steps whatever the training-set size",
            "steps": settings.steps, "recipe": base["recipe"],
            "test": f"{dataset}:test, {'all' if settings.test_n is None else 'the first'} "
                    f"{len(test)} images",
            "generated": f"the first {n} (CAS) / {m} (augmentation) generated images with "
                         "the label each was sampled for",
            "real_subsets": f"{dataset}:train, balanced: n // {k} per class drawn without "
                            "replacement with the seed (downstream.balanced_subset)",
            "seeds": list(range(settings.seed, settings.seed + settings.seeds)),
            "settings": asdict(settings) | {"data_root": None},
        },
        "cas": {"accuracy": cas, "real_reference": reference,
                "ratio": cas / reference if reference else None, "n": n,
                "what": f"trained on {n} generated images only vs on {n} real training "
                        "images; both tested on the real test split"},
        "augmentation": {**mean, "real_n": settings.real_n, "generated_m": m,
                         "seeds": settings.seeds, "per_seed": per_seed,
                         "what": f"trained on {settings.real_n} real + {m} generated images "
                                 f"vs on the {settings.real_n} real alone; mean over "
                                 f"{settings.seeds} seed(s)"},
        "seconds": round(time.perf_counter() - start, 1),
    }
