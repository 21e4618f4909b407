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
from genforge.data.series import SeriesDataConfig, load_series, scale, unscale
from genforge.errors import DataError
from genforge.eval.series import (
    crps_samples,
    evaluate_series,
    mase,
    seasonal_naive,
    write_series_report,
)
from genforge.eval.series_coverage import arima_weights, oracle_coverage, p_value

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
    g = np.random.default_rng(0)
    mu, sigma, y = 1.0, 2.0, np.array([[0.3], [4.0]])
    paths = g.normal(mu, sigma, size=(20000, 2, 1))
    z = (y - mu) / sigma
    phi, cdf = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + np.vectorize(math.erf)(
        z / math.sqrt(2)))
    exact = sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    np.testing.assert_allclose(crps_samples(paths, y), exact, rtol=0.02)
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
    batch = data.stream(batch_size=4, seed=0).next(1)[0]
    x, t0 = batch.x, batch.y  # (4, 12 + 12, 1), (4,)
    for window, row in zip(x, t0.tolist(), strict=True):  # the first target is row t0's change
        expected = scale(values[row - 12 - 1 : row + 12], info)  # lags, then 12 targets
        np.testing.assert_allclose(window.numpy(), expected, rtol=1e-5, atol=1e-6)
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
    from genforge.data.series_calibration import LEVELS as GRID

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
    assert m["crps"] > 0 and m["seasonal_naive"]["mase"] == pytest.approx(2.4935, abs=1e-3)
    assert metrics["protocol"]["horizon"] == 24
    noise = m["coverage_noise"]  # 24 held-out months: a calibrated forecaster's band is wide
    (lo50, hi50), (lo80, hi80), (lo95, hi95) = noise["band_90"]
    assert lo50 < 0.4 and hi50 > 0.6 and lo80 < 0.8 < hi80 and lo95 < 0.95 <= hi95
    # of the tail's own rows and coverage, on the log scale the run models (the same draws)
    info = genforge.load(out).data_info
    past = np.asarray(info["history"])[: info["train_rows"]]
    psi, names = arima_weights(past, 24, 12, log=True)
    draws = oracle_coverage(psi, [len(past)], 24, reps=5000, seed=0)
    assert noise["process"] == names
    assert noise["p_value"] == round(p_value(draws, [m[f"coverage_{lv}"] for lv in (50, 80, 95)]),
                                     3)
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
