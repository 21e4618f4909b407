"""Rolling-origin evaluation of probabilistic forecasts, and calibration on a window before it.

    rows:  [ model training ........ | calibration origins ... | test origins ......... ]
                                     c_1                       o_1   o_2 ... o_K = N - H

A forecaster maps the history before an origin o (rows < o) to S paths of the next H rows.
Test origins step by `stride` and the last forecast ends at the last row (Tashman 2000,
"rolling origin"). Calibration origins lie before them, and every calibration forecast ends
by o_1, so no truth used to calibrate is scored. A genforge model is trained on the rows
before the first calibration origin (`train_rows`), so both windows are out of sample for it;
the baselines refit at every origin on all the rows before it.

Test origins are usually one row (or a few) apart: the tsCV protocol (Hyndman &
Athanasopoulos, FPP 5.10). Four or five origins a horizon apart give 40-260 points whose
errors inside one origin move together, so a coverage measured on them swings by 10-20
points with the window alone; every origin in the same test window measures the same
forecaster on many more (still correlated) situations, and the baselines use the same ones.

Online calibration (`online_calibrated`): the factors for test origin o are fitted on every
forecast whose whole truth lies before o (the calibration origins, then the test origins
with origin + H <= o), so the calibration set grows as a deployed forecaster's would and no
truth at or after o is used. gamma > 0 adds adaptive conformal inference (Gibbs & Candes
2021): each level's conformal target moves by gamma (miss rate - nominal miss rate) after
each forecast whose truth is complete, which holds the long-run coverage under a shift.

Scores (genforge.eval.series.scores): CRPS (data units, mean over points), CRPS scaled per column
(sum CRPS / sum |y|, then the mean over columns: what a multivariate series compares),
MASE of the median path (scale: the in-sample seasonal-naive MAE of the history before the
origin), coverage of the central 50 / 80 / 95 % intervals of the paths, and the PIT values.

    from genforge.eval.series.rolling import RollingProtocol, rolling_forecasts, score
    protocol = RollingProtocol(horizon=12, period=12, origins=5, stride=6)
    forecasts = rolling_forecasts(forecaster, values, protocol.test_origins(len(values)), ...)
    metrics = score(forecasts, protocol.period)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genforge.eval.series.scores import coverage, crps_samples, mase
from genforge.modalities.series.calibration import LEVELS as GRID
from genforge.modalities.series.calibration import (
    fit_summaries,
    fit_widening,
    pit,
    summarize,
    widen,
)

LEVELS = (0.5, 0.8, 0.95)
Forecaster = Callable[..., np.ndarray]  # (history (T, D), horizon=, n_paths=, seed=) -> paths


@dataclass(frozen=True)
class RollingProtocol:
    """Where forecasts start; `stride` defaults to the horizon, the calibration stride to half."""

    horizon: int
    period: int
    origins: int = 5
    stride: int | None = None
    calibration_origins: int = 8
    calibration_stride: int | None = None

    def test_origins(self, rows: int) -> list[int]:
        step = self.stride or self.horizon
        first = rows - self.horizon - (self.origins - 1) * step
        return [first + k * step for k in range(self.origins)]

    def calibration_starts(self, rows: int) -> list[int]:
        step = self.calibration_stride or max(1, self.horizon // 2)
        last = self.test_origins(rows)[0] - self.horizon
        return [last - k * step for k in reversed(range(self.calibration_origins))]

    def train_rows(self, rows: int) -> int:
        """Rows a model may train on: those before the first calibration origin."""
        first = self.calibration_starts(rows)[0]
        if first <= 2 * self.period:
            raise ValueError(f"{rows} rows leave {first} to train on before the first "
                             "calibration origin: fewer origins or a shorter horizon")
        return first

    def describe(self, rows: int) -> dict[str, Any]:
        return {"horizon": self.horizon, "period": self.period,
                "test_origins": self.test_origins(rows),
                "calibration_origins": self.calibration_starts(rows),
                "train_rows": self.train_rows(rows)}


@dataclass
class Forecast:
    origin: int
    paths: np.ndarray  # (S, H, D)
    truth: np.ndarray  # (H, D)
    history: np.ndarray  # (origin, D): what the forecaster saw


def rolling_forecasts(forecaster: Forecaster, values: np.ndarray, origins: Sequence[int], *,
                      horizon: int, n_paths: int, seed: int = 0, **options: Any
                      ) -> list[Forecast]:
    """One forecast per origin; seed + k for origin k (independent draws per origin)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    out = []
    for k, origin in enumerate(origins):
        history = values[:origin]
        paths = np.asarray(forecaster(history, horizon=horizon, n_paths=n_paths,
                                      seed=seed + k, **options), np.float64)
        paths = paths.reshape(paths.shape[0], horizon, -1)  # (S, H, D)
        out.append(Forecast(origin, paths, values[origin : origin + horizon], history))
    return out


