"""How much a rolling-origin backtest's coverage moves by chance: the coverage of a perfect
forecaster on the same origins, steps and columns.

A backtest's empirical coverage is a mean of hit indicators that are far from independent:
the errors of one forecast's steps share innovations, and consecutive origins forecast
mostly the same rows. So a perfectly calibrated forecaster's 50 % interval may hold 0.35 or
0.65 of a short test window, and "coverage within 5 points of nominal" is a statement about
the window as much as about the forecaster.

The oracle here knows the process: a linear one with MA(inf) weights psi (psi_0 = 1, e.g. a
fitted ARIMA's impulse responses, integration included) driven by iid innovations eps. Its
forecast from origin t misses row t + h by e(t, h) = sum_{j<=h} psi_j eps(t + h - j) (h from
0), with sd_h = sqrt(sum_{j<=h} psi_j^2), and its central level-l interval holds the row when
|e| / sd_h < z_{(1+l)/2}: by construction it is exactly calibrated. Simulating eps gives the
distribution of its coverage on a given window: the band a calibrated forecaster lands in.
Coverage depends on the errors only through |e| / sd_h, so the innovation scale, a
monotone transform (log) and deterministic terms (trend, Fourier season) do not enter.

    from genforge.eval.series.coverage import oracle_coverage
    draws = oracle_coverage([psi], origins=[100, 101, 102], horizon=12, reps=20000)
    draws[:, 0]   # (reps,) the oracle's 50 % coverage on that window, one per history
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from genforge.eval.series.rolling import LEVELS  # 50 / 80 / 95 %, as every series score

# Fewer rows than this and no ARIMA stand-in is fitted: twice the parameters of the largest
# candidate (ARIMA(2,0,1) with a constant), below which its AIC order choice means nothing
MIN_ROWS = 8


def oracle_coverage(psi: Sequence[np.ndarray], origins: Sequence[int], horizon: int,
                    levels: Sequence[float] = LEVELS, reps: int = 20000, seed: int = 0,
                    chunk: int = 2000) -> np.ndarray:
    """(reps, len(levels)): the oracle's coverage over every (origin, step, column), one row
    per simulated innovation history. psi[d] (>= horizon weights, psi[d][0] = 1) is column
    d's process; columns are simulated independently. Origins are row indices (the first
    forecast row of each), in any order."""
    if horizon < 1 or not origins or not psi:
        raise ValueError("oracle_coverage needs a horizon >= 1, origins and one psi per column")
    weights = []
    for p in psi:
        p = np.asarray(p, np.float64).ravel()
        if len(p) < horizon or p[0] != 1.0:
            raise ValueError(f"psi needs {horizon} weights starting at 1, got {p[:3]}...")
        weights.append(p[:horizon])
    first = min(origins)
    offsets = np.asarray(origins) - first
    span = int(offsets.max()) + horizon  # innovation rows that any forecast reaches
    bounds = norm.ppf((1 + np.asarray(levels, np.float64)) / 2)  # (L,)
    g = np.random.default_rng(seed)
    hits = np.zeros((reps, len(levels)))
    steps = np.arange(horizon)
    lag = steps[:, None] - steps[None, :]  # (H, H): step h takes eps(t + k), k <= h
    for w in weights:
        toeplitz = np.where(lag >= 0, w[np.clip(lag, 0, None)], 0.0)
        sd = np.sqrt(np.cumsum(w ** 2))  # (H,)
        for start in range(0, reps, chunk):
            eps = g.standard_normal((min(chunk, reps - start), span))
            windows = np.stack([eps[:, o:o + horizon] for o in offsets], 1)  # (R, K, H)
            z = np.abs(windows @ toeplitz.T) / sd  # (R, K, H)
            hits[start:start + len(eps)] += (z[..., None] < bounds).sum((1, 2))
    return hits / (len(origins) * horizon * len(weights))


def within(draws: np.ndarray, levels: Sequence[float] = LEVELS, points: float = 5.0
           ) -> np.ndarray:
    """(reps,) bool: every level's coverage within `points` (0-100) of its nominal level."""
    return (np.abs(draws - np.asarray(levels)) * 100 <= points + 1e-9).all(1)


