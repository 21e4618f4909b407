"""CSV time series: read, split into past and held-out tail, scaled, served as windows.

    values y (N, D) --log?--> --difference?--> z = (. - mean) / std, mean and std of the
    training rows only (the held-out tail never informs the scaling)

A training window predicts `window` consecutive steps of z; it carries the `max_lag` steps
before them as inputs: x (B, max_lag + window, D), and the original row index of its first
target (B,) for the season. Step s draws the global batch's starts from a generator seeded
with (seed, s); process r of w takes every w-th window; the state is the one integer s.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.data import find_in_roots
from genforge.data.errors import DataError
from genforge.families.series.config import SeriesDataConfig
from genforge.training.contract import Batch


class SeriesData:
    """The whole series in memory; `info()` carries it, so sampling needs no data file."""

    def __init__(self, cfg: SeriesDataConfig, times: list[str], columns: list[str],
                 values: np.ndarray, source: str) -> None:
        self.cfg, self.times, self.columns = cfg, times, columns
        self.values = values  # (N, D) float64, original units
        self.train_rows = len(values) - cfg.test_length
        self.lags = [1] if cfg.period == 1 else [1, cfg.period]
        z_all = _transform(values, cfg.transform, cfg.difference)
        z_train = z_all[: self.train_rows - int(cfg.difference)]
        self.mean, self.std = z_train.mean(0), z_train.std(0) + 1e-8
        self.z = ((z_train - self.mean) / self.std).astype(np.float32)  # (N_train', D)
        need = max(self.lags) + cfg.window
        if len(self.z) < need:
            raise DataError(f"{source}: {len(self.z)} training steps after the held-out tail "
                            f"of {cfg.test_length}; a window needs {need} (lags + "
                            "data.window): shorten data.window or data.test_length")
        self.source = source

    def info(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "kind": "series", "dataset": c.dataset, "path": c.path, "columns": self.columns,
            "times": self.times, "history": self.values.tolist(),
            "train_rows": self.train_rows, "test_length": c.test_length,
            "period": c.period, "lags": self.lags, "window": c.window,
            "transform": c.transform, "difference": c.difference,
            "mean": self.mean.tolist(), "std": self.std.tolist(),
            "split": "the last test_length rows are held out; scaling uses the rows before",
        }

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu") -> SeriesStream:
        offset = int(self.cfg.difference)  # z[i] is the change into row i + 1
        return SeriesStream(self.z, max(self.lags), self.cfg.window, offset,
                            batch_size=batch_size, seed=seed, rank=rank, world=world,
                            device=device)

    def preview_condition(self, n: int) -> None:
        return None

    def write_samples(self, samples: torch.Tensor, stem: Path) -> Path:
        return write_paths(samples, stem.with_suffix(".csv"), self.columns)


class SeriesStream:
    def __init__(self, z: np.ndarray, max_lag: int, window: int, offset: int, *,
                 batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu") -> None:
        self.z = torch.from_numpy(z)  # (N, D)
        self.max_lag, self.window, self.offset = max_lag, window, offset
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.device = torch.device(device)
        self.step = 0

    def next(self, micro: int) -> list[Batch]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        span = self.max_lag + self.window
        starts = torch.randint(0, len(self.z) - span + 1, (self.batch_size,), generator=g)
        mine = starts[self.rank :: self.world]  # (b,)
        index = mine[:, None] + torch.arange(span)  # (b, max_lag + window)
        x = self.z[index].to(self.device)  # (b, max_lag + window, D)
        t0 = (mine + self.max_lag + self.offset).to(self.device)  # row of the first target
        self.step += 1
        return [Batch(a, b) for a, b in zip(x.chunk(micro), t0.chunk(micro), strict=True)]

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def load_series(cfg: SeriesDataConfig, data_root: str | Path | None = None) -> SeriesData:
    path = find_in_roots(cfg.path, data_root or cfg.root, "the CSV")
    times, columns, values = read_csv(path, cfg.columns)
    if cfg.limit is not None:
        times, values = times[: cfg.limit], values[: cfg.limit]
    if cfg.transform == "log" and (values <= 0).any():
        bad = [c for j, c in enumerate(columns) if (values[:, j] <= 0).any()]
        raise DataError(f"{path}: data.transform=log needs positive values; column(s) {bad} "
                        "are not (use data.transform=none)")
    return SeriesData(cfg, times, columns, values, str(path))


def read_csv(path: Path, columns: str | None) -> tuple[list[str], list[str], np.ndarray]:
    """(time labels, value column names, values (N, D)); the first column is the time."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [r for r in rows[1:] if r]
    wanted = [c.strip() for c in columns.split(",")] if columns else None
    if wanted:
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: no column(s) {missing}; the columns are {header}")
        keep = [header.index(c) for c in wanted]
    else:
        keep = [j for j in range(1, len(header)) if all(_is_number(r[j]) for r in body)]
        if not keep:
            raise DataError(f"{path}: no numeric column besides the first (the time)")
    try:
        values = np.array([[float(r[j]) for j in keep] for r in body], dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: a value is not a number ({err}); fill or drop such rows") \
            from None
    return [r[0] for r in body], [header[j] for j in keep], values


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --- the transform and its inverse, shared by training data and sampling ---


def _transform(values: np.ndarray, transform: str, difference: bool) -> np.ndarray:
    z = np.log(values) if transform == "log" else values
    return np.diff(z, axis=0) if difference else z


def scale(values: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Original values (T, D) -> the model's scaled z ((T - 1, D) when differenced)."""
    z = _transform(values, info["transform"], info["difference"])
    return (z - np.asarray(info["mean"])) / np.asarray(info["std"])


def unscale(z: torch.Tensor, last: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    """Scaled future steps z (n, H, D) -> values, given the last observed value (D,)."""
    mean = torch.tensor(info["mean"], dtype=z.dtype)
    std = torch.tensor(info["std"], dtype=z.dtype)
    y = z * std + mean  # (n, H, D)
    if info["difference"]:
        base = torch.log(last) if info["transform"] == "log" else last
        y = base.to(z.dtype) + y.cumsum(1)
    return y.exp() if info["transform"] == "log" else y


def write_paths(samples: torch.Tensor, out: Path | str, columns: list[str]) -> Path:
    """Paths (n, H, D) -> CSV rows `path, step, <column>...` (step 1 = the first future row),
    or an .npz with x (n, H, D)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    array = samples.detach().cpu().numpy()
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".npz":
        with tmp.open("wb") as f:
            np.savez_compressed(f, x=array, columns=np.array(columns))
    elif out.suffix == ".csv":
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "step", *columns])
            for i, path in enumerate(array):
                writer.writerows([i, h + 1, *(f"{v:.6g}" for v in row)]
                                 for h, row in enumerate(path))
    else:
        from genforge.config import ConfigError

        raise ConfigError(f"--out {out}: series paths go to a .csv or .npz file")
    tmp.replace(out)
    return out
