"""Calibrating sample paths: conformal widening around the median, fitted on a held-out window.

A forecaster's paths give, at every step, quantiles Q(p) and a median m. For a central
level l the interval is [Q((1-l)/2), Q((1+l)/2)]. On a calibration window (forecasts from
origins whose truth the model never trained on) each held-out value y needs the widening

    c_i(l) = (y - m) / (Q((1+l)/2) - m)   if y >= m,   (m - y) / (m - Q((1-l)/2))   else

to fall inside the level-l interval. The factor f(l) is the conformal quantile of the c_i(l):
its ceil((n + 1) l)-th smallest value, so that on exchangeable data the widened interval
holds y with probability >= l (split conformal, Vovk et al. 2005; Romano et al. 2019 for the
quantile form). Applying it moves each sampled value x, which sits on the boundary of the
level l_x = |2 rank/S - 1| interval, to m + f(l_x) (x - m): the order of the values at each
step is kept, so a path stays one path (its dependence across steps is the model's).
f < 1 narrows an over-wide forecaster; f > 1 widens an over-confident one.

Pooling over steps: by default one factor per level for all horizon steps (a few origins are
too few for one factor per step). step_groups=G splits the H steps into G consecutive blocks
and fits one factor per level and block, for a model whose spread grows at the wrong rate
with the horizon; `widen` then uses each step's block factors.

The factors are ratios to the model's own half-widths, so they carry no unit: the factors
of a model trained before the calibration rows may be kept for the same configuration
refitted on every row before the test origins (SeriesObjective.keep_calibration).

    from genforge.data.series_calibration import fit_widening, widen
    factors = fit_widening(calibration_paths, calibration_truths)
    calibrated = widen(test_paths, factors)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def needed_widening(paths: np.ndarray, y: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """paths (S, H, D), truth y (H, D) -> c (len(levels), H, D): the factor each value needs."""
    median = np.median(paths, axis=0)  # (H, D)
    lows = np.quantile(paths, [(1 - lv) / 2 for lv in levels], axis=0)  # (L, H, D)
    highs = np.quantile(paths, [(1 + lv) / 2 for lv in levels], axis=0)  # (L, H, D)
    above = y >= median  # (H, D)
    width = np.where(above, highs - median, median - lows)  # (L, H, D) half-widths
    gap = np.abs(y - median)  # (H, D)
    tiny = 1e-12 * (1.0 + np.abs(median))
    return gap / np.maximum(width, tiny)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (the largest one when that exceeds n)."""
    ordered = np.sort(scores.ravel())
    k = min(int(np.ceil((len(ordered) + 1) * level)), len(ordered))
    return float(ordered[k - 1])


def step_blocks(horizon: int, groups: int) -> np.ndarray:
    """(H,) the block of each step: `groups` consecutive blocks of near-equal length."""
    groups = max(1, min(groups, horizon))
    return (np.arange(horizon) * groups) // horizon


def fit_widening(paths: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                 levels: Sequence[float] = LEVELS, step_groups: int = 1) -> dict[str, Any]:
    """Factors f(l) from calibration forecasts: paths[i] (S, H, D) against truths[i] (H, D).

    The scores of all steps and columns are pooled: the model's own spread already grows
    with the horizon, and a calibration window of a few origins is too short for one factor
    per step. step_groups > 1 adds factors per block of steps ("step_factors", (G, L))."""
    if len(paths) == 0 or len(paths) != len(truths):
        raise ValueError("fit_widening needs as many calibration forecasts as truths (>= 1)")
    needed = [needed_widening(p, y, levels) for p, y in zip(paths, truths, strict=True)]
    scores = np.concatenate([c.reshape(len(levels), -1) for c in needed], axis=1)  # (L, n)
    factors = [conformal_quantile(scores[j], lv) for j, lv in enumerate(levels)]
    out = {"levels": [float(lv) for lv in levels], "factors": factors,
           "points": int(scores.shape[1])}
    horizon = needed[0].shape[1]
    if step_groups > 1 and horizon > 1:
        if any(c.shape[1] != horizon for c in needed):
            raise ValueError("step_groups > 1 needs calibration forecasts of one horizon")
        block = step_blocks(horizon, step_groups)
        out["step_factors"] = [
            [conformal_quantile(np.concatenate([c[j, block == g] for c in needed]), lv)
             for j, lv in enumerate(levels)] for g in range(int(block.max()) + 1)]
        out["horizon"] = horizon
    return out


def widen(paths: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """paths (S, H, D) -> calibrated paths (S, H, D), each step's values kept in order.
    With per-block factors (fit_widening step_groups > 1) step h takes its block's factors,
    the blocks laid over this forecast's horizon as over the calibration horizon."""
    levels = np.asarray(calibration["levels"], np.float64)
    s, h = paths.shape[0], paths.shape[1]
    rank_level = np.abs(2 * (np.arange(s) + 0.5) / s - 1)  # (S,) the level each rank bounds
    if "step_factors" in calibration:
        table = np.asarray(calibration["step_factors"], np.float64)  # (G, L)
        # step h of this forecast sits where step h * H_cal / H would in the calibration one
        block = step_blocks(calibration["horizon"], len(table))
        at = block[np.minimum(np.arange(h) * calibration["horizon"] // h,
                              calibration["horizon"] - 1)]  # (H,)
        f = np.stack([np.interp(rank_level, levels, table[g]) for g in at], 1)[..., None]
    else:  # (S, 1, 1): flat beyond the grid
        f = np.interp(rank_level, levels, np.asarray(calibration["factors"], np.float64))
        f = f.reshape(s, 1, 1)
    order = np.argsort(paths, axis=0, kind="stable")  # (S, H, D)
    ordered = np.take_along_axis(paths, order, axis=0)
    median = np.median(paths, axis=0, keepdims=True)  # (1, H, D)
    moved = median + f * (ordered - median)  # (S, H, D), sorted order
    # a factor that falls with the level could cross neighbours: keep each side monotone
    upper = ordered >= median
    moved = np.where(upper, np.maximum.accumulate(np.where(upper, moved, -np.inf), axis=0),
                     moved)
    lower_rev = np.where(~upper, moved, np.inf)[::-1]
    moved = np.where(~upper, np.minimum.accumulate(lower_rev, axis=0)[::-1], moved)
    out = np.empty_like(moved)
    np.put_along_axis(out, order, moved, axis=0)
    return out


def pit(paths: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probability integral transform: the share of paths below y (ties count half), (H, D).
    Uniform on [0, 1] for a calibrated forecaster (Dawid 1984; Gneiting et al. 2007)."""
    below = (paths < y[None]).mean(0)
    ties = (paths == y[None]).mean(0)
    return below + 0.5 * ties