def band(draws: np.ndarray, mass: float = 0.9) -> np.ndarray:
    """(len(levels), 2): the central `mass` interval of the oracle's coverage per level."""
    tail = (1 - mass) / 2
    return np.quantile(draws, [tail, 1 - tail], axis=0).T


def p_value(draws: np.ndarray, coverage: Sequence[float], levels: Sequence[float] = LEVELS
            ) -> float:
    """How often a calibrated forecaster lands at least as far from nominal as `coverage`:
    the distance is the largest |coverage - level| over the levels, each in units of the
    oracle's spread at that level (so one test covers all levels), and the value the Monte
    Carlo p-value (k + 1) / (n + 1) over the n draws. A small value says the coverage is
    unlikely for a calibrated forecaster on this window."""
    nominal = np.asarray(levels, np.float64)
    spread = np.maximum(draws.std(0), 1e-12)
    observed = (np.abs(np.asarray(coverage, np.float64) - nominal) / spread).max()
    distance = (np.abs(draws - nominal) / spread).max(1)
    return float(((distance >= observed - 1e-12).sum() + 1) / (len(draws) + 1))


def arima_weights(history: np.ndarray, horizon: int, period: int, log: bool = False,
                  fit_rows: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """psi (horizon weights) per column of the ARIMA that genforge's baseline fits to
    `history` (T, D) (order by AIC among its candidates; genforge.eval.series.baselines),
    and each model's name: a stand-in for the process that made the data. The baseline is
    called as for a forecast (two paths, discarded) because that is how it fits."""
    from genforge.eval.series.baselines import ARIMAForecaster

    arima = ARIMAForecaster()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence chatter
        arima(history, horizon=horizon, period=period, n_paths=2, log=log, fit_rows=fit_rows)
        psi = [np.asarray(fit.impulse_responses(steps=horizon - 1)).ravel()[:horizon]
               if horizon > 1 else np.ones(1) for fit in arima.fits]
    names = [_name(fit.model) for fit in arima.fits]
    return psi, names


def coverage_noise(history: np.ndarray,
                   windows: Sequence[tuple[Sequence[int], int, Sequence[float]]],
                   period: int, log: bool = False, levels: Sequence[float] = LEVELS,
                   reps: int = 5000, seed: int = 0) -> list[dict]:
    """What coverages measured on some windows mean. windows: (origins, horizon, the
    coverage measured there at `levels`) each. Per window: the band a calibrated forecaster
    of the ARIMA fitted (once) to `history` lands in on the same origins, and the p-value of
    the measured coverage against it; columns are simulated independently (correlated
    columns would spread more). {"skipped": why} per window where there is no stand-in: too
    few rows, no candidate fits them, or statsmodels is not installed; any other error is a
    bug and propagates."""
    from genforge.eval.series.baselines import NoARIMAFit

    if len(history) < MIN_ROWS:
        return _skipped(windows, f"{len(history)} rows before the held-out tail; an ARIMA "
                                 f"stand-in needs {MIN_ROWS}")
    try:
        psi, names = arima_weights(history, max(h for _, h, _ in windows), period, log)
    except NoARIMAFit as err:
        return _skipped(windows, str(err))
    except ModuleNotFoundError as err:
        if err.name != "statsmodels":
            raise
        return _skipped(windows, "statsmodels is not installed (pip install 'genforge[eval]')")
    out = []
    for origins, horizon, coverage in windows:
        draws = oracle_coverage([p[:horizon] for p in psi], origins, horizon, levels, reps,
                                seed)
        out.append({"process": names, "band_90": band(draws).round(3).tolist(),
                    "within_5_points_chance": round(float(within(draws, levels).mean()), 3),
                    "p_value": round(p_value(draws, coverage, levels), 3)})
    return out


def _skipped(windows: Sequence, why: str) -> list[dict]:
    return [{"skipped": f"no ARIMA stand-in: {why}"} for _ in windows]


def _name(model) -> str:
    """SARIMAX(p, d, q)x(P, D, Q, s), with its trend and exogenous terms if any."""
    extra = (f" trend={model.trend}" if model.trend else "") + \
        (f" +{model.k_exog} exog" if model.k_exog else "")
    return f"SARIMAX{model.order}x{model.seasonal_order}{extra}"
