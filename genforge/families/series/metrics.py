"""Forecast metrics on a held-out tail: CRPS from sample paths and MASE against a
seasonal-naive baseline, with the protocol recorded.

    CRPS(F, y) = E|X - y| - 1/2 E|X - X'|,  X, X' ~ F independent        (Gneiting & Raftery)
    sample estimator, S paths: mean_s |x_s - y| - 1/S^2 sum_i (2i - S - 1) x_(i)   (x sorted)
    MASE = mean_h |y_h - yhat_h| / mean_t |y_t - y_(t-m)|, the denominator over the training
           rows (Hyndman & Koehler 2006); yhat is the median of the sampled paths
    seasonal naive: yhat_(T+h) = y_(T+h-km), the last observed value of the same season

    from genforge.families.series.metrics import evaluate_series
    metrics = evaluate_series("runs/airline-ar", n_paths=200)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def crps_samples(paths: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of each point: paths (S, H, D), y (H, D) -> (H, D)."""
    s = paths.shape[0]
    spread = np.abs(paths - y[None]).mean(0)  # E|X - y|
    ordered = np.sort(paths, axis=0)
    weights = (2 * np.arange(1, s + 1) - s - 1).reshape(s, 1, 1)
    pairs = 2.0 * (weights * ordered).sum(0) / s**2  # E|X - X'|
    return spread - 0.5 * pairs


def seasonal_naive(train: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """train (T, D) -> (horizon, D): each step repeats the last value of its season."""
    m = min(period, len(train))
    last = train[-m:]  # (m, D)
    return last[np.arange(horizon) % m]


def mase(y: np.ndarray, forecast: np.ndarray, train: np.ndarray, period: int) -> np.ndarray:
    """Per column (D,): MAE of the forecast over the in-sample seasonal-naive MAE."""
    m = period if len(train) > period else 1
    scale = np.abs(train[m:] - train[:-m]).mean(0)  # (D,)
    return np.abs(y - forecast).mean(0) / scale


def coverage(paths: np.ndarray, y: np.ndarray, level: float = 0.8) -> float:
    low, high = np.quantile(paths, [(1 - level) / 2, (1 + level) / 2], axis=0)  # (H, D) each
    return float(((y >= low) & (y <= high)).mean())


def evaluate_series(model_or_run: Any, *, n_paths: int = 200, seed: int = 0,
                    device: str = "cpu") -> dict[str, Any]:
    """Forecast the held-out tail from the rows before it and score the paths."""
    import torch

    import genforge

    model = genforge.load(model_or_run, device=device) \
        if isinstance(model_or_run, str | Path) else model_or_run
    info = model.data_info
    if info.get("kind") != "series":
        raise ValueError(f"{model.path}: not a time series model")
    values = np.asarray(info["history"], np.float64)  # (N, D)
    past, future = values[: info["train_rows"]], values[info["train_rows"] :]
    horizon, period = len(future), info["period"]
    paths = model.sample(n_paths, seed=seed, horizon=horizon, history=past).double().numpy()
    median = np.median(paths, axis=0)  # (H, D)
    low, high = np.quantile(paths, [0.1, 0.9], axis=0)  # (H, D) each
    naive = seasonal_naive(past, horizon, period)
    crps = crps_samples(paths, future)  # (H, D)
    model_mase, naive_mase = mase(future, median, past, period), mase(future, naive, past, period)
    metrics = {
        "crps": float(crps.mean()), "crps_scaled": float(crps.sum() / np.abs(future).sum()),
        "mase": float(model_mase.mean()), "coverage_80": coverage(paths, future),
        "seasonal_naive": {"crps": float(np.abs(future - naive).mean()),
                           "mase": float(naive_mase.mean())},
        "mase_relative_to_seasonal_naive": float(model_mase.mean() / naive_mase.mean()),
        "per_column": {c: {"crps": float(crps[:, j].mean()), "mase": float(model_mase[j]),
                           "mase_seasonal_naive": float(naive_mase[j])}
                       for j, c in enumerate(info["columns"])},
    }
    return {
        "format": "genforge-eval-v1", "kind": "series",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "genforge": genforge.__version__,
        "torch": torch.__version__,
        "model": {"path": str(model.path), "step": model.step,
                  "parameters": sum(p.numel() for p in model.objective.nets["net"].parameters())},
        "metrics": metrics,
        "protocol": {
            "seed": seed, "paths": n_paths, "horizon": horizon, "period": period,
            "held_out": f"the last {horizon} rows ({info['times'][info['train_rows']]} .. "
                        f"{info['times'][-1]}); forecasts start from the {len(past)} rows "
                        "before them",
            "crps": "sample estimator E|X-y| - E|X-X'|/2 (1/S^2 normalisation), mean over "
                    "steps and columns, in data units; crps_scaled = sum CRPS / sum |y|",
            "mase": "MAE of the median path / in-sample seasonal-naive MAE (lag = period) "
                    "on the training rows, averaged over columns",
            "coverage_80": "share of held-out values inside the paths' 10-90% quantiles",
        },
        "examples": [],
        "paths_median": median.tolist(), "paths_q10": low.tolist(), "paths_q90": high.tolist(),
        "held_out": future.tolist(),
    }


def write_series_report(metrics: dict[str, Any], out: str | Path,
                        run_dir: str | Path | None = None) -> dict[str, Path]:
    """out/metrics.json and out/report.html (with a fan chart per column, up to 4)."""
    import genforge
    from genforge.eval.text import write_text_report

    info = genforge.load(metrics["model"]["path"]).data_info
    figures = {f"Forecast of {c}": fan_chart(metrics, info["history"], j)
               for j, c in enumerate(info["columns"][:4])}
    return write_text_report(metrics, out, run_dir=run_dir, figures=figures)


def fan_chart(metrics: dict[str, Any], history: list, column: int = 0) -> str:
    """A PNG data URI: the past, the held-out values, the median path and its 10-90% band."""
    import base64
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    past = np.asarray(history)[:, column]
    future = np.asarray(metrics["held_out"])[:, column]
    median = np.asarray(metrics["paths_median"])[:, column]
    low = np.asarray(metrics["paths_q10"])[:, column]
    high = np.asarray(metrics["paths_q90"])[:, column]
    fig = Figure(figsize=(7, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t = np.arange(len(past))
    ax.plot(t, past, color="black", lw=1, label="observed")
    start = len(past) - len(future)
    ax.plot(t[start:], future, color="tab:green", lw=1.5, label="held out")
    ax.fill_between(t[start:], low, high, color="tab:blue", alpha=0.25, label="10-90% of paths")
    ax.plot(t[start:], median, color="tab:blue", lw=1.5, ls="--", label="median path")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
