"""The `points` modality: clouds of 2-D points, from a named shape or a CSV of x,y rows.

Everything genforge's engines ask of a modality is here: the `data:` config, the loader (a
TrainingData the training loop streams), the output (decode, write .csv/.npz with a
provenance record), the HTTP body, and the evaluator `genforge eval` runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.data.batches import Batch
from genforge.errors import ConfigError, DataError
from genforge.modalities.base import HttpCompletion, Modality


@dataclass
class PointsDataConfig:
    shape: str = "rings"  # rings | blobs, drawn with `seed`; or `path` to a CSV of x,y rows
    path: str | None = None
    rows: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shape not in ("rings", "blobs"):
            raise ConfigError(f"data.shape={self.shape!r}: allowed values are rings, blobs")
        if self.rows < 2:
            raise ConfigError(f"data.rows={self.rows}: must be >= 2")


def draw(shape: str, rows: int, seed: int) -> np.ndarray:
    """rows points of a named shape: two noisy rings, or three blobs."""
    rng = np.random.default_rng(seed)
    if shape == "rings":
        angle = rng.uniform(0, 2 * math.pi, rows)
        radius = np.where(rng.random(rows) < 0.5, 1.0, 2.0) + rng.normal(0, 0.05, rows)
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return centres[rng.integers(0, 3, rows)] + rng.normal(0, 0.3, (rows, 2))


class PointsData:
    """A cloud in memory; what the training loop asks (genforge.training.contract)."""

    def __init__(self, points: np.ndarray, name: str) -> None:
        self.points = torch.as_tensor(points, dtype=torch.float32)
        self.name = name

    def __len__(self) -> int:
        return self.points.shape[0]

    def info(self) -> dict[str, Any]:
        return {"kind": "points", "dataset": self.name, "dims": 2, "rows": len(self)}

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: Any = "cpu", sample_rate: float | None = None) -> PointsStream:
        if sample_rate is not None:
            raise ConfigError("privacy: the points plug-in has no Poisson batches")
        return PointsStream(self.points, batch_size, seed, device)

    def preview_condition(self, n: int) -> None:
        return None

    def write_samples(self, samples: torch.Tensor, stem: Path) -> Path:
        return PointsOutput().write(PointsOutput().decode(samples, {}), stem.with_suffix(".csv"),
                                    {})


class PointsStream:
    """Shuffled batches, epoch after epoch; its position is two integers (resumable)."""

    def __init__(self, points: torch.Tensor, batch_size: int, seed: int, device: Any) -> None:
        if batch_size > len(points):
            raise DataError(f"train.batch_size={batch_size} exceeds the {len(points)} points")
        self.points, self.batch_size, self.seed = points, batch_size, seed
        self.device = torch.device(device)
        self.epoch, self.position = 0, 0

    def next(self, micro: int) -> list[Batch]:
        if (self.position + 1) * self.batch_size > len(self.points):
            self.epoch, self.position = self.epoch + 1, 0
        order = torch.randperm(len(self.points),
                               generator=torch.Generator().manual_seed(self.seed + self.epoch))
        start = self.position * self.batch_size
        self.position += 1
        x = self.points[order[start:start + self.batch_size]].to(self.device)
        return [Batch(part, None) for part in x.chunk(micro)]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def load_points(cfg: PointsDataConfig, data_root: Any = None) -> PointsData:
    if cfg.path is None:
        return PointsData(draw(cfg.shape, cfg.rows, cfg.seed), cfg.shape)
    path = Path(cfg.path)
    try:
        points = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as err:
        raise DataError(f"data.path={path}: not a CSV of x,y rows ({err})") from None
    if points.shape[1] != 2:
        raise DataError(f"data.path={path}: {points.shape[1]} columns; points have 2 (x,y)")
    return PointsData(points, path.stem)


class PointsOutput:
    default_out = "points.csv"
    default_n = 256
    suffixes = (".csv", ".npz")

    def decode(self, samples: Any, info: dict[str, Any]) -> np.ndarray:
        return np.asarray(torch.as_tensor(samples).float().cpu(), dtype=np.float64)

    def write(self, values: Any, path: Path, info: dict[str, Any], *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npz":
            extra = {"provenance": json.dumps(provenance)} if provenance else {}
            np.savez(path, points=values, **extra)
            return path
        header = "x,y" if provenance is None else f"# provenance: {json.dumps(provenance)}\nx,y"
        np.savetxt(path, values, delimiter=",", header=header, comments="", fmt="%.6g")
        return path


def evaluate_points(model: Any, options: Any, out: str,
                    n_given: bool) -> tuple[list[str], dict[str, Path]]:
    """Energy distance between the model's points and fresh points of the run's shape."""
    data_cfg = model.config.data
    n = options.n if n_given else 1000
    fake = model.sample(n, seed=options.seed)
    real = draw(data_cfg.shape, n, data_cfg.seed + 1)
    energy = energy_distance(real, fake)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = folder / "metrics.json"
    metrics.write_text(json.dumps({"energy_distance": energy, "n": n}))
    return [f"energy distance {energy:.4g} (n {n})"], {"metrics": metrics}


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely), the V-statistic."""
    def mean_dist(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.linalg.norm(u[:, None] - v[None], axis=-1).mean())

    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


class Points(Modality):
    name = "points"
    description = "2-D point clouds (a plug-in from outside genforge)"
    data_config = PointsDataConfig
    loader = "genforge_points.modality:load_points"
    output = "genforge_points.modality:PointsOutput"
    evaluator = "genforge_points.modality:evaluate_points"
    http_formats = ("json",)
    completes = "cells"  # a point's missing coordinate (an empty CSV cell, NaN)

    def read_cells(self, source: Any, data_info: dict[str, Any]) -> torch.Tensor:
        """Points with empty cells: an (n, 2) array with NaN, or a CSV of x,y rows."""
        if isinstance(source, str | Path):
            try:
                source = np.genfromtxt(source, delimiter=",", skip_header=1, ndmin=2)
            except (OSError, ValueError) as err:
                raise DataError(f"--input {source}: not a CSV of x,y rows ({err})") from None
        values = torch.as_tensor(np.asarray(source, dtype=np.float64), dtype=torch.float32)
        if values.ndim != 2 or values.shape[1] != 2:
            raise DataError(f"points of shape {tuple(values.shape)}; expected (n, 2)")
        return values

    def http_completion(self, model: Any, model_id: str, given: dict[str, Any],
                        options: dict[str, Any], seed: int, max_upload: int) -> HttpCompletion:
        if not isinstance(given.get("rows"), str):
            raise ConfigError("rows: required (CSV text x,y with empty cells)")
        import io

        points = np.genfromtxt(io.StringIO(given["rows"]), delimiter=",", skip_header=1,
                               ndmin=2)
        return HttpCompletion(
            run=lambda: model.complete_rows(points, seed=seed),
            record={"operation": "complete", "input": "upload"},
            body=lambda filled, label: self.http_body(filled, "json",
                                                      {"model": model_id, "seed": seed}, label))

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Any) -> tuple[bytes, str]:
        body = json.dumps({**meta, "points": np.asarray(samples).tolist()}).encode()
        return label(".json", body), "application/json"


MODALITY = Points()
