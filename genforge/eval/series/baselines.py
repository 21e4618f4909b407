"""Statistical baselines that forecast sample paths like a genforge model does, so that the same
CRPS / MASE / coverage code scores them (genforge.eval.series.scores).

Each forecaster maps a history (T, D) to paths (S, H, D); a multivariate history is forecast
column by column. With log=True a model is fitted to log values and its paths exponentiated
(as genforge's data.transform=log does).

    seasonal_naive  y_(T+h) = y_(T+h-m(k+1)) + the sum of k + 1 in-sample seasonal
                    differences drawn with replacement, k = (h - 1) // m (Hyndman &
                    Athanasopoulos, fpp3 5.5: bootstrapped residuals)
    ets             statsmodels ETSModel (additive error; no, damped or additive trend, chosen
                    by AIC; additive season of period m where m <= 24 and two seasons fit),
                    paths simulated from the fitted state space model; a longer season
                    (weekly) is taken out by STL first (STLForecast, Gaussian quantiles)
    arima           statsmodels SARIMAX, a small AIC search over fixed orders:
                    (0,1,1) or (1,0,0)+c with (0,1,1)_m for m <= 24, Fourier terms (K = 3)
                    as regressors for a long season (weekly, m = 52), and (p,d,q) with a
                    constant or drift otherwise; paths are the
                    analytic Gaussian forecast quantiles (simulation cost seconds per origin)

    from genforge.eval.series.baselines import BASELINES
    arima = BASELINES["arima"]()  # one per series: keeps its order across origins
    paths = arima(history, horizon=12, period=12, n_paths=200, seed=0, log=True)  # (S, H, D)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from genforge.eval.series.scores import seasonal_naive

MAX_SEASON = 24  # longer seasons get Fourier regressors (ARIMA) or no season (ETS)
Forecaster = Callable[..., np.ndarray]


def seasonal_naive_paths(history: np.ndarray, *, horizon: int, period: int, n_paths: int,
                         seed: int = 0, log: bool = False, fit_rows: int | None = None
                         ) -> np.ndarray:
    """history (T, D) -> paths (S, H, D)."""
    g = np.random.default_rng(seed)
    z = _prepare(history, log, fit_rows)
    m = period if len(z) > period else 1
    point = seasonal_naive(z, horizon, m)  # (H, D)
    residuals = z[m:] - z[:-m]  # (T - m, D) in-sample seasonal differences
    k = np.arange(horizon) // m + 1  # (H,) differences that accumulate by step h
    draws = g.integers(0, len(residuals), size=(n_paths, horizon, int(k.max())))
    steps = np.arange(int(k.max()))[None, None, :] < k[None, :, None]  # (1, H, K)
    noise = (residuals[draws] * steps[..., None]).sum(2)  # (S, H, D)
    return _finish(point[None] + noise, log)


class ETSForecaster:
    """ETS paths; the model form (trend or not) is chosen by AIC at the first origin and kept,
    as the parameters of the last fit start the next one (rolling refits stay cheap)."""

    def __init__(self) -> None:
        self.trends: list[tuple[str | None, bool]] = []  # per column: (trend, damped)

    def __call__(self, history: np.ndarray, *, horizon: int, period: int, n_paths: int,
                 seed: int = 0, log: bool = False, fit_rows: int | None = None) -> np.ndarray:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        z = _prepare(history, log, fit_rows)
        if period > MAX_SEASON and len(z) >= 2 * period + 2:
            return _finish(_stl_ets(z, horizon, period, n_paths), log)
        seasonal = 1 < period <= MAX_SEASON and len(z) >= 2 * period + 2
        out = []
        for j, column in enumerate(z.T):
            choices = [self.trends[j]] if j < len(self.trends) else \
                [(None, False), ("add", True), ("add", False)]
            best, best_trend = None, None
            for trend, damped in choices:
                model = ETSModel(column, error="add", trend=trend, damped_trend=damped,
                                 seasonal="add" if seasonal else None,
                                 seasonal_periods=period if seasonal else None)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = model.fit(disp=False, maxiter=200)
                if np.isfinite(fit.aic) and (best is None or fit.aic < best.aic):
                    best, best_trend = fit, (trend, damped)
            if j >= len(self.trends):
                self.trends.append(best_trend)
            sims = best.simulate(horizon, repetitions=n_paths, anchor="end",
                                 rng=np.random.default_rng(seed))
            out.append(np.asarray(sims).reshape(horizon, n_paths).T)  # (S, H)
        return _finish(np.stack(out, -1), log)


def _stl_ets(z: np.ndarray, horizon: int, period: int, n_paths: int) -> np.ndarray:
    """A long season (weekly): STL removes it, a damped-trend ETS forecasts the rest, the
    season is carried forward (fpp3 12.x; statsmodels STLForecast); Gaussian quantiles as in
    ARIMAForecaster. (S, H, D)."""
    import pandas as pd
    from scipy.stats import norm
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.forecasting.stl import STLForecast

    levels = norm.ppf((np.arange(n_paths) + 0.5) / n_paths)[:, None]  # (S, 1)
    out = []
    for column in z.T:
        model = STLForecast(pd.Series(column), ETSModel, period=period,
                            model_kwargs={"error": "add", "trend": "add", "damped_trend": True})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(fit_kwargs={"disp": False})
            got = fit.get_prediction(start=len(column), end=len(column) + horizon - 1)
        mean, var = np.asarray(got.predicted_mean), np.asarray(got.var_pred_mean)
        out.append(mean[None] + np.sqrt(var)[None] * levels)  # (S, H)
    return np.stack(out, -1)


class NoARIMAFit(RuntimeError):
    """Every ARIMA candidate failed to fit a column (singular, non-finite or too few rows)."""


class ARIMAForecaster:
    """SARIMAX with Gaussian predictive margins: the order is chosen by AIC among a few fixed
    candidates at the first origin, then refitted at each origin from the last parameters.
    Paths are the analytic forecast quantiles at levels (i - 1/2)/S, i = 1..S, per step:
    right for every per-step score (CRPS, coverage, PIT, the median for MASE); they carry no
    dependence across steps, which none of these scores uses."""

    def __init__(self) -> None:
        self.chosen: list[tuple[dict, np.ndarray]] = []  # per column: (spec, parameters)
        self.fits: list[Any] = []  # per column: the last call's SARIMAXResults (its model)

    def __call__(self, history: np.ndarray, *, horizon: int, period: int, n_paths: int,
                 seed: int = 0, log: bool = False, fit_rows: int | None = None) -> np.ndarray:
        from scipy.stats import norm

        z = _prepare(history, log, fit_rows)
        levels = (np.arange(n_paths) + 0.5) / n_paths
        out, fits = [], []
        for j, column in enumerate(z.T):
            if j < len(self.chosen):
                spec, start = self.chosen[j]
                fit, future = _fit_sarimax(column, horizon, period, spec, start)
            else:
                fit, future, spec = None, None, None
                for candidate in _arima_candidates(period, len(column)):
                    got, got_future = _fit_sarimax(column, horizon, period, candidate, None)
                    if got is not None and (fit is None or got.aic < fit.aic):
                        fit, future, spec = got, got_future, candidate
                if fit is None:
                    raise NoARIMAFit(f"no ARIMA candidate could be fitted to column {j} "
                                     f"({len(column)} rows)")
                self.chosen.append((spec, fit.params))
            self.chosen[j] = (spec, fit.params)
            fits.append(fit)
            forecast = fit.get_forecast(horizon, exog=future)
            mean = np.asarray(forecast.predicted_mean)  # (H,)
            sd = np.sqrt(np.asarray(forecast.var_pred_mean))  # (H,)
            out.append(mean[None] + sd[None] * norm.ppf(levels)[:, None])  # (S, H)
        self.fits = fits
        return _finish(np.stack(out, -1), log)


def _fit_sarimax(column: np.ndarray, horizon: int, period: int, spec: dict,
                 start: np.ndarray | None) -> tuple:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    kwargs = {k: v for k, v in spec.items() if k != "fourier"}
    exog, exog_future = _fourier(len(column), horizon, period, spec.get("fourier", 0))
    model = SARIMAX(column, exog=exog, concentrate_scale=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # a refit starts from the last origin's optimum: a few steps suffice
            fit = model.fit(start_params=start, disp=False, maxiter=50 if start is None else 15)
        except (np.linalg.LinAlgError, ValueError):
            return None, None
    return (fit, exog_future) if np.isfinite(fit.aic) else (None, None)


def _arima_candidates(period: int, length: int) -> list[dict]:
    if 1 < period <= MAX_SEASON and length >= 3 * period:
        season = (0, 1, 1, period)
        return [{"order": (0, 1, 1), "seasonal_order": season},
                {"order": (1, 0, 0), "seasonal_order": season, "trend": "c"}]
    if period > MAX_SEASON:  # dynamic harmonic regression
        return [{"order": (1, 1, 1), "trend": "t", "fourier": 3},
                {"order": (2, 1, 0), "trend": "t", "fourier": 3}]
    return [{"order": (1, 0, 0), "trend": "c"}, {"order": (2, 0, 0), "trend": "c"},
            {"order": (2, 0, 1), "trend": "c"}, {"order": (0, 1, 1)},
            {"order": (1, 1, 0), "trend": "t"}]


def _fourier(length: int, horizon: int, period: int, k: int
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """sin/cos pairs of the season for the fitted rows (T, 2k) and the future (H, 2k)."""
    if k == 0:
        return None, None
    t = np.arange(length + horizon)[:, None]
    angles = 2 * np.pi * t * np.arange(1, k + 1)[None] / period  # (T + H, k)
    terms = np.concatenate([np.sin(angles), np.cos(angles)], 1)
    return terms[:length], terms[length:]


def _prepare(history: np.ndarray, log: bool, fit_rows: int | None) -> np.ndarray:
    z = np.asarray(history, np.float64)
    z = z.reshape(len(z), -1)[-fit_rows:] if fit_rows else z.reshape(len(z), -1)
    return np.log(z) if log else z


def _finish(paths: np.ndarray, log: bool) -> np.ndarray:
    return np.exp(paths) if log else paths


# name -> a factory of forecasters: one per series, kept across its rolling origins
BASELINES: dict[str, Callable[[], Forecaster]] = {
    "seasonal_naive": lambda: seasonal_naive_paths,
    "ets": ETSForecaster,
    "arima": ARIMAForecaster,
}
