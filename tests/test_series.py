"""The time series family: CRPS and MASE against closed forms, the window stream, a tiny run
(CLI train, sample, evaluate) for a univariate and a multivariate series."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genforge
from genforge.cli import app
from genforge.errors import DataError
from genforge.eval.series.coverage import arima_weights
from genforge.eval.series.evaluate import (
    crps_samples,
    evaluate_series,
    mase,
    seasonal_naive,
    write_series_report,
)
from genforge.modalities.series.data import SeriesDataConfig, load_series, scale, unscale

from conftest import REPO, SHARED_DATA, tiny
from skips import skip_unless

BUNDLED = REPO / "data"  # the airline series ships with the repo
AIRLINE = BUNDLED / "timeseries" / "airline_passengers.csv"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets on a busy shared CPU
    yield
    torch.set_num_threads(threads)


def test_crps_estimator_matches_the_gaussian_closed_form():
    # "paths" at the normal quantiles (i + 1/2) / S (shuffled), not random draws: the
    # estimator then meets the closed form to ~5e-7, where 20,000 draws scatter by ~1 %
    # (which hid a pair term normalised by S (S - 1) rather than S^2)
    mu, sigma, y, s = 1.0, 2.0, np.array([[0.3], [4.0]]), 2000
    from scipy.stats import norm

    grid = mu + sigma * norm.ppf((np.arange(s) + 0.5) / s)
    grid = np.random.default_rng(0).permutation(grid)
    paths = np.broadcast_to(grid[:, None, None], (s, 2, 1)).copy()
    z = (y - mu) / sigma
    phi, cdf = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + np.vectorize(math.erf)(
        z / math.sqrt(2)))
    exact = sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    np.testing.assert_allclose(crps_samples(paths, y), exact, rtol=1e-5)
    point = np.full((5, 1, 1), 3.0)  # a point forecast: CRPS = absolute error
    np.testing.assert_allclose(crps_samples(point, np.array([[1.0]])), [[2.0]])


def test_seasonal_naive_and_mase_by_hand():
    train = np.array([[1.0], [2.0], [3.0], [2.0], [3.0], [4.0]])  # period 3
    np.testing.assert_array_equal(seasonal_naive(train, 4, 3)[:, 0], [2.0, 3.0, 4.0, 2.0])
    # in-sample seasonal errors |2-1|, |3-2|, |4-3| -> scale 1; forecast errors 1, 3 -> MASE 2
    assert mase(np.array([[3.0], [6.0]]), np.array([[2.0], [3.0]]), train, 3)[0] == 2.0


def test_scaling_inverts_and_windows_carry_their_rows(monkeypatch):
    monkeypatch.setenv("GENFORGE_DATA", str(SHARED_DATA))
    data = load_series(SeriesDataConfig(transform="log", difference=True, window=12))
    info = data.info()
    assert info["train_rows"] == 120 and info["columns"] == ["Passengers"]
    values = np.asarray(info["history"])  # (144, 1)
    z = torch.from_numpy(scale(values[100:], info))[None]  # the changes into rows 101..143
    np.testing.assert_allclose(unscale(z, torch.from_numpy(values[100]), info)[0].numpy(),
                               values[101:], rtol=1e-9)
    # the scaling, by numpy: log changes (change[i] is the one into row i + 1), standardised
    # by the mean and (population) sd of the 119 changes within the 120 training rows
    change = np.diff(np.log(values), axis=0)  # (143, 1)
    mean, sd = change[:119].mean(0), change[:119].std(0)
    np.testing.assert_allclose(info["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(info["std"], sd, rtol=1e-6)
    batch = data.stream(batch_size=4, seed=0).next(1)[0]
    x, t0 = batch.x, batch.y  # (4, 12 + 12, 1), (4,)
    for window, row in zip(x, t0.tolist(), strict=True):  # the first target is row t0's change
        expected = (change[row - 13 : row + 11] - mean) / sd  # into rows row-12 .. row+11
        np.testing.assert_allclose(window.numpy(), expected, rtol=1e-5, atol=1e-5)
    halves = [data.stream(batch_size=4, seed=0, rank=r, world=2).next(1)[0].x for r in (0, 1)]
    assert torch.equal(torch.stack(halves, 1).flatten(0, 1), x)


def test_sqrt_transform_inverts_and_keeps_counts_non_negative(tmp_path):
    counts = np.asarray([[0.0], [4.0], [9.0], [1.0], [25.0], [16.0], [0.0], [36.0]] * 5)
    path = tmp_path / "counts.csv"
    path.write_text("t,n\n" + "".join(f"{i},{v[0]}\n" for i, v in enumerate(counts)))
    for difference in (False, True):
        cfg = SeriesDataConfig(path=str(path), transform="sqrt", difference=difference,
                               period=1, test_length=8, window=4)
        info = load_series(cfg).info()
        z = torch.from_numpy(scale(counts[10:], info))[None]
        last = torch.from_numpy(counts[10 if difference else 9])
        np.testing.assert_allclose(unscale(z, last, info)[0].numpy(),
                                   counts[11:] if difference else counts[10:], atol=1e-9)
        below = torch.full_like(z, -50.0)  # far below any count: the inverse gives 0, not 2500
        assert (unscale(below, last, info) == 0).all()
    # a run on counts: its forecasts, widened by its calibration or not, stay counts (>= 0)
    g = np.random.default_rng(0)
    many = tmp_path / "many.csv"
    level = 3 + 3 * np.sin(np.arange(160) / 4)  # a cycle down to 0
    many.write_text("t,n\n" + "".join(f"{i},{v}\n" for i, v in enumerate(g.poisson(level))))
    from genforge.api import train
    from genforge.registry import load_config

    cfg = load_config("airline-ar", [*tiny("series"), f"data.path={many}", "data.period=1",
                                     "data.transform=sqrt", "data.test_length=12",
                                     "data.calibration_length=24", "data.calibration_stride=4",
                                     "log.sample_every=0"])
    model = genforge.load(train(cfg, out=tmp_path / "counts").run_dir)
    for calibrated in (True, False):
        paths = model.sample(200, seed=0, horizon=12, calibrated=calibrated)
        assert (paths >= 0).all() and torch.isfinite(paths).all()
    from genforge.modalities.series.calibration import LEVELS as GRID

    # factors 20x wide (as a badly over-confident model's might be) push the low paths far
    # below 0 before the clamp
    model.objective.keep_calibration({"levels": list(GRID), "factors": [20.0] * len(GRID)})
    wide = model.sample(200, seed=0, horizon=12, calibrated=True)
    assert (wide >= 0).all() and (wide == 0).any() and wide.max() > paths.max()
    negative = tmp_path / "negative.csv"
    negative.write_text("t,n\n0,1\n1,-2\n" + "".join(f"{i},3\n" for i in range(2, 40)))
    with pytest.raises(DataError, match="data.transform=sqrt needs values >= 0.*'n'"):
        load_series(SeriesDataConfig(path=str(negative), transform="sqrt", period=1,
                                     test_length=4, window=4))


def test_tiny_run_samples_paths_and_evaluates(tmp_path):
    out = tmp_path / "ts"
    result = runner.invoke(app, ["train", "airline-ar", *tiny("series"), "data.limit=144",
                                 f"data.root={BUNDLED}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sampled = runner.invoke(app, ["sample", str(out), "--horizon", "5", "--n", "7", "--out",
                                  str(tmp_path / "forecast.csv")])
    assert sampled.exit_code == 0, sampled.output
    rows = list(csv.reader((tmp_path / "forecast.csv").open()))
    assert rows[0] == ["path", "step", "Passengers"] and len(rows) == 1 + 7 * 5
    model = genforge.load(out)
    paths = model.sample(7, seed=0, horizon=5)
    assert paths.shape == (7, 5, 1) and (paths > 0).all()  # a log model stays positive
    assert torch.equal(paths, model.sample(7, seed=0, horizon=5))
    assert not torch.equal(paths, model.sample(7, seed=1, horizon=5))
    metrics = evaluate_series(out, n_paths=20)
    m = metrics["metrics"]
    assert metrics["protocol"]["horizon"] == 24
    # the scores by hand from the eval's own draws (seed 0): CRPS as E|X - y| - E|X - X'|/2
    # over all pairs, MASE as the median's error over the in-sample seasonal-naive error
    info = model.data_info
    values = np.asarray(info["history"])
    past, future = values[:120, 0], values[120:, 0]
    draws = model.sample(20, seed=0, horizon=24, history=values[:120]).double().numpy()[..., 0]
    pairs = np.abs(draws[:, None] - draws[None, :]).mean((0, 1))  # (24,)
    crps = (np.abs(draws - future).mean(0) - pairs / 2).mean()
    assert m["crps"] == pytest.approx(crps, rel=1e-9)
    naive_error = np.abs(past[12:] - past[:-12]).mean()
    assert m["mase"] == pytest.approx(np.abs(future - np.median(draws, 0)).mean() / naive_error,
                                      rel=1e-9)
    naive = np.tile(past[-12:], 2)  # the last season, repeated over the 24 months
    assert m["seasonal_naive"]["mase"] == pytest.approx(
        np.abs(future - naive).mean() / naive_error, rel=1e-12)
    assert m["seasonal_naive"]["mase"] == pytest.approx(2.4935, abs=1e-3)
    # the coverage band of a calibrated forecaster on this window, simulated directly: the
    # errors of the fitted ARIMA's MA(inf) form as a scipy filter of the innovations
    from scipy.signal import lfilter
    from scipy.stats import norm

    noise = m["coverage_noise"]  # 24 held-out months: a calibrated forecaster's band is wide
    psi, names = arima_weights(values[:120], 24, 12, log=True)
    assert noise["process"] == names
    errors = lfilter(psi[0], [1.0], np.random.default_rng(7).standard_normal((20000, 24)), 1)
    z = np.abs(errors) / np.sqrt(np.cumsum(psi[0] ** 2))  # (reps, 24) in sd units
    levels = np.array([0.5, 0.8, 0.95])
    oracle = (z[..., None] < norm.ppf((1 + levels) / 2)).mean(1)  # (reps, 3) coverages
    np.testing.assert_allclose(noise["band_90"], np.quantile(oracle, [0.05, 0.95], 0).T,
                               atol=1 / 24 + 1e-9)  # one month either way: Monte Carlo
    got = np.array([m[f"coverage_{lv}"] for lv in (50, 80, 95)])
    spread = oracle.std(0)
    far = (np.abs(oracle - levels) / spread).max(1) >= (np.abs(got - levels) / spread).max()
    assert noise["p_value"] == pytest.approx((far.sum() + 1) / (len(far) + 1), abs=0.03)
    paths = write_series_report(metrics, tmp_path / "eval")
    assert "Forecast of Passengers" in paths["report"].read_text()
    result = runner.invoke(app, ["eval", str(out), "--n", "10"])  # the CLI: into RUN/eval
    assert result.exit_code == 0, result.output
    written = json.loads((out / "eval" / "metrics.json").read_text())
    assert written["kind"] == "series" and written["protocol"]["paths"] == 10
    assert "mase_relative_to_seasonal_naive" in result.output


@skip_unless((SHARED_DATA / "timeseries").is_dir(), "no-shared-data", f"{SHARED_DATA}/timeseries")
def test_multivariate_gru_run(tmp_path):
    from genforge.api import train
    from genforge.registry import load_config

    cfg = load_config("airline-ar", [
        *tiny("series"), "model.arch=gru", "data.path=timeseries/statsmodels_macrodata.csv",
        "data.columns=realgdp,realcons,unemp", "data.period=4", "data.test_length=8",
        f"data.root={SHARED_DATA}", "data.limit=200", "log.sample_every=0"])
    model = genforge.load(train(cfg, out=tmp_path / "macro").run_dir)
    assert model.data_info["columns"] == ["realgdp", "realcons", "unemp"]
    assert model.sample(3, seed=0, horizon=8).shape == (3, 8, 3)
    assert evaluate_series(model, n_paths=10)["metrics"]["per_column"].keys() == \
        {"realgdp", "realcons", "unemp"}
