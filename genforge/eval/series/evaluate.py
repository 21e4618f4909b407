"""Forecast metrics on a held-out tail: CRPS from sample paths and MASE against a
seasonal-naive baseline, with the protocol recorded.

    CRPS(F, y) = E|X - y| - 1/2 E|X - X'|,  X, X' ~ F independent        (Gneiting & Raftery)
    sample estimator, S paths: mean_s |x_s - y| - 1/S^2 sum_i (2i - S - 1) x_(i)   (x sorted)
    MASE = mean_h |y_h - yhat_h| / mean_t |y_t - y_(t-m)|, the denominator over the training
           rows (Hyndman & Koehler 2006); yhat is the median of the sampled paths
    seasonal naive: yhat_(T+h) = y_(T+h-km), the last observed value of the same season
    coverage at 50/80/95 % and the PIT histogram (flat when calibrated); a run trained with
    calibration rows is scored calibrated, its uncalibrated paths beside; where the tail
    holds two horizons or more, rolling origins in it too (series_rolling); for each, the
    band a calibrated forecaster's coverage falls in on the same rows (series_coverage)

    from genforge.eval.series.evaluate import evaluate_series
    metrics = evaluate_series(genforge.load("runs/airline-ar"), n_paths=200)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from genforge.eval.series.coverage import coverage_noise
from genforge.eval.series.scores import (  # also used by series_rolling and the baselines
    coverage,
    crps_samples,
    mase,
    seasonal_naive,
)
from genforge.modalities.series.spec import MODALITY as SERIES
from genforge.version import __version__


def evaluate_series(model_or_run: Any, *, n_paths: int = 200, seed: int = 0,
                    device: str = "cpu") -> dict[str, Any]:
    """Forecast the held-out tail from the rows before it and score the paths."""
    import torch

    from genforge.api import load

    model = load(model_or_run, device=device) \
        if isinstance(model_or_run, str | Path) else model_or_run
    info = model.data_info
    if model.modality != SERIES.name:
        raise ValueError(f"{model.path}: not a time series model")
    values = np.asarray(info["history"], np.float64)  # (N, D)
    past, future = values[: info["train_rows"]], values[info["train_rows"] :]
    horizon, period = len(future), info["period"]
    paths = model.sample(n_paths, seed=seed, horizon=horizon, history=past).double().numpy()
    calibrated = info.get("calibration_length", 0) > 0
    median = np.median(paths, axis=0)  # (H, D)
    low, high = np.quantile(paths, [0.1, 0.9], axis=0)  # (H, D) each
    naive = seasonal_naive(past, horizon, period)
    crps = crps_samples(paths, future)  # (H, D)
    model_mase, naive_mase = mase(future, median, past, period), mase(future, naive, past, period)
    metrics = {
        "crps": float(crps.mean()), "crps_scaled": float(crps.sum() / np.abs(future).sum()),
        "mase": float(model_mase.mean()),
        **{f"coverage_{round(100 * lv)}": coverage(paths, future, lv) for lv in LEVELS},
        "pit_histogram": pit_histogram(paths, future),
        "seasonal_naive": {"crps": float(np.abs(future - naive).mean()),
                           "mase": float(naive_mase.mean())},
        "mase_relative_to_seasonal_naive": float(model_mase.mean() / naive_mase.mean()),
        "per_column": {c: {"crps": float(crps[:, j].mean()), "mase": float(model_mase[j]),
                           "mase_seasonal_naive": float(naive_mase[j])}
                       for j, c in enumerate(info["columns"])},
    }
    if calibrated:  # what the calibration changed: the same draws, unwidened
        raw = model.sample(n_paths, seed=seed, horizon=horizon, history=past,
                           calibrated=False).double().numpy()
        metrics["uncalibrated"] = {
            "crps": float(crps_samples(raw, future).mean()),
            **{f"coverage_{round(100 * lv)}": coverage(raw, future, lv) for lv in LEVELS},
            "pit_histogram": pit_histogram(raw, future)}
        metrics["calibration"] = model.objective.calibration(horizon)
    rolling = rolling_origins(model, values, info, n_paths=n_paths, seed=seed)
    scored = [([len(past)], horizon, metrics)]  # each window: origins, horizon, its scores
    if rolling is not None:
        metrics["rolling"] = rolling
        scored.append((rolling["origins"], rolling["horizon"], rolling))
    noise = coverage_noise(
        past, [(origins, h, [got[f"coverage_{round(100 * lv)}"] for lv in LEVELS])
               for origins, h, got in scored],
        period, log=info.get("transform") == "log", levels=LEVELS, seed=seed)
    for (_, _, got), band_of_window in zip(scored, noise, strict=True):
        got["coverage_noise"] = band_of_window
    return {
        "format": "genforge-eval-v1", "kind": "series",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "genforge": __version__,
        "torch": torch.__version__,
        "model": {"path": str(model.path), "step": model.step,
                  "parameters": model.parameters},
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
            "coverage_50/80/95": "share of held-out values inside the paths' central "
                                 "50/80/95% intervals (25-75, 10-90, 2.5-97.5% quantiles)",
            "pit": "share of paths below each held-out value, histogram of 10 bins (flat = "
                   "calibrated; a U = too narrow, a hump = too wide)",
            "calibration": "conformal widening around the median fitted on forecasts from "
                           "the calibration rows before the held-out tail"
                           if calibrated else "none (data.calibration_length = 0)",
            "rolling": "where the tail holds 2 horizons or more: forecasts of the model's "
                       "horizon from every horizon/2 rows of the tail, given the real history",
            "coverage_noise": "how far from nominal chance alone puts the coverage of so few "
                              "held-out rows: the central 90% band of the coverage of an "
                              "exactly calibrated forecaster of an ARIMA fitted to the rows "
                              "before the tail, on the same origins (5000 simulated "
                              "histories; columns independent, which narrows the band of "
                              "correlated ones), and the measured coverage's p-value "
                              "against it (genforge.eval.series.coverage)",
        },
        "examples": [],
        "paths_median": median.tolist(), "paths_q10": low.tolist(), "paths_q90": high.tolist(),
        "held_out": future.tolist(),
    }


LEVELS = (0.5, 0.8, 0.95)


def pit_histogram(paths: np.ndarray, y: np.ndarray, bins: int = 10) -> list[float]:
    """Shares of the PIT values (share of paths below y) in `bins` equal bins of [0, 1]."""
    from genforge.modalities.series.calibration import pit

    counts, _ = np.histogram(pit(paths, y).ravel(), bins=bins, range=(0.0, 1.0))
    return (counts / counts.sum()).tolist()


def rolling_origins(model: Any, values: np.ndarray, info: dict[str, Any], *, n_paths: int,
                    seed: int) -> dict[str, Any] | None:
    """Scores of forecasts of the model's horizon from several origins in the held-out tail
    (genforge.eval.series.rolling), or None where the tail is shorter than two horizons."""
    from genforge.eval.series.rolling import rolling_forecasts, score

    horizon = model.config.model.horizon if model.config is not None else 0
    start = info["train_rows"]
    if horizon <= 0 or len(values) - start < 2 * horizon:
        return None
    origins = list(range(start, len(values) - horizon + 1, max(1, horizon // 2)))

    def forecast(history: np.ndarray, *, horizon: int, n_paths: int, seed: int) -> np.ndarray:
        return model.sample(n_paths, seed=seed, horizon=horizon,
                            history=history).double().numpy()

    got = score(rolling_forecasts(forecast, values, origins, horizon=horizon,
                                  n_paths=n_paths, seed=seed), info["period"])
    got.pop("pit")
    return got | {"horizon": horizon}


def write_series_report(metrics: dict[str, Any], out: str | Path,
                        run_dir: str | Path | None = None,
                        info: dict[str, Any] | None = None) -> dict[str, Path]:
    """out/metrics.json and out/report.html (with a fan chart per column, up to 4)."""
    from genforge.eval.text.evaluate import write_text_report

    if info is None:
        from genforge.api import load

        info = load(metrics["model"]["path"]).data_info
    figures = {f"Forecast of {c}": fan_chart(metrics, info["history"], j)
               for j, c in enumerate(info["columns"][:4])}
    figures["PIT histogram of the held-out values"] = pit_chart(metrics["metrics"])
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


def pit_chart(metrics: dict[str, Any]) -> str:
    """A PNG data URI: the PIT histogram (and the uncalibrated one where there is one)."""
    import base64
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    edges = np.linspace(0, 1, len(metrics["pit_histogram"]) + 1)
    if "uncalibrated" in metrics:
        ax.stairs(metrics["uncalibrated"]["pit_histogram"], edges, color="tab:gray", lw=1.5,
                  label="uncalibrated")
    ax.stairs(metrics["pit_histogram"], edges, color="tab:blue", lw=2, label="forecast")
    ax.axhline(1 / (len(edges) - 1), color="black", ls=":", lw=1, label="calibrated")
    ax.set_xlabel("PIT (share of paths below the held-out value)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def evaluate_series_run(model: Any, options: Any, out: str,
                        n_given: bool) -> tuple[list[str], dict[str, Path]]:
    """The series modality's evaluator (genforge.eval.runs); (summary lines, written paths)."""
    from genforge.eval.runs import precision_field, summary_line

    metrics = evaluate_series(model, n_paths=options.n if n_given else 200, seed=options.seed)
    metrics["precision"] = precision_field(options)
    paths = write_series_report(metrics, out, run_dir=model.path, info=model.data_info)
    keys = ("crps", "mase", "mase_relative_to_seasonal_naive", "coverage_50", "coverage_80",
            "coverage_95")
    lines = [summary_line(metrics["metrics"], keys)]
    noise = metrics["metrics"]["coverage_noise"]
    if "band_90" in noise:  # not skipped: say how much a coverage on so few rows can move
        bands = ", ".join(f"{lv} {a:.2f}-{b:.2f}" for lv, (a, b)
                          in zip(("50%", "80%", "95%"), noise["band_90"], strict=True))
        lines.append(f"coverage a calibrated forecaster reaches on these rows 90% of the time: "
                     f"{bands} (this run's coverage: p = {noise['p_value']:.2g})")
    else:  # a named condition (too few rows, no ARIMA fits them): say which
        lines.append(f"coverage noise skipped: {noise['skipped']}")
    return lines, paths