def calibrate(calibration: Sequence[Forecast], step_groups: int = 1) -> dict[str, Any]:
    """Widening factors from the calibration forecasts (see
    genforge.modalities.series.calibration)."""
    return fit_widening([f.paths for f in calibration], [f.truth for f in calibration],
                        step_groups=step_groups)


def calibrated(forecasts: Sequence[Forecast], factors: dict[str, Any]) -> list[Forecast]:
    return [Forecast(f.origin, widen(f.paths, factors), f.truth, f.history) for f in forecasts]


def online_calibrated(calibration: Sequence[Forecast], tests: Sequence[Forecast], horizon: int,
                      *, center: bool = False, gamma: float = 0.0, partial: bool = False,
                      levels: Sequence[float] = GRID) -> tuple[list[Forecast], list[dict]]:
    """Each test forecast widened by factors fitted on the forecasts whose truth ended before
    its origin (module docstring); -> (widened forecasts, the factors used for each).

    The truths of a test forecast join the pool only from origin + horizon on (its last row is
    then history); the calibration forecasts are assumed to end by the first test origin.
    partial=True also pools the first o - o' steps of each earlier test forecast o' that is
    still running at o (those truths are history too): the pool reaches the test period's
    own errors at once instead of a horizon later. gamma > 0: ACI; levels[j]'s conformal
    target starts at levels[j] and moves by gamma (err_j - (1 - levels[j])) per forecast
    that becomes known, err_j its miss rate at levels[j] after its widening."""
    known = [summarize(f.paths, f.truth, levels) for f in calibration]  # quantiles once
    targets = np.asarray(levels, np.float64).copy()
    out: list[Forecast] = []
    used: list[dict] = []
    running: list[dict] = []  # summaries of tests[joined:len(out)]
    joined = 0  # tests[:joined] are in `known`
    for f in tests:
        while joined < len(out) and tests[joined].origin + horizon <= f.origin:
            done = out[joined]  # its truth is complete: learn from it
            known.append(running.pop(0))
            if gamma > 0:  # ACI: its miss rate at each level, with the factors it was given
                err = np.array([1 - coverage(done.paths, done.truth, lv) for lv in levels])
                targets += gamma * (err - (1 - np.asarray(levels)))
            joined += 1
        pool = known
        if partial:  # the steps already observed of the forecasts still running
            pool = known + [_first_steps(u, f.origin - t.origin) for u, t in
                            zip(running, tests[joined : len(out)], strict=True)
                            if t.origin < f.origin]
        factors = fit_summaries(pool, levels, center=center, targets=targets.tolist())
        out.append(Forecast(f.origin, widen(f.paths, factors), f.truth, f.history))
        used.append(factors | {"targets": targets.tolist(), "forecasts": len(pool)})
        running.append(summarize(f.paths, f.truth, levels))
    return out, used


def _first_steps(summary: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    """A forecast's summary cut to its first `steps` steps (the axis before the columns)."""
    return {k: v[..., :steps, :] for k, v in summary.items()}


def pooled(*groups: Sequence[Forecast]) -> list[Forecast]:
    """Forecasts of several models (seeds) at the same origins -> one mixture's paths."""
    return [Forecast(parts[0].origin, np.concatenate([p.paths for p in parts]), parts[0].truth,
                     parts[0].history) for parts in zip(*groups, strict=True)]


def score(forecasts: Sequence[Forecast], period: int, levels: Sequence[float] = LEVELS
          ) -> dict[str, Any]:
    """The pooled scores of all origins (each point counts once per origin that forecasts it)."""
    crps, scaled, mases, pits = [], [], [], []
    inside = {lv: [] for lv in levels}
    for f in forecasts:
        c = crps_samples(f.paths, f.truth)  # (H, D)
        crps.append(c)
        scaled.append(c.sum(0) / np.maximum(np.abs(f.truth).sum(0), 1e-12))  # (D,)
        median = np.median(f.paths, axis=0)
        mases.append(mase(f.truth, median, f.history, period))  # (D,)
        pits.append(pit(f.paths, f.truth))
        for lv in levels:
            inside[lv].append(coverage(f.paths, f.truth, lv) * f.truth.size)
    points = sum(f.truth.size for f in forecasts)
    values = np.concatenate([p.ravel() for p in pits])
    hist, _ = np.histogram(values, bins=10, range=(0.0, 1.0))
    return {
        "crps": float(np.mean(np.concatenate([c.ravel() for c in crps]))),
        "crps_scaled": float(np.mean(scaled)),
        "mase": float(np.mean(mases)),
        **{f"coverage_{round(lv * 100)}": float(sum(inside[lv]) / points) for lv in levels},
        "pit_histogram": (hist / hist.sum()).tolist(),
        "pit": values.tolist(),
        "points": int(points), "origins": [int(f.origin) for f in forecasts],
    }


def coverage_error(metrics: dict[str, Any], levels: Sequence[float] = LEVELS) -> float:
    """The largest |coverage - nominal| over the levels, in points (0-100)."""
    return max(abs(metrics[f"coverage_{round(lv * 100)}"] - lv) * 100 for lv in levels)
