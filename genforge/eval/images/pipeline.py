"""Evaluate a trained run, or any two image sets: features, metrics and the protocol of each.

    from genforge.eval import EvalOptions, evaluate
    result = evaluate("runs/dcgan1", options=EvalOptions(n=10000, features="domain"))
    result.metrics["features"]["domain"]["metrics"]["fid"]
    evaluate(fake="samples.npz", options=EvalOptions(real="mnist:test"))

Steps: (1) the fake images (sampled from the run with the seed, or read from a file), the real
reference set and the training set; (2) per feature extractor, reference statistics (cached,
keyed by their protocol) and fake features; (3) FID, KID, precision/recall, density/coverage;
with the domain classifier also IS, class histogram, conditional accuracy, memorisation and a
real-vs-real baseline (training images against the reference set, same sizes); with
`downstream` (conditional runs) also CAS and augmentation gain (genforge.eval.images.downstream).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import ConfigError, DataConfig
from genforge.eval import metrics as M
from genforge.eval.images.features import Extractor, InceptionExtractor, extract
from genforge.eval.privacy import privacy_record
from genforge.eval.stats import FeatureStats, cached_stats, images_sha256, protocol_hash
from genforge.modalities.images.data import load_images
from genforge.modalities.images.sources import SOURCES
from genforge.modalities.images.spec import MODALITY as IMAGES
from genforge.runtime.precision import PRECISIONS
from genforge.version import __version__

FORMAT = "genforge-eval-v1"
FEATURES = ("domain", "inception", "all")
PR_K, DC_K, IS_SPLITS = 3, 5, 10


@dataclass
class EvalOptions:
    """What `genforge eval` takes; every field is recorded in metrics.json."""

    n: int = 10000  # fake images (and at most this many real ones): the MNIST test split size
    features: str = "domain"  # domain | inception | all; inception is ~100x slower on a CPU
    seed: int = 0  # sampling seed, real/train subset seed, KID subsets
    precision: str = "auto"  # auto (bf16 where the CPU/GPU has it), fp32 (published), bf16
    real: str | None = None  # DATASET:SPLIT or an image file; runs default to <dataset>:test
    train: str | None = None  # memorisation reference; runs default to their training data
    inception: str | None = None  # the TorchScript file (else GENFORGE_INCEPTION, shared, pip)
    classifier: str | None = None  # a domain classifier file (else the cached one)
    data_root: str | None = None
    batch_size: int = 100
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    memorisation_queries: int = 5000  # training images whose nearest-neighbour distance sets tau
    use_cache: bool = True  # reference statistics cache
    progress: bool = True
    protected: str | None = None  # tables: the column whose fairness gaps are reported
    # conditional image runs: CAS and augmentation gain (genforge.eval.images.downstream); off by
    # default: it trains 2 + 2 x seeds small classifiers of 400 steps, ~50 CPU-s each on a
    # 2-core AVX2 machine (the real-only ones are cached): 1-4 CPU-minutes at the defaults
    downstream: bool = False
    downstream_n: int | None = None  # CAS images; None: all n generated ones
    downstream_m: int | None = None  # generated images added to the 1,000 real; None: n
    downstream_seeds: int = 1  # augmentation repeats
    downstream_steps: int = 400  # optimiser steps of every downstream classifier
    precision_reason: str = field(default="", init=False)  # what `auto` chose, and why

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ConfigError(f"--features {self.features}: allowed are {', '.join(FEATURES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision}: allowed are "
                              f"{', '.join(PRECISIONS)}")
        if self.precision == "auto":  # resolved once: the extractors and the record see it
            from genforge.runtime.precision import choose_precision

            self.precision, self.precision_reason = choose_precision("auto")
        if self.n < 1:
            raise ConfigError(f"--n {self.n}: must be a positive number of samples")
        if self.batch_size < 1 or self.kid_subsets < 1:
            raise ConfigError("--batch-size and the KID subsets must be positive")


@dataclass
class ImageSet:
    """uint8 images (N, C, H, W) and how they were made (their part of the protocol)."""

    images: torch.Tensor
    record: dict[str, Any]
    labels: np.ndarray | None = None  # the label each fake was generated for
    dataset: str | None = None  # the labelled data set it belongs to (domain classifier)


@dataclass
class EvalResult:
    """What `evaluate` returns: the JSON record and the images the report shows."""

    metrics: dict[str, Any]  # what metrics.json holds
    samples: torch.Tensor  # uint8 (<= 64, C, H, W): the first fakes, for the report's grid
    closest: torch.Tensor | None = None  # uint8 (2k, C, H, W): closest fakes, then neighbours
    run_dir: Path | None = None
    class_names: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# (1) The image sets


def _subset(images: torch.Tensor, labels: torch.Tensor | None, n: int,
            seed: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """All images when n covers them, else n drawn without replacement with `seed`."""
    if n >= len(images):
        return images, labels, "all"
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    pick = pick.sort().values  # (n,) keep data-set order
    return images[pick], None if labels is None else labels[pick], \
        f"{n} drawn without replacement: sorted(torch.randperm(N, seed={seed})[:{n}])"


def image_set(spec: str, n: int, seed: int, data_root: str | None, role: str) -> ImageSet:
    """DATASET[:SPLIT] (default split test) or an image file (.npz, .npy, .png)."""
    from genforge.modalities.images.inputs import read_images

    if Path(spec).exists() or Path(spec).suffix in (".npz", ".npy", ".png"):
        array, _ = read_images(spec)  # (N, C, H, W) uint8
        images, _, subset = _subset(torch.from_numpy(array), None, n, seed)
        record = {"source": "file", "path": str(spec), "n": len(images), "subset": subset}
        return ImageSet(images, {**record, "images_sha256": images_sha256(images)})
    dataset, _, split = spec.partition(":")
    if dataset not in SOURCES:
        raise ConfigError(f"--{role} {spec}: not a file, and {dataset!r} is no known data set "
                          f"(known: {', '.join(SOURCES)}); use DATASET:SPLIT or an .npz")
    data = load_images(DataConfig(dataset=dataset, split=split or "test"), data_root)
    images, _, subset = _subset(data.images, data.labels, n, seed)
    record = {"source": "dataset", "dataset": dataset, "split": split or "test",
              "n": len(images), "of": len(data), "subset": subset}
    return ImageSet(images, {**record, "images_sha256": images_sha256(images)}, dataset=dataset)


def run_sets(run: str | Path,
             options: EvalOptions) -> tuple[ImageSet, ImageSet, ImageSet | None, Any]:
    """Fakes sampled from the run, its reference set (default test split) and training data."""
    from genforge.api import load

    model = load(run)
    model.precision = options.precision  # sampling too, not only the feature extractors
    if model.modality != IMAGES.name:
        raise ConfigError(f"{run}: a {model.modality} model; image metrics need images")
    dataset = model.data_info.get("dataset")
    k = model.num_classes
    labels = np.arange(options.n) % k if k else None  # balanced: sample i is for label i mod K
    with torch.no_grad():
        images = model.sample(options.n, seed=options.seed, label=labels)  # (n, C, H, W) uint8
    fake = ImageSet(images, {
        "source": "run", "run": str(run), "step": model.step, "family": model.family,
        "preset": model.config.preset, "n": options.n, "seed": options.seed,
        "sampling": "GenerativeModel.sample(n, seed=seed, label=labels)",
        "precision": options.precision,
        "labels": f"label of sample i = i mod {k}" if k else None,
        "images_sha256": images_sha256(images)}, labels=labels, dataset=dataset)
    if options.real is None and dataset not in SOURCES:
        raise ConfigError(f"{run}: trained on {dataset!r}, which has no test split genforge "
                          "knows; pass --real DATASET:SPLIT or --real FILE.npz")
    real = image_set(options.real or f"{dataset}:test", options.n, options.seed,
                     options.data_root, "real")
    if options.train:
        train = image_set(options.train, sys.maxsize, options.seed, options.data_root, "train")
    else:  # exactly the images the model was trained on (data.limit included)
        data = load_images(model.config.data, options.data_root)
        train = ImageSet(data.images, {
            "source": "run data", "dataset": data.name, "split": model.config.data.split,
            "n": len(data), "limit": model.config.data.limit,
            "images_sha256": images_sha256(data.images)}, dataset=data.name)
    return fake, real, train, model


# --------------------------------------------------------------------------------------------
# (2) Features and reference statistics


def make_extractors(options: EvalOptions, dataset: str | None) -> dict[str, Extractor]:
    from genforge.eval.images.classifier import domain_classifier

    out: dict[str, Extractor] = {}
    if options.features in ("domain", "all"):
        if dataset is None and options.classifier is None:
            raise ConfigError("--features domain needs the data set of the real images "
                              "(--real DATASET:SPLIT) or --classifier FILE; or use "
                              "--features inception")
        out["domain"] = domain_classifier(dataset or "", options.data_root,
                                          path=options.classifier, precision=options.precision,
                                          progress=options.progress)
    if options.features in ("inception", "all"):
        out["inception"] = InceptionExtractor(options.inception, precision=options.precision)
    return out


def _extractor_key(extractor: Extractor) -> dict[str, Any]:
    """The extractor's part of a cache key / protocol hash: its file by content, not path."""
    return {k: v for k, v in extractor.describe().items() if k != "file"}


