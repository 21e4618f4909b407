"""A modality and a family from outside genforge, end to end: the toy package in
tests/plugins (2-D point clouds, a Gaussian mixture) is installed the way pip installs one
(a `*.dist-info` folder with entry_points.txt on the path) and is trained, sampled,
completed, evaluated and served through every route, with no edit anywhere in genforge/.

The values checked come from outside the code under test: a mixture sampled with spread 0
gives its component means exactly; a fitted mixture's points lie on the two rings the data
was drawn on (radius 1 or 2); the energy distance is checked on a hand-worked case.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genforge
from genforge import registry

PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture(scope="module")
def installed():
    """The toy package on sys.path, found by the registry; removed afterwards."""
    sys.path.insert(0, str(PLUGINS))
    registry.reload()
    yield
    sys.path.remove(str(PLUGINS))
    for name in [m for m in sys.modules if m.startswith("genforge_points")]:
        del sys.modules[name]
    registry.reload()


@pytest.fixture(scope="module")
def run(installed, tmp_path_factory):
    cfg = registry.load_config("points-gmm", ["train.seed=0"])
    return genforge.train(cfg, out=tmp_path_factory.mktemp("gmm") / "run").run_dir


def radius(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points, axis=1)


def test_the_registry_finds_the_plugin_and_its_preset(installed):
    assert "gmm" in registry.families() and "points" in registry.modalities()
    assert registry.presets()["points-gmm"].parent == PLUGINS / "genforge_points" / "presets"
    assert "spread" in registry.sample_options()
    cfg = registry.load_config("points-gmm")
    assert (cfg.family, cfg.modality, cfg.model.components) == ("gmm", "points", 8)


def test_train_and_sample_through_the_api(run):
    model = genforge.load(run)
    points = model.sample(2000, seed=1)
    assert points.shape == (2000, 2)
    # the data: two rings of radius 1 and 2 (noise 0.05), half the points on each; a fitted
    # mixture of 8 diagonal Gaussians puts its points near them, far nearer than the mixture
    # it started from
    def off_ring(points: np.ndarray) -> float:
        r = radius(points)
        return float(np.mean(np.minimum(abs(r - 1), abs(r - 2))))

    from genforge_points.family import GMMConfig, GMMObjective

    untrained = GMMObjective(GMMConfig(components=8), {"dims": 2}).sample(2000, seed=1).numpy()
    assert off_ring(points) < 0.25 < off_ring(untrained)
    assert 0.3 < np.mean(radius(points) < 1.5) < 0.7
    # spread 0: every point is one of the mixture's means, read from the saved weights
    from safetensors.numpy import load_file

    means = next(v for k, v in load_file(str(run / "model.safetensors")).items()
                 if k.endswith("means"))
    still = model.sample(50, seed=2, spread=0.0)
    near = np.isclose(still[:, None], means[None].astype(np.float64), atol=1e-6)
    assert near.all(-1).any(1).all()
    assert np.array_equal(model.sample(10, seed=3), model.sample(10, seed=3))  # seeded


def test_complete_fills_only_the_missing_coordinates(run):
    """A point (x, NaN) gets its y from the mixture given x: on the rings, x = 0 leaves
    y near +-1 or +-2, and a known coordinate comes back unchanged."""
    model = genforge.load(run)
    given = np.array([[0.0, np.nan]] * 400 + [[np.nan, 1.5], [0.25, -0.5]])
    filled = model.complete_rows(given, seed=0)
    assert not np.isnan(filled).any()
    assert (filled[:400, 0] == 0).all() and filled[400, 1] == 1.5
    assert (filled[401] == [0.25, -0.5]).all()
    y = abs(filled[:400, 1])
    assert np.mean(np.minimum(abs(y - 1), abs(y - 2)) < 0.4) > 0.6
    assert np.array_equal(filled, model.complete_rows(given, seed=0))  # seeded


def test_cli_train_sample_eval_and_list(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS),
                                                        os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "genforge", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("train", "points-gmm", "train.max_steps=60", "--out", "run")
    cli("sample", "run", "--n", "7", "--seed", "4", "--spread", "0.5", "--out", "p.csv")
    text = (tmp_path / "p.csv").read_text()
    record = json.loads(text.splitlines()[0].removeprefix("# provenance: "))
    assert record["modality"] == "points" and record["family"] == "gmm"
    assert np.loadtxt(io.StringIO(text), delimiter=",", skiprows=2).shape == (7, 2)
    out = cli("eval", "run", "--n", "300")
    assert "energy distance" in out
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 300 and metrics["energy_distance"] >= 0
    (tmp_path / "gaps.csv").write_text("x,y\n0,\n,1.5\n0.25,-0.5\n")
    cli("complete", "run", "--input", "gaps.csv", "--out", "filled.csv", "--seed", "1")
    filled = np.loadtxt(tmp_path / "filled.csv", delimiter=",", skiprows=2)
    assert filled.shape == (3, 2) and filled[1, 1] == 1.5 and (filled[2] == [0.25, -0.5]).all()
    listing = cli("list")
    assert "gmm" in listing and "points" in listing and "points-gmm" in listing
    bad = subprocess.run([sys.executable, "-m", "genforge", "sample", "run", "--spread", "-1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--spread" in bad.stderr


def test_energy_distance_on_a_hand_worked_case(installed):
    from genforge_points.modality import energy_distance

    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert energy_distance(a, b) == pytest.approx(10.0)  # 2 * 5 - 0 - 0
    assert energy_distance(a, a) == 0.0


def test_served_through_every_route(run):
    from fastapi.testclient import TestClient

    from genforge.serve import create_app

    client = TestClient(create_app([run]))
    (info,) = client.get("/v1/models").json()["models"]
    assert (info["family"], info["modality"], info["formats"]) == ("gmm", "points", ["json"])
    knobs = {k["name"]: k for k in info["knobs"]}
    assert knobs["spread"]["maximum"] == 10.0 and knobs["spread"]["default"] == 1.0
    resp = client.post("/v1/generate", json={"model": info["id"], "n": 5, "seed": 2,
                                             "spread": 0.0})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    model = genforge.load(run)
    assert np.allclose(body["points"], model.sample(5, seed=2, spread=0.0))
    assert body["provenance"]["modality"] == "points"
    bad = client.post("/v1/generate", json={"model": info["id"], "n": 5, "spread": 99})
    assert 400 <= bad.status_code < 500 and "spread" in bad.text
    done = client.post("/v1/complete", json={"model": info["id"], "seed": 3,
                                             "rows": "x,y\n0,\n0.25,-0.5\n"})
    assert done.status_code == 200, done.text
    points = np.array(done.json()["points"])
    assert points.shape == (2, 2) and points[0, 0] == 0 and (points[1] == [0.25, -0.5]).all()
    assert done.json()["provenance"]["operation"] == "complete"
    missing = client.post("/v1/complete", json={"model": info["id"]})
    assert 400 <= missing.status_code < 500 and "rows" in missing.text
