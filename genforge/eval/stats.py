"""Reference statistics of real image sets, cached on disk and keyed by their protocol.

A cache entry holds what every metric needs of one image set under one feature extractor:
features (N, D), class probabilities (N, K) from a classifier, mean (D,) and covariance (D, D)
for the Fréchet distance, and k-NN radii (N,) for precision/recall and density/coverage. Its key
is the sha256 of the canonical JSON of its protocol record (extractor name, weight sha256,
preprocessing and precision; image set and the sha256 of its pixels), so a changed weight file,
resize or data file can never be served stale statistics. Entries live in
$GENFORGE_CACHE/stats/ (default ~/.cache/genforge/stats/) as safetensors with the record in
their metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STATS_FORMAT = "genforge-stats-v1"


def cache_root() -> Path:
    """$GENFORGE_CACHE, else ~/.cache/genforge: stats/ and classifiers/ live under it."""
    root = os.environ.get("GENFORGE_CACHE") or Path.home() / ".cache" / "genforge"
    return Path(root).expanduser()


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def protocol_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a protocol record (sorted keys, no spaces)."""
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def images_sha256(images: Any) -> str:
    """sha256 of the uint8 pixels (N, C, H, W) in C order, with the shape: the set's identity."""
    array = np.ascontiguousarray(np.asarray(images, dtype=np.uint8))
    digest = hashlib.sha256(repr(array.shape).encode())
    digest.update(array.data)
    return digest.hexdigest()


@dataclass
class FeatureStats:
    """One image set under one extractor: everything the metrics read."""

    features: np.ndarray  # (N, D) float32
    probs: np.ndarray | None  # (N, K) float32, classifier extractors only
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    radii: dict[int, np.ndarray] = field(default_factory=dict)  # k -> (N,) k-NN radius
    cached: bool = False  # read from the cache (True) or computed now (False)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"features": self.features, "mu": self.mu, "sigma": self.sigma}
        if self.probs is not None:
            out["probs"] = self.probs
        out.update({f"radius_k{k}": r for k, r in self.radii.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], cached: bool) -> FeatureStats:
        radii = {int(k.removeprefix("radius_k")): v for k, v in arrays.items()
                 if k.startswith("radius_k")}
        return cls(arrays["features"], arrays.get("probs"), arrays["mu"], arrays["sigma"],
                   radii, cached)


def cached_stats(record: dict[str, Any], compute: Callable[[], FeatureStats], *,
                 use_cache: bool = True) -> FeatureStats:
    """The entry for `record` from the cache, or `compute()` it and store it."""
    path = cache_root() / "stats" / f"{protocol_hash(record)[:32]}.safetensors"
    if use_cache and path.is_file():
        stats = _read(path, record)
        if stats is not None:
            return stats
    stats = compute()
    if use_cache:
        _write(path, record, stats)
    return stats


def _read(path: Path, record: dict[str, Any]) -> FeatureStats | None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
        if meta.get("format") != STATS_FORMAT or meta.get("record") != canonical(record):
            return None  # a truncated-hash collision or an older format: recompute
        return FeatureStats.from_arrays(load_file(str(path)), cached=True)
    except (OSError, ValueError, KeyError) as err:  # a damaged file is recomputed, not fatal
        warnings.warn(f"{path}: unreadable statistics cache entry ({err}); recomputing",
                      stacklevel=3)
        return None


def _write(path: Path, record: dict[str, Any], stats: FeatureStats) -> None:
    from safetensors.numpy import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays = {k: np.ascontiguousarray(v) for k, v in stats.arrays().items()}
        save_file(arrays, str(tmp), metadata={"format": STATS_FORMAT, "record": canonical(record)})
        tmp.replace(path)  # readers never see a half-written entry
    except OSError as err:  # a read-only cache costs time, not correctness
        warnings.warn(f"could not write the statistics cache {path} ({err})", stacklevel=3)