def _set_key(images: ImageSet) -> dict[str, Any]:
    """An image set's part of a cache key / protocol hash: its pixels' sha256, not its path."""
    return {k: v for k, v in images.record.items() if k not in ("path", "run")}


def feature_stats(extractor: Extractor, images: ImageSet, options: EvalOptions, *,
                  radii: bool, cache: bool, desc: str) -> FeatureStats:
    """Features, mean, covariance (and k-NN radii) of a set; cached for reference sets."""

    def compute() -> FeatureStats:
        f = extract(extractor, images.images, batch_size=options.batch_size, desc=desc,
                    progress=options.progress)
        mu, sigma = M.mean_cov(f.features)
        r = M.knn_radii(f.features, (PR_K, DC_K)) if radii else {}
        return FeatureStats(f.features, f.probs, mu, sigma, r)

    record = {"format": "genforge-reference-v1", "extractor": _extractor_key(extractor),
              "images": _set_key(images), "radii": [PR_K, DC_K] if radii else []}
    return cached_stats(record, compute, use_cache=cache and options.use_cache)


# --------------------------------------------------------------------------------------------
# (3) Metrics


def distribution_metrics(real: FeatureStats, fake: FeatureStats,
                         options: EvalOptions) -> dict[str, Any]:
    """FID, KID, precision/recall and density/coverage of `fake` against `real`."""
    out: dict[str, Any] = {"fid": M.frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma)}
    out["kid"] = M.kid(real.features, fake.features, subsets=options.kid_subsets,
                       subset_size=options.kid_subset_size, seed=options.seed)
    out.update(M.precision_recall_density_coverage(real.features, fake.features, k_pr=PR_K,
                                                   k_dc=DC_K, real_radii=real.radii))
    return out


