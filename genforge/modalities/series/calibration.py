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

Centring (center=True): a biased median (a PIT histogram leaning to one side) makes the
factors of one side too large and of the other too small, and the pooled factor fits
neither. The paths are first moved by b half-IQRs, b the median over the calibration points
of (y - m) / (half the paths' 50 % interval width): in the model's own scale, so it carries
over like the factors; `widen` moves them the same way before widening. `targets` sets the
conformal level of each factor apart from its interval level (adaptive conformal inference,
genforge.eval.series.rolling.online_calibrated).

    from genforge.modalities.series.calibration import fit_widening, widen
    factors = fit_widening(calibration_paths, calibration_truths)
    calibrated = widen(test_paths, factors)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def summarize(paths: np.ndarray, y: np.ndarray, levels: Sequence[float] = LEVELS
              ) -> dict[str, np.ndarray]:
    """What the scores need from one forecast, its quantiles computed once (an online pool
    refits on the same forecasts many times): truth, median, half-IQR, and the lower and
    upper half-widths (L, H, D) of each level's interval."""
    probs = [0.25, 0.5, 0.75, *((1 - lv) / 2 for lv in levels), *((1 + lv) / 2 for lv in levels)]
    q = np.quantile(paths, probs, axis=0)  # (3 + 2L, H, D)
    n, median = len(levels), np.median(paths, axis=0)  # np.median: widen's own, to the bit
    tiny = 1e-12 * (1.0 + np.abs(median))
    out = {"y": np.asarray(y, np.float64), "median": median,
           "hiqr": np.maximum((q[2] - q[0]) / 2, tiny),
           "low": median - q[3 : 3 + n], "high": q[3 + n :] - median}
    return out | {"scores": scores_of(out)}  # the unmoved scores, the usual case


def scores_of(summary: dict[str, np.ndarray], b: float = 0.0) -> np.ndarray:
    """c (L, H, D): the factor each value needs, the paths first moved by b half-IQRs
    (a move keeps every half-width)."""
    median = summary["median"] + b * summary["hiqr"]
    above = summary["y"] >= median  # (H, D)
    width = np.where(above, summary["high"], summary["low"])  # (L, H, D)
    tiny = 1e-12 * (1.0 + np.abs(median))
    return np.abs(summary["y"] - median) / np.maximum(width, tiny)


def needed_widening(paths: np.ndarray, y: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """paths (S, H, D), truth y (H, D) -> c (len(levels), H, D): the factor each value needs."""
    return summarize(paths, y, levels)["scores"]


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (the largest one when that exceeds n;
    0, an empty interval, for a level <= 0, which adaptive levels may reach)."""
    if level <= 0:
        return 0.0
    ordered = np.sort(scores.ravel())
    k = min(max(int(np.ceil((len(ordered) + 1) * level)), 1), len(ordered))
    return float(ordered[k - 1])


def half_iqr(paths: np.ndarray) -> np.ndarray:
    """(S, H, D) -> (H, D): half the width of the paths' central 50 % interval (> 0)."""
    low, median, high = np.quantile(paths, [0.25, 0.5, 0.75], axis=0)
    return np.maximum((high - low) / 2, 1e-12 * (1.0 + np.abs(median)))


def median_shift(summaries: Sequence[dict[str, np.ndarray]]) -> float:
    """b: the median of (y - m) / half-IQR over every calibration point (0 for no bias)."""
    r = [(u["y"] - u["median"]) / u["hiqr"] for u in summaries]
    return float(np.median(np.concatenate([x.ravel() for x in r])))


def shifted(paths: np.ndarray, b: float) -> np.ndarray:
    """Move every step's paths by b of its half-IQRs (order and spread kept)."""
    return paths + b * half_iqr(paths)[None]


def step_blocks(horizon: int, groups: int) -> np.ndarray:
    """(H,) the block of each step: `groups` consecutive blocks of near-equal length."""
    groups = max(1, min(groups, horizon))
    return (np.arange(horizon) * groups) // horizon


def fit_widening(paths: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                 levels: Sequence[float] = LEVELS, step_groups: int = 1, center: bool = False,
                 targets: Sequence[float] | None = None) -> dict[str, Any]:
    """Factors f(l) from calibration forecasts: paths[i] (S, H, D) against truths[i] (H, D).

    The scores of all steps and columns are pooled: the model's own spread already grows
    with the horizon, and a calibration window of a few origins is too short for one factor
    per step. step_groups > 1 adds factors per block of steps ("step_factors", (G, L)).
    center=True first moves the paths by the median bias ("shift"); targets[j] replaces
    levels[j] as the conformal level of factor j (default: the levels themselves)."""
    if len(paths) == 0 or len(paths) != len(truths):
        raise ValueError("fit_widening needs as many calibration forecasts as truths (>= 1)")
    summaries = [summarize(p, y, levels) for p, y in zip(paths, truths, strict=True)]
    return fit_summaries(summaries, levels, step_groups, center, targets)


def fit_summaries(summaries: Sequence[dict[str, np.ndarray]], levels: Sequence[float] = LEVELS,
                  step_groups: int = 1, center: bool = False,
                  targets: Sequence[float] | None = None) -> dict[str, Any]:
    """fit_widening on forecasts already summarized (`summarize`, the same levels)."""
    targets = levels if targets is None else targets
    b = median_shift(summaries) if center else 0.0
    needed = [scores_of(u, b) if b else u["scores"] for u in summaries]
    scores = np.concatenate([c.reshape(len(levels), -1) for c in needed], axis=1)  # (L, n)
    factors = [conformal_quantile(scores[j], t) for j, t in enumerate(targets)]
    out = {"levels": [float(lv) for lv in levels], "factors": factors,
           "points": int(scores.shape[1])}
    if center:
        out["shift"] = b
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
    if calibration.get("shift"):  # centred calibration: move first, as fit_widening did
        paths = shifted(paths, calibration["shift"])
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
