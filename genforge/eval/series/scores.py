"""The scores of probabilistic forecasts from sample paths, shared by genforge.eval.series.evaluate
(a run's held-out tail), series_rolling (rolling origins) and series_baselines.

    CRPS(F, y) = E|X - y| - 1/2 E|X - X'|,  X, X' ~ F independent        (Gneiting & Raftery)
    sample estimator, S paths: mean_s |x_s - y| - 1/S^2 sum_i (2i - S - 1) x_(i)   (x sorted)
    MASE = mean_h |y_h - yhat_h| / mean_t |y_t - y_(t-m)|, the denominator over the training
           rows (Hyndman & Koehler 2006)
    seasonal naive: yhat_(T+h) = y_(T+h-km), the last observed value of the same season
    coverage(level): share of values inside the paths' central `level` interval
"""

from __future__ import annotations

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
