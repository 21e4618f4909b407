"""Online (growing-window) conformal calibration, adaptive conformal inference and median
centring for rolling-origin forecasts (issue 17): only past truths reach a test origin's
factors, ACI holds long-run coverage through a shift, centring removes a median bias."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from genforge.eval.series.rolling import (
    Forecast,
    RollingProtocol,
    online_calibrated,
    score,
)
from genforge.modalities.series.calibration import conformal_quantile, fit_widening, pit, widen


def grid_paths(loc: float, scale: float, h: int, s: int = 200) -> np.ndarray:
    """Normal quantiles at (i - 1/2)/S as 'paths' (S, H, 1), the same at every step."""
    q = norm.ppf((np.arange(s) + 0.5) / s)
    return np.broadcast_to(loc + scale * q[:, None, None], (s, h, 1)).copy()


def stream(origins: range, h: int, truth_scale, g: np.random.Generator,
           model_scale: float = 1.0, bias: float = 0.0) -> list[Forecast]:
    """A forecaster N(bias, model_scale) at each origin; truths N(0, truth_scale(origin))."""
    return [Forecast(o, grid_paths(bias, model_scale, h),
                     g.normal(scale=truth_scale(o), size=(h, 1)), np.zeros((o, 1)))
            for o in origins]


def test_online_factors_use_only_truths_that_ended_before_the_origin():
    g, h = np.random.default_rng(0), 5
    cal = stream(range(0, 8), h, lambda o: 1.0, g)
    tests = stream(range(13, 33), h, lambda o: 2.0, g)
    base, used = online_calibrated(cal, tests, h)
    k = 10  # test origin 23: test origins up to 18 have ended (18 + 5 <= 23), 19+ have not
    future = [i for i, f in enumerate(tests) if f.origin + h > tests[k].origin]
    poisoned = list(tests)
    for i in future:
        poisoned[i] = Forecast(tests[i].origin, tests[i].paths, tests[i].truth * 1e6,
                               tests[i].history)
    again, _ = online_calibrated(cal, poisoned, h)
    for i in range(k + 1):  # origins up to 23 never see truths that end after them
        np.testing.assert_array_equal(again[i].paths, base[i].paths)
    assert used[k]["forecasts"] == 8 + 6  # the calibration ones and origins 13..18
    # a past truth does reach the factors (the check above can fail)
    past = list(tests)
    past[0] = Forecast(tests[0].origin, tests[0].paths, tests[0].truth * 1e6, tests[0].history)
    moved, _ = online_calibrated(cal, past, h)
    assert not np.array_equal(moved[k].paths, base[k].paths)
    np.testing.assert_array_equal(moved[0].paths, base[0].paths)


def test_partial_pooling_uses_only_the_observed_steps_of_running_forecasts():
    g, h = np.random.default_rng(4), 5
    cal = stream(range(0, 8), h, lambda o: 1.0, g)
    tests = stream(range(13, 33), h, lambda o: 2.0, g)
    base, used = online_calibrated(cal, tests, h, partial=True)
    k = 10  # origin 23: origins 19..22 are running, their steps before row 23 are known
    poisoned = [Forecast(t.origin, t.paths, t.truth.copy(), t.history) for t in tests]
    for t in poisoned:
        t.truth[max(0, tests[k].origin - t.origin):] *= 1e6  # every row from 23 on
    again, _ = online_calibrated(cal, poisoned, h, partial=True)
    for i in range(k + 1):
        np.testing.assert_array_equal(again[i].paths, base[i].paths)
    assert used[k]["forecasts"] == 8 + 6 + 4
    seen = [Forecast(t.origin, t.paths, t.truth.copy(), t.history) for t in tests]
    seen[k - 1].truth[0] *= 1e6  # origin 22's first step (row 22) is history at 23
    moved, _ = online_calibrated(cal, seen, h, partial=True)
    assert not np.array_equal(moved[k].paths, base[k].paths)
    plain, _ = online_calibrated(cal, seen, h)  # without partial it waits for row 26
    np.testing.assert_array_equal(plain[k].paths, online_calibrated(cal, tests, h)[0][k].paths)


def test_the_growing_window_learns_the_test_period_scale():
    g, h = np.random.default_rng(1), 5
    cal = stream(range(0, 40, 5), h, lambda o: 1.0, g)  # the model is right on calibration...
    tests = stream(range(40, 1540, 5), h, lambda o: 2.0, g)  # ...and too narrow afterwards
    fixed, _ = online_calibrated(cal, tests[:1], h)
    online, used = online_calibrated(cal, tests, h)
    assert used[-1]["factors"][7] > used[0]["factors"][7]  # the 80 % factor grows
    late = score(online[150:], 1)  # 750 points
    assert abs(late["coverage_80"] - 0.8) < 0.05, late["coverage_80"]
    assert len(fixed) == 1


def test_aci_holds_long_run_coverage_through_a_shift():
    g, h = np.random.default_rng(2), 1
    # calibrated on scale 1, tested on a scale that jumps from 1 to 3 and back to 1.5
    scale = lambda o: 1.0 if o < 200 else 3.0 if o < 500 else 1.5  # noqa: E731
    cal = stream(range(0, 100), h, lambda o: 1.0, g)
    tests = stream(range(100, 900), h, scale, g)
    plain, _ = online_calibrated(cal, tests, h)
    aci, used = online_calibrated(cal, tests, h, gamma=0.02)
    cov = {k: score(v[100:], 1) for k, v in (("plain", plain), ("aci", aci))}
    errs = {k: max(abs(v[f"coverage_{lv}"] - lv / 100) for lv in (50, 80, 95))
            for k, v in cov.items()}
    assert errs["aci"] < 0.03, cov["aci"]
    assert errs["plain"] > errs["aci"] + 0.02, errs  # the growing window lags the shift
    assert max(used[-1]["targets"]) != max(used[0]["targets"])


def test_centring_removes_a_median_bias():
    g, h = np.random.default_rng(3), 4
    paths = [grid_paths(1.0, 1.0, h) for _ in range(100)]  # median 1 too high
    truths = [g.normal(size=(h, 1)) for _ in range(100)]
    plain = fit_widening(paths, truths)
    centred = fit_widening(paths, truths, center=True)
    assert abs(centred["shift"] + 1 / norm.ppf(0.75)) < 0.15  # 1 / half-IQR of N(0, 1)
    assert "shift" not in plain
    test = [g.normal(size=(h, 1)) for _ in range(200)]
    below = {k: np.mean([pit(widen(paths[0], c), y) < 0.5 for y in test])
             for k, c in (("plain", plain), ("centred", centred))}
    assert abs(below["centred"] - 0.5) < 0.05, below
    assert below["plain"] > 0.6, below  # the uncentred median still sits too high


def test_conformal_quantile_at_adaptive_levels_and_protocol_strides():
    scores = np.arange(1.0, 11.0)  # 1..10
    assert conformal_quantile(scores, 0.5) == 6.0  # ceil(11 * 0.5) = 6th
    assert conformal_quantile(scores, 1.3) == 10.0
    assert conformal_quantile(scores, -0.1) == 0.0
    p = RollingProtocol(horizon=12, period=12, origins=25, stride=1)
    assert p.test_origins(144) == list(range(108, 133))
    assert p.calibration_starts(144)[-1] == 108 - 12 - 0 * 6
