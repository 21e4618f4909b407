"""Calibrated forecasts, baselines, rolling origins and synthetic series (issue 17): coverage
and PIT on known cases, conformal widening towards nominal coverage, baseline path shapes,
CSV layouts, synthetic sampling and the synthetic-series measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from genforge.eval.series.baselines import BASELINES, seasonal_naive_paths
from genforge.eval.series.evaluate import coverage
from genforge.eval.series.rolling import (
    Forecast,
    RollingProtocol,
    calibrate,
    calibrated,
    coverage_error,
    score,
)
from genforge.eval.series.synthetic import acf, acf_distance, discriminative_accuracy, tstr
from genforge.modalities.series.calibration import fit_widening, pit, widen
from genforge.modalities.series.sources import read_series

from conftest import REPO, tiny
from skips import require

AIRLINE = REPO / "data" / "timeseries" / "airline_passengers.csv"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grid_paths(loc: np.ndarray, scale: float, s: int = 400) -> np.ndarray:
    """Normal quantiles at (i - 1/2)/S as 'paths' (S, H, 1) around loc (H,)."""
    q = norm.ppf((np.arange(s) + 0.5) / s)
    return (loc[None, :] + scale * q[:, None])[..., None]


def ar1(n: int, phi: float, g: np.random.Generator) -> np.ndarray:
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + g.normal()
    return x


def test_coverage_and_pit_on_a_known_case():
    paths = grid_paths(np.zeros(4), 1.0)  # N(0, 1) at 4 steps
    z80 = norm.ppf(0.9)  # the 80 % interval is [-1.2816, 1.2816]
    y = np.array([[0.0], [z80 - 0.01], [z80 + 0.05], [-3.0]])  # 2 of 4 inside
    assert coverage(paths, y, 0.8) == 0.5
    assert coverage(paths, y, 0.999) == 0.75  # only -3 lies beyond
    u = pit(paths, y)[:, 0]
    np.testing.assert_allclose(u, norm.cdf(y[:, 0]), atol=2 / 400)


def test_conformal_widening_moves_coverage_to_nominal():
    g = np.random.default_rng(0)
    h = 6

    def forecasts(n: int, scale: float) -> list[Forecast]:  # truth ~ N(0, 1); model scale
        return [Forecast(k, grid_paths(np.zeros(h), scale, 200), g.normal(size=(h, 1)),
                         g.normal(size=(20, 1))) for k in range(n)]

    for scale in (0.3, 2.5):  # over-confident, then too wide
        factors = calibrate(forecasts(60, scale))
        test = forecasts(150, scale)
        raw, fixed = score(test, 1), score(calibrated(test, factors), 1)
        assert coverage_error(raw) > 15
        assert coverage_error(fixed) < 5, fixed
        assert (np.asarray(factors["factors"]) > 1).all() == (scale < 1)


def test_widening_keeps_each_path_and_is_identity_at_factor_one():
    g = np.random.default_rng(1)
    paths = g.standard_t(4, size=(50, 7, 2)).cumsum(1)  # (S, H, D) dependent across steps
    same = widen(paths, {"levels": [0.1, 0.9], "factors": [1.0, 1.0]})
    np.testing.assert_allclose(same, paths)
    wider = widen(paths, {"levels": [0.1, 0.5, 0.9], "factors": [1.5, 2.0, 3.0]})
    np.testing.assert_array_equal(np.argsort(wider, 0), np.argsort(paths, 0))  # ranks kept
    median = np.median(paths, 0)
    assert (np.abs(wider - median) >= np.abs(paths - median) - 1e-12).all()
    fitted = fit_widening([paths], [np.median(paths, 0)])  # truth at the median: no widening
    assert max(fitted["factors"]) == 0.0


def test_widening_by_hand():
    """Four paths 4, 1, 7, 2 (median 3); sorted, their ranks bound the levels 0.75, 0.25,
    0.25, 0.75 (|2 (i + 1/2) / S - 1|), and each moves to 3 + f(level) (x - 3)."""
    paths = np.array([4.0, 1.0, 7.0, 2.0]).reshape(4, 1, 1)

    def widened(levels, factors):
        return widen(paths, {"levels": levels, "factors": factors})[:, 0, 0].tolist()

    assert widened([0.5], [2.0]) == [5.0, -1.0, 11.0, 1.0]  # one factor, flat off the grid
    assert widened([0.25, 0.75], [1.0, 3.0]) == [4.0, -3.0, 15.0, 2.0]  # f = 3, 1, 1, 3
    # a factor falling with the level: sorted 1, 2 would move to 1, 0 and cross; the outer
    # one is held at its inner neighbour
    assert widened([0.25, 0.75], [3.0, 1.0]) == [6.0, 0.0, 7.0, 0.0]


def test_step_blocks_follow_a_spread_that_grows_too_fast():
    """The model's spread is flat over the horizon while the truth's grows 1 -> 3: one pooled
    factor over-covers the first steps and under-covers the last; factors per block of steps
    put every block near nominal."""
    g = np.random.default_rng(2)
    h, sigma = 6, np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])

    def forecasts(n: int) -> list[Forecast]:
        return [Forecast(k, grid_paths(np.zeros(h), 1.0, 200), (sigma * g.normal(size=h))[:, None],
                         g.normal(size=(20, 1))) for k in range(n)]

    cal, test = forecasts(200), forecasts(300)
    pooled_f, blocks = calibrate(cal), calibrate(cal, step_groups=3)
    assert len(blocks["step_factors"]) == 3 and blocks["factors"] == pooled_f["factors"]
    first, last = (np.asarray(f) for f in (blocks["step_factors"][0], blocks["step_factors"][2]))
    assert (last > 2.2 * first).all()  # the last block needs 3x the first's widening

    def last_steps(f: list[Forecast]) -> list[Forecast]:
        return [Forecast(x.origin, x.paths[:, 4:], x.truth[4:], x.history) for x in f]

    pooled_err = coverage_error(score(last_steps(calibrated(test, pooled_f)), 1))
    block_err = coverage_error(score(last_steps(calibrated(test, blocks)), 1))
    assert block_err < 8 and pooled_err > 15, (block_err, pooled_err)  # SE ~2 points
    assert coverage_error(score(calibrated(test, blocks), 1)) < 6
    # a longer forecast stretches the blocks over its own steps
    long = widen(grid_paths(np.zeros(12), 1.0, 200), blocks)
    np.testing.assert_allclose(long[:, 0], widen(grid_paths(np.zeros(6), 1.0, 200), blocks)[:, 0])
    assert np.ptp(long[:, 11]) > 2.2 * np.ptp(long[:, 0])


def test_rolling_protocol_origins_and_the_calibration_window():
    p = RollingProtocol(horizon=12, period=12, origins=5, stride=6, calibration_origins=8,
                        calibration_stride=3)
    assert p.test_origins(144) == [108, 114, 120, 126, 132]  # the last ends at row 144
    assert p.calibration_starts(144) == [75, 78, 81, 84, 87, 90, 93, 96]  # ends by row 108
    assert p.train_rows(144) == 75
    with pytest.raises(ValueError, match="train on"):
        p.train_rows(80)


@pytest.mark.parametrize("name", ["seasonal_naive", "ets", "arima"])
def test_baselines_give_paths_of_the_right_shape(name):
    if name != "seasonal_naive":
        require("statsmodels")
    g = np.random.default_rng(2)
    t = np.arange(40)  # quarterly: a small state space keeps the fits quick
    season = 10 * np.array([1.0, -1.0, 0.5, -0.5])[t % 4]
    history = np.stack([100 + t + season + g.normal(size=40),
                        50 + season + g.normal(size=40)], 1)  # (40, 2), positive
    forecaster = BASELINES[name]()
    paths = forecaster(history, horizon=6, period=4, n_paths=30, seed=0, log=True)
    assert paths.shape == (30, 6, 2) and np.isfinite(paths).all() and (paths > 0).all()
    median = np.median(paths, 0)  # near the seasonal pattern ahead
    truth = np.stack([140 + t[:6] + season[:6], 50 + season[:6]], 1)
    assert np.abs(median - truth).mean() < 6
    again = forecaster(history[:-1], horizon=6, period=4, n_paths=30, seed=0, log=True)
    assert again.shape == (30, 6, 2)  # a refit at the next origin


def test_seasonal_naive_paths_of_a_periodic_series_are_exact():
    history = np.tile(np.arange(4.0), 5)[:, None]  # period 4, no noise
    paths = seasonal_naive_paths(history, horizon=6, period=4, n_paths=5)
    np.testing.assert_array_equal(paths[:, :, 0], np.tile([0, 1, 2, 3, 0, 1], (5, 1)))


def test_read_series_wide_tables_and_gaps(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("YEAR,JAN,FEB\n1950.0,1,2\n1951.0,3,4\n")
    times, columns, values = read_series(wide, layout="wide")
    assert times == ["1950-JAN", "1950-FEB", "1951-JAN", "1951-FEB"]
    assert values[:, 0].tolist() == [1, 2, 3, 4] and columns == ["wide"]
    gaps = tmp_path / "gaps.csv"
    gaps.write_text(",co2\n1,1.0\n2,\n3,\n4,4.0\n")
    assert read_series(gaps, fill="interpolate")[2][:, 0].tolist() == [1, 2, 3, 4]
    from genforge.errors import DataError

    with pytest.raises(DataError, match="row 3"):
        read_series(gaps, columns="co2")


def test_acf_and_synthetic_measures_are_sane():
    g = np.random.default_rng(3)
    real = ar1(2000, 0.8, g)[:, None]
    assert acf(real[None], 2)[0, 0] == pytest.approx(0.8, abs=0.08)
    alike = np.stack([ar1(120, 0.8, g) for _ in range(40)])[..., None]  # (40, 120, 1)
    other = np.stack([ar1(120, -0.5, g) for _ in range(40)])[..., None]
    near, far = acf_distance(real, alike, 10), acf_distance(real, other, 10)
    assert near < 0.06 and far > 0.3
    same = discriminative_accuracy(real[:600], alike, 12, trees=30)
    easy = discriminative_accuracy(real[:600], other, 12, trees=30)
    assert abs(same - 0.5) < 0.15 and easy > 0.8
    good = tstr(real[:1800], real[1800:], alike, period=1)
    bad = tstr(real[:1800], real[1800:], other, period=1)
    assert good["tstr_over_trtr"] < 1.1 < bad["tstr_over_trtr"]


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """A tiny airline run that keeps 24 rows before its held-out tail for calibration."""
    from genforge.api import train
    from genforge.registry import load_config

    cfg = load_config("airline-ar", [*tiny("series"), f"data.root={REPO / 'data'}",
                                     "data.calibration_length=24", "data.calibration_stride=6",
                                     "log.sample_every=0"])
    return train(cfg, out=tmp_path_factory.mktemp("series") / "ts").run_dir


def test_a_run_calibrates_its_paths_on_its_calibration_rows(calibrated_run):
    import genforge

    model = genforge.load(calibrated_run)
    info = model.data_info
    assert (info["fit_rows"], info["train_rows"]) == (128 - 24 - 24, 128 - 24)
    raw = model.sample(30, seed=0, horizon=6, calibrated=False).double().numpy()
    paths = model.sample(30, seed=0, horizon=6).double().numpy()  # calibrated by default
    factors = model.objective.calibration(6)
    assert factors["origins"] == [80, 86, 92, 98]  # each forecast ends by row 104
    np.testing.assert_allclose(paths, widen(raw, factors), rtol=1e-5)
    assert not np.allclose(paths, raw)
    # widening about each step's median keeps the median and the paths' order
    np.testing.assert_allclose(np.median(paths, 0), np.median(raw, 0), rtol=1e-6)
    in_raw_order = np.take_along_axis(paths, np.argsort(raw, 0, kind="stable"), 0)
    assert (np.diff(in_raw_order, axis=0) >= -1e-4).all()


def test_a_refitted_run_keeps_the_factors_of_the_calibrated_one(calibrated_run, tmp_path):
    """The refit after calibration: the same configuration trained on every row before the
    tail has no calibration rows of its own; it widens by the factors it is given."""
    import genforge
    from genforge.api import train
    from genforge.errors import ConfigError
    from genforge.registry import load_config

    cfg = load_config("airline-ar", [*tiny("series"), f"data.root={REPO / 'data'}",
                                     "log.sample_every=0"])
    refit = genforge.load(train(cfg, out=tmp_path / "refit").run_dir)
    assert refit.data_info["fit_rows"] == refit.data_info["train_rows"] == 128 - 24
    with pytest.raises(ConfigError, match="no calibration rows"):
        refit.sample(10, seed=0, horizon=6, calibrated=True)
    factors = genforge.load(calibrated_run).objective.calibration(6)
    raw = refit.sample(30, seed=0, horizon=6).double().numpy()  # nothing kept: raw paths
    refit.objective.keep_calibration(factors)
    kept = refit.sample(30, seed=0, horizon=6).double().numpy()  # calibrated by default now
    np.testing.assert_allclose(kept, widen(raw, factors), rtol=1e-5)
    assert not np.allclose(kept, raw)
    assert refit.objective.calibration(12) is factors
    refit.objective.keep_calibration(None)
    np.testing.assert_allclose(refit.sample(30, seed=0, horizon=6).double().numpy(), raw)
    with pytest.raises(ConfigError, match="levels"):
        refit.objective.keep_calibration({"factors": [1.0]})


def test_eval_reports_coverage_pit_and_rolling_origins(calibrated_run, tmp_path):
    import genforge
    from genforge.eval.series.evaluate import evaluate_series, write_series_report

    model = genforge.load(calibrated_run)
    result = evaluate_series(model, n_paths=20)
    m = result["metrics"]
    assert {"coverage_50", "coverage_80", "coverage_95"} <= set(m)
    assert m["coverage_50"] <= m["coverage_80"] <= m["coverage_95"]
    assert sum(m["pit_histogram"]) == pytest.approx(1.0)
    assert set(m["uncalibrated"]) >= {"crps", "coverage_80", "pit_histogram"}
    assert m["calibration"]["origins"] == [80]  # the tail's horizon 24 fills the 24 rows
    assert m["rolling"]["origins"] == [104, 107, 110, 113, 116, 119, 122]  # horizon 6
    # each window's coverage beside the band a calibrated forecaster lands in on it: 42
    # overlapping points spread less than the single 24-step tail
    tail, rolled = m["coverage_noise"], m["rolling"]["coverage_noise"]
    assert tail["process"] == rolled["process"]  # one ARIMA stand-in, fitted once
    width = [[b - a for a, b in got["band_90"]] for got in (tail, rolled)]
    assert width[1][0] < width[0][0] and width[1][1] < width[0][1]
    paths = write_series_report(result, tmp_path / "eval", info=model.data_info)
    assert "PIT histogram" in paths["report"].read_text()


def test_cli_samples_synthetic_series(calibrated_run, tmp_path):
    import csv

    from typer.testing import CliRunner

    import genforge
    from genforge.cli import app
    from genforge.families.series.synthetic import synthesize

    out = tmp_path / "synthetic.csv"
    result = CliRunner().invoke(app, ["sample", str(calibrated_run), "--synthetic", "--n", "4",
                                      "--length", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "step", "Passengers"] and len(rows) == 1 + 4 * 30
    model = genforge.load(calibrated_run)
    series = synthesize(model.objective, 5, seed=0, length=30)
    assert series.shape == (5, 30, 1) and torch.isfinite(series).all()
    assert (series > 0).all()  # a log model's series stay positive
    assert torch.equal(series, synthesize(model.objective, 5, seed=0, length=30))
    assert not torch.equal(series, synthesize(model.objective, 5, seed=1, length=30))
    refused = CliRunner().invoke(app, ["sample", str(calibrated_run), "--synthetic",
                                       "--horizon", "5"])
    assert refused.exit_code == 2 and "--length" in refused.output
