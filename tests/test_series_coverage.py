"""The oracle coverage of a rolling-origin window (genforge.eval.series.coverage)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from genforge.eval.series import coverage as series_coverage
from genforge.eval.series.coverage import (
    MIN_ROWS,
    band,
    coverage_noise,
    oracle_coverage,
    p_value,
    within,
)

LEVELS = (0.5, 0.8, 0.95)


def test_independent_points_give_binomial_coverage():
    # white noise, origins a horizon apart: 60 independent hits per level
    horizon, origins = 6, list(range(100, 160, 6))
    draws = oracle_coverage([np.r_[1.0, np.zeros(5)]], origins, horizon, LEVELS, reps=20000)
    n = len(origins) * horizon
    for i, lv in enumerate(LEVELS):
        assert abs(draws[:, i].mean() - lv) < 0.005
        assert draws[:, i].std() == pytest.approx(np.sqrt(lv * (1 - lv) / n), rel=0.05)


def test_overlapping_origins_of_a_persistent_process_spread_much_wider():
    # a random walk forecast from consecutive origins: the same innovations in every point
    horizon, origins = 10, list(range(50, 66))
    walk = oracle_coverage([np.ones(horizon)], origins, horizon, LEVELS, reps=10000)
    n = len(origins) * horizon
    assert abs(walk[:, 0].mean() - 0.5) < 0.01  # still calibrated on average
    assert walk[:, 0].std() > 3 * np.sqrt(0.25 / n)
    # two independent columns average out some of it
    two = oracle_coverage([np.ones(horizon)] * 2, origins, horizon, LEVELS, reps=10000)
    assert two[:, 0].std() < walk[:, 0].std() * 0.8


def test_matches_a_direct_simulation_of_the_errors():
    # a step's error takes its own past innovations, psi_0 on the newest: e(t, h) =
    # sum_j psi_j eps(t + h - j). The mean coverage cannot tell the weights' order (every
    # step's spread is the same either way), but how the steps and origins move together
    # can: psi = (1, 0, 0, 3) ties step 3 to step 0 through eps(t) (correlation 0.95;
    # reversed weights: 0.32), so the coverage's spread over histories tells them apart
    psi, origins, horizon, reps = np.asarray([1.0, 0.0, 0.0, 3.0]), [5, 7], 4, 40000
    draws = oracle_coverage([psi], origins, horizon, LEVELS, reps=reps, seed=3)
    np.testing.assert_allclose(draws.mean(0), LEVELS, atol=0.01)
    eps = np.random.default_rng(4).standard_normal((reps, 20))
    bounds = np.asarray([0.6744897501960817, 1.2815515655446004, 1.959963984540054])
    hits = np.zeros((reps, 3))
    for t in origins:
        for h in range(horizon):
            error = sum(psi[j] * eps[:, t + h - j] for j in range(h + 1))
            sd = np.sqrt((psi[: h + 1] ** 2).sum())
            hits += np.abs(error / sd)[:, None] < bounds
    direct = hits / (len(origins) * horizon)
    np.testing.assert_allclose(draws.std(0), direct.std(0), rtol=0.05)


def test_coverage_noise_skips_only_what_it_cannot_fit(monkeypatch):
    window = [([20], 3, (0.5, 0.8, 0.95))]
    too_short = coverage_noise(np.ones((2, 1)), window, period=1)
    assert too_short == [{"skipped": "no ARIMA stand-in: 2 rows before the held-out tail; "
                                     f"an ARIMA stand-in needs {MIN_ROWS}"}]
    # a constant series with a season: every candidate's fit fails (singular), a named skip
    flat = coverage_noise(np.ones((12, 1)), window, period=4)
    assert flat == [{"skipped": "no ARIMA stand-in: no ARIMA candidate could be fitted to "
                                "column 0 (12 rows)"}]
    # anything else is a bug, not a skip: a horizon of 0, and an error inside the fit
    history = 100 + np.random.default_rng(0).normal(size=(40, 1))
    with pytest.raises(ValueError):  # statsmodels: "Prediction must have `end` after `start`"
        coverage_noise(history, [([20], 0, (0.5, 0.8, 0.95))], period=1)

    def broken(*args, **kwargs):
        raise TypeError("a bug in the fit")

    monkeypatch.setattr(series_coverage, "arima_weights", broken)
    with pytest.raises(TypeError, match="a bug in the fit"):
        coverage_noise(history, window, period=1)


def test_band_within_and_p_value():
    draws = oracle_coverage([np.ones(4)], list(range(20, 32)), 4, LEVELS, reps=5000)
    lo_hi = band(draws, 0.9)
    assert lo_hi.shape == (3, 2) and (lo_hi[:, 0] < np.asarray(LEVELS)).all()
    assert (lo_hi[:, 1] > np.asarray(LEVELS)).all()
    assert 0.0 < within(draws).mean() < 1.0
    assert within(np.asarray([[0.54, 0.76, 0.95]])).all()
    assert not within(np.asarray([[0.56, 0.80, 0.95]])).any()
    assert p_value(draws, LEVELS) == 1.0  # exactly nominal: nothing is closer
    assert p_value(draws, (0.0, 0.1, 0.2)) == 1 / 5001  # beyond every draw
    mid = p_value(draws, lo_hi[:, 0])  # at the band's edge on every level
    assert 0.0 < mid < 0.2


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="starting at 1"):
        oracle_coverage([np.asarray([0.5, 1.0])], [10], 2)
    with pytest.raises(ValueError, match="starting at 1"):
        oracle_coverage([np.ones(3)], [10], 5)
    with pytest.raises(ValueError, match="horizon"):
        oracle_coverage([np.ones(3)], [], 3)


def test_p_values_of_calibrated_draws_are_near_uniform():
    # the oracle's own coverages, scored against other draws of it, are rejected at the rate
    # the p-value says (a test of the test)
    draws = oracle_coverage([np.ones(10)], list(range(50, 66)), 10, LEVELS, reps=6000, seed=1)
    reference, fresh = draws[:5000], draws[5000:]
    p = np.asarray([p_value(reference, c) for c in fresh])
    assert 0.06 <= (p < 0.1).mean() <= 0.15
    assert 0.42 <= (p < 0.5).mean() <= 0.58


def test_eval_summary_names_a_skipped_coverage_noise(monkeypatch):
    from genforge.eval.images.pipeline import EvalOptions
    from genforge.eval.series import evaluate as series
    from genforge.eval.series.evaluate import evaluate_series_run

    why = "no ARIMA stand-in: 5 rows before the held-out tail; an ARIMA stand-in needs 8"
    monkeypatch.setattr(series, "evaluate_series", lambda model, **kw: {
        "metrics": {"crps": 1.0, "coverage_noise": {"skipped": why}}})
    monkeypatch.setattr(series, "write_series_report", lambda *a, **kw: {})
    model = SimpleNamespace(path="run", data_info={})
    lines, _ = evaluate_series_run(model, EvalOptions(), "out", n_given=False)
    assert lines == ["crps 1", f"coverage noise skipped: {why}"]
