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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genforge.data.batches import Batch, poisson_indices
from genforge.data.roots import find_in_roots
from genforge.errors import ConfigError, DataError
from genforge.modalities.series.sources import csv_rows


@dataclass
class SeriesDataConfig:
    """Univariate or multivariate series from a CSV file with a header row.

    The first column is the time index (kept as labels); the values are `columns` (comma
    separated) or every other numeric column. The last `test_length` rows are held out for
    evaluation; the model trains on windows of the rows before them. Values are transformed
    (log; sqrt, the usual variance stabiliser of counts such as sunspot numbers, whose
    swings grow with their level), differenced if asked, then standardised with the
    training rows' mean and std.
    """

    dataset: str = "airline"  # a name for the record
    path: str = "timeseries/airline_passengers.csv"  # absolute, or under a data root
    root: str | None = None
    columns: str | None = None  # e.g. "realgdp,realcons"; null = every numeric column
    period: int = 12  # seasonal period (12 monthly, 4 quarterly, 52 weekly; 1 = none)
    transform: Literal["none", "log", "sqrt"] = "none"
    difference: bool = False  # model y_t - y_(t-1) (after the transform)
    test_length: int = 24  # held-out tail rows
    window: int = 48  # time steps a training window predicts
    limit: int | None = None  # use only the first `limit` rows (quick tests)
    layout: Literal["long", "wide"] = "long"  # wide: a row per year, a column per season
    fill: Literal["none", "interpolate"] = "none"  # blank cells: refuse, or interpolate
    # rows just before the held-out tail kept out of training: forecasts from origins in them
    # calibrate the intervals (genforge.modalities.series.calibration); 0 = no calibration
    calibration_length: int = 0
    calibration_stride: int = 1  # steps between calibration origins

    def __post_init__(self) -> None:
        for key in ("period", "test_length", "window", "calibration_stride"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"data.{key}={getattr(self, key)}: must be a positive integer")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"data.limit={self.limit}: must be a positive integer")
        if self.calibration_length < 0:
            raise ConfigError(f"data.calibration_length={self.calibration_length}: must be 0 "
                              "(no calibration) or a positive number of rows")


class SeriesData:
    """The whole series in memory; `info()` carries it, so sampling needs no data file."""

    def __init__(self, cfg: SeriesDataConfig, times: list[str], columns: list[str],
                 values: np.ndarray, source: str) -> None:
        self.cfg, self.times, self.columns = cfg, times, columns
        self.values = values  # (N, D) float64, original units
        self.train_rows = len(values) - cfg.test_length  # rows before the held-out tail
        self.fit_rows = self.train_rows - cfg.calibration_length  # rows the model trains on
        self.lags = [1] if cfg.period == 1 else [1, cfg.period]
        z_all = _transform(values, cfg.transform, cfg.difference)
        z_train = z_all[: max(0, self.fit_rows - int(cfg.difference))]
        need = max(self.lags) + cfg.window
        if len(z_train) < need:  # before the statistics: none of an empty slice
            raise DataError(f"{source}: {len(z_train)} training steps after the held-out tail "
                            f"of {cfg.test_length} and {cfg.calibration_length} calibration "
                            f"rows; a window needs {need} (lags + data.window): shorten "
                            "data.window, data.test_length or data.calibration_length")
        self.mean, self.std = z_train.mean(0), z_train.std(0) + 1e-8
        self.z = ((z_train - self.mean) / self.std).astype(np.float32)  # (N_train', D)
        self.source = source

    def info(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "kind": "series", "dataset": c.dataset, "path": c.path, "columns": self.columns,
            "times": self.times, "history": self.values.tolist(),
            "train_rows": self.train_rows, "test_length": c.test_length,
            "fit_rows": self.fit_rows, "calibration_length": c.calibration_length,
            "calibration_stride": c.calibration_stride,
            "period": c.period, "lags": self.lags, "window": c.window,
            "transform": c.transform, "difference": c.difference,
            "mean": self.mean.tolist(), "std": self.std.tolist(),
            "split": "the last test_length rows are held out; the calibration_length rows "
                     "before them calibrate; the model and its scaling use the rows before",
        }

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu", sample_rate: float | None = None
               ) -> SeriesStream:
        offset = int(self.cfg.difference)  # z[i] is the change into row i + 1
        return SeriesStream(self.z, max(self.lags), self.cfg.window, offset,
                            batch_size=batch_size, seed=seed, rank=rank, world=world,
                            device=device, sample_rate=sample_rate)

    def preview_condition(self, n: int) -> None:
        return None

    def privacy_records(self) -> tuple[int, str]:
        """DP-SGD's record: a training window (genforge/training/privacy.py)."""
        span = max(self.lags) + self.cfg.window
        return len(self.z) - span + 1, (
            f"one window of {span} time steps; windows overlap, so one time step is in up to "
            f"{span} of them and a per-step guarantee is weaker (group privacy)")

    def write_samples(self, samples: torch.Tensor, stem: Path) -> Path:
        return write_paths(samples, stem.with_suffix(".csv"), self.columns)


