"""The oracle coverage of a rolling-origin window (genforge.eval.series_coverage)."""

from __future__ import annotations

import numpy as np
import pytest

from genforge.eval.series_coverage import band, oracle_coverage, p_value, within

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


def test_band_within_and_p_value():
    draws = oracle_coverage([np.ones(4)], list(range(20, 32)), 4, LEVELS, reps=5000)
    lo_hi = band(draws, 0.9)
    assert lo_hi.shape == (3, 2) and (lo_hi[:, 0] < np.asarray(LEVELS)).all()
    assert (lo_hi[:, 1] > np.asarray(LEVELS)).all()
    assert 0.0 < within(draws).mean() < 1.0
    assert within(np.asarray([[0.54, 0.76, 0.95]])).all()
    assert not within(np.asarray([[0.56, 0.80, 0.95]])).any()
    assert p_value(draws, LEVELS) == 1.0  # exactly nominal: nothing is closer
    assert p_value(draws, (0.0, 0.1, 0.2)) == 0.0
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