def classifier_metrics(real: FeatureStats, fake: FeatureStats, train: FeatureStats | None,
                       fake_set: ImageSet, num_classes: int,
                       options: EvalOptions) -> dict[str, Any]:
    """IS, class histogram, conditional accuracy and memorisation (domain classifier only)."""
    assert fake.probs is not None
    out: dict[str, Any] = {
        "inception_score": M.inception_score(fake.probs, IS_SPLITS),
        "class_histogram": M.class_histogram(fake.probs, num_classes, reference=real.probs),
        "conditional_accuracy": None if fake_set.labels is None else
        M.conditional_accuracy(fake.probs, fake_set.labels, num_classes),
        "memorisation": None,
    }
    if train is not None:
        out["memorisation"] = M.memorisation(
            train.features, fake.features, real.features, queries=options.memorisation_queries,
            seed=options.seed)
    return out


def baseline_metrics(real: FeatureStats, train: FeatureStats, options: EvalOptions,
                     n: int) -> dict[str, Any]:
    """Real vs real: `n` training images against the reference set, as a model that samples
    the data distribution exactly would score at these sizes."""
    pick, _, subset = _subset(torch.arange(len(train.features)), None, n, options.seed + 1)
    feats = train.features[pick.numpy()]  # (n, D)
    mu, sigma = M.mean_cov(feats)
    stats = FeatureStats(feats, None, mu, sigma)
    return {"what": f"training images ({subset}) vs the real reference set",
            "n": len(feats), **distribution_metrics(real, stats, options)}


def file_sets(fake: str | Path, options: EvalOptions) -> tuple[ImageSet, ImageSet,
                                                               ImageSet | None]:
    """Fakes from a file, the --real set, and --train (default: the real data set's train)."""
    if options.real is None:
        raise ConfigError("--fake needs --real (DATASET:SPLIT or a file)")
    fake_set = image_set(str(fake), options.n, options.seed, options.data_root, "fake")
    real_set = image_set(options.real, options.n, options.seed, options.data_root, "real")
    train_spec = options.train or (f"{real_set.dataset}:train" if real_set.dataset else None)
    train_set = None if train_spec is None else image_set(
        train_spec, sys.maxsize, options.seed, options.data_root, "train")
    return fake_set, real_set, train_set