class SeriesStream:
    def __init__(self, z: np.ndarray, max_lag: int, window: int, offset: int, *,
                 batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu", sample_rate: float | None = None) -> None:
        self.sample_rate = sample_rate  # DP-SGD: Poisson-sampled window starts
        self.z = torch.from_numpy(z)  # (N, D)
        self.max_lag, self.window, self.offset = max_lag, window, offset
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.device = torch.device(device)
        self.step = 0

    def next(self, micro: int) -> list[Batch]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        span = self.max_lag + self.window
        if self.sample_rate is not None:
            starts = poisson_indices(len(self.z) - span + 1, self.sample_rate, seed=self.seed,
                                     step=self.step)
        else:
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
    if cfg.layout == "long" and cfg.fill == "none":
        times, columns, values = read_csv(path, cfg.columns)
    else:  # a wide table or gaps to fill
        from genforge.modalities.series.sources import read_series

        times, columns, values = read_series(path, cfg.columns, layout=cfg.layout,
                                             fill=cfg.fill)
    if cfg.limit is not None:
        times, values = times[: cfg.limit], values[: cfg.limit]
    if cfg.transform == "log" and (values <= 0).any():
        bad = [c for j, c in enumerate(columns) if (values[:, j] <= 0).any()]
        raise DataError(f"{path}: data.transform=log needs positive values; column(s) {bad} "
                        "are not (use data.transform=none)")
    if cfg.transform == "sqrt" and (values < 0).any():
        bad = [c for j, c in enumerate(columns) if (values[:, j] < 0).any()]
        raise DataError(f"{path}: data.transform=sqrt needs values >= 0; column(s) {bad} "
                        "are not (use data.transform=none)")
    return SeriesData(cfg, times, columns, values, str(path))


def read_csv(path: Path, columns: str | None) -> tuple[list[str], list[str], np.ndarray]:
    """(time labels, value column names, values (N, D)); the first column is the time."""
    header, body = csv_rows(path)
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


def transformed(values: np.ndarray, transform: str) -> np.ndarray:
    """data.transform on values (any shape): log, sqrt or none."""
    values = np.asarray(values, np.float64)
    return np.log(values) if transform == "log" else \
        np.sqrt(values) if transform == "sqrt" else values


def _untransformed(z: torch.Tensor, transform: str) -> torch.Tensor:
    """The inverse of `transformed`; a sqrt model's negative values mean 0 (counts)."""
    return z.exp() if transform == "log" else \
        z.clamp(min=0) ** 2 if transform == "sqrt" else z


def in_domain(values: torch.Tensor, transform: str) -> torch.Tensor:
    """Values moved into what the transform's inverse can produce: a sqrt model's counts are
    >= 0 (paths widened around their median may have left that range)."""
    return values.clamp(min=0) if transform == "sqrt" else values


def _transform(values: np.ndarray, transform: str, difference: bool) -> np.ndarray:
    z = transformed(values, transform)
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
        base = torch.as_tensor(transformed(last.detach().cpu().numpy(), info["transform"]))
        y = base.to(z) + y.cumsum(1)
    return _untransformed(y, info["transform"])


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


class SeriesOutput:
    """Sample paths out of a model: float (n, horizon, D), written as CSV rows or an .npz."""

    default_out = "forecast.csv"
    default_n = 100
    suffixes = (".csv", ".npz")

    def decode(self, samples: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        return samples

    def write(self, values: torch.Tensor, path: Path, info: dict[str, Any], *,
              nrow: int | None = None, provenance: dict[str, Any] | None = None) -> Path:
        from genforge.labelling import embed_provenance

        written = write_paths(values, path, info["columns"])
        if provenance is not None:  # a sidecar <file>.provenance.json (CSV, NPZ)
            embed_provenance(written, provenance)
        return written