def evaluate_features(extractor: Extractor, fake_set: ImageSet, real_set: ImageSet,
                      train_set: ImageSet | None, options: EvalOptions,
                      params: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Every metric under one extractor, with its protocol; also the closest-pair images."""
    real = feature_stats(extractor, real_set, options, radii=True, cache=True, desc="real")
    fake = feature_stats(extractor, fake_set, options, radii=False, cache=False, desc="fake")
    block: dict[str, Any] = {
        "extractor": extractor.describe(),
        # equal hashes <=> comparable numbers: same extractor, real set, n, seed and params
        "protocol_hash": protocol_hash({"extractor": _extractor_key(extractor),
                                        "real": _set_key(real_set),
                                        "n_fake": len(fake_set.images),
                                        "seed": options.seed, "params": params}),
        "reference_cache": "hit" if real.cached else "computed",
        "metrics": distribution_metrics(real, fake, options),
    }
    if fake.probs is None:  # Inception: features only
        return block, None
    train = None if train_set is None else feature_stats(
        extractor, train_set, options, radii=False, cache=True, desc="train")
    block["metrics"].update(classifier_metrics(real, fake, train, fake_set,
                                               int(fake.probs.shape[1]), options))
    if train is None:
        return block, None
    block["baseline"] = baseline_metrics(real, train, options,
                                         min(len(real.features), len(train.features)))
    return block, _closest_pairs(block["metrics"]["memorisation"], fake_set, train_set)


def evaluate(run: str | Path | None = None, *, fake: str | Path | None = None,
             options: EvalOptions | None = None) -> EvalResult:
    """Evaluate a run folder, or a `fake` image file against `options.real`."""
    options = options or EvalOptions()
    if options.n < 10:  # image metrics (FID's covariance, KID subsets, k-NN) need a few
        raise ConfigError(f"--n {options.n}: at least 10 images are needed for the metrics")
    start = time.perf_counter()
    model = None
    if run is not None:
        fake_set, real_set, train_set, model = run_sets(run, options)
    elif fake is not None:
        fake_set, real_set, train_set = file_sets(fake, options)
    else:
        raise ConfigError("eval needs a run folder, or --real DATASET:SPLIT --fake FILE")
    timings = {"images": time.perf_counter() - start}
    downstream = None
    if options.downstream:  # first: a run without labels fails before the long part
        downstream = _downstream(fake_set, run, options)
        timings["downstream"] = time.perf_counter() - start - timings["images"]
    extractors = make_extractors(options, real_set.dataset or fake_set.dataset)
    params = {"pr_k": PR_K, "dc_k": DC_K, "is_splits": IS_SPLITS,
              "kid_subsets": options.kid_subsets, "kid_subset_size": options.kid_subset_size,
              "memorisation_queries": options.memorisation_queries}
    blocks: dict[str, Any] = {}
    closest = None
    private = privacy_record(run) is not None  # a DP run: no training images shown
    for name, extractor in extractors.items():
        t = time.perf_counter()
        blocks[name], pairs = evaluate_features(extractor, fake_set, real_set, train_set,
                                                options, params)
        closest = pairs if pairs is not None else closest
        memo = blocks[name]["metrics"].get("memorisation")
        if private and memo:  # which training images are nearest: not for a DP run
            memo.pop("closest", None)
        timings[name] = time.perf_counter() - t
    if private:
        closest = None
    metrics = {
        "format": FORMAT, "genforge": __version__, "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "options": asdict(options),
        "protocol": {"format": FORMAT, "seed": options.seed, "fake": fake_set.record,
                     "real": real_set.record,
                     "train": None if train_set is None else train_set.record,
                     "params": params},
        "features": blocks, "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    if downstream is not None:
        metrics["downstream"] = downstream
    names = model.data_info.get("class_names", []) if model else []
    if not names and "domain" in extractors:
        names = list(getattr(extractors["domain"], "meta", {}).get("class_names", []))
    return EvalResult(metrics, fake_set.images[:64], closest,
                      Path(run) if run is not None else None, names)


def _downstream(fake_set: ImageSet, run: str | Path | None,
                options: EvalOptions) -> dict[str, Any]:
    """CAS and augmentation gain of a conditional run's labelled samples."""
    from genforge.eval.images.downstream import DownstreamSettings, downstream_metrics

    if run is None or fake_set.labels is None:
        raise ConfigError(f"--downstream needs a conditional image run (its samples carry "
                          f"labels); {run or 'a --fake file'} has none")
    if fake_set.dataset not in SOURCES:
        raise ConfigError(f"--downstream: {run} was trained on {fake_set.dataset!r}, which "
                          "has no labelled train/test split genforge knows")
    settings = DownstreamSettings(
        n=options.downstream_n, augment_m=options.downstream_m, seeds=options.downstream_seeds,
        seed=options.seed, steps=options.downstream_steps, data_root=options.data_root,
        use_cache=options.use_cache, progress=options.progress)
    return downstream_metrics(fake_set.images, fake_set.labels, fake_set.dataset, settings)


def _closest_pairs(memo: dict[str, Any] | None, fakes: ImageSet,
                   train: ImageSet | None) -> torch.Tensor | None:
    """The samples nearest to the training set, then their nearest training images."""
    if not memo or train is None or not memo["closest"]:
        return None
    f = fakes.images[[c["sample"] for c in memo["closest"]]]  # (k, C, H, W)
    t = train.images[[c["train"] for c in memo["closest"]]]  # (k, C, H, W)
    return torch.cat([f, t]) if f.shape[1:] == t.shape[1:] else None
