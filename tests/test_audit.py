"""The one-run privacy audit (genforge.eval.tables.audit): the bound pinned against hand-worked
cases
and scipy, soundness and power against randomised response (a mechanism of known epsilon), the
canaries, and `genforge audit` end to end on a tiny table run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from typer.testing import CliRunner

from genforge.cli import app
from genforge.errors import ConfigError
from genforge.eval.tables.audit import (
    draw_canaries,
    epsilon_lower_bound,
    guess_grid,
    one_run_bound,
    p_value,
)

runner = CliRunner()


def scipy_bound(r: int, v: int, beta: float) -> float:
    """Pure epsilon, independently: bisect P[Binomial(r, e^eps / (e^eps + 1)) >= v] = beta."""
    lo, hi = 0.0, 30.0
    if binom.sf(v - 1, r, 0.5) >= beta:
        return 0.0
    for _ in range(100):
        mid = (lo + hi) / 2
        q = math.exp(mid) / (math.exp(mid) + 1)
        lo, hi = (mid, hi) if binom.sf(v - 1, r, q) < beta else (lo, mid)
    return lo


@pytest.mark.parametrize("r", [5, 10, 50])
def test_all_guesses_right_give_the_hand_worked_bound(r):
    # P[all r right] = q^r = beta  =>  q = beta^(1/r), epsilon = log(q / (1 - q))
    q = 0.05 ** (1 / r)
    assert epsilon_lower_bound(r, r, r, beta=0.05) == pytest.approx(math.log(q / (1 - q)),
                                                                    abs=1e-9)


def test_bound_matches_scipy_and_is_zero_without_evidence():
    for m, r, v in [(1000, 500, 300), (1000, 100, 80), (200, 200, 130), (50, 20, 15)]:
        assert epsilon_lower_bound(m, r, v, beta=0.05) == pytest.approx(
            scipy_bound(r, v, 0.05), abs=1e-8)
    assert epsilon_lower_bound(100, 100, 0, beta=0.05) == 0.0
    assert epsilon_lower_bound(100, 100, 50, beta=0.05) == 0.0  # chance level: no evidence
    assert epsilon_lower_bound(100, 10, 6, beta=0.05) == 0.0


def test_delta_term_follows_the_theorem_and_only_weakens_the_bound():
    m, r, v, eps, delta = 1000, 200, 150, 1.0, 1e-4
    q = math.exp(eps) / (math.exp(eps) + 1)
    alpha = max(sum(binom.pmf(v - j, r, q) for j in range(1, i + 1)) / i
                for i in range(1, v + 1))
    assert p_value(m, r, v, eps, delta) == pytest.approx(
        binom.sf(v - 1, r, q) + 2 * m * delta * alpha, rel=1e-9)
    pure = epsilon_lower_bound(m, r, v, beta=0.05)
    assert 0 < epsilon_lower_bound(m, r, v, beta=0.05, delta=delta) < pure


def randomised_response(m: int, epsilon: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Who is in (S), and an epsilon-DP release of each S_i: kept with e^eps / (e^eps + 1)."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    keep = rng.random(m) < math.exp(epsilon) / (math.exp(epsilon) + 1)
    return np.where(keep, included, ~included).astype(float), included


def test_randomised_response_bound_is_sound_over_many_seeds():
    """An epsilon-DP mechanism: the swept bound exceeds epsilon in at most 5% of runs (the
    stated confidence), here with a grid of 63 pairs and Bonferroni."""
    epsilon, seeds = 1.0, 200
    over = sum(one_run_bound(*randomised_response(200, epsilon, s), confidence=0.95,
                             seed=s)["epsilon_lower_bound"] > epsilon for s in range(seeds))
    assert over / seeds <= 0.05
    # one pre-chosen pair at beta = 0.05: exceeding is rare but not impossible (a sharper test)
    exceed = [one_run_bound(*randomised_response(200, epsilon, s), confidence=0.95, seed=s,
                            grid=[(100, 100)])["epsilon_lower_bound"] > epsilon
              for s in range(seeds)]
    assert np.mean(exceed) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / seeds)


def test_randomised_response_bound_is_close_with_many_canaries():
    for epsilon in (0.5, 1.0, 2.0):
        result = one_run_bound(*randomised_response(20000, epsilon, 0), confidence=0.95)
        assert 0.85 * epsilon < result["epsilon_lower_bound"] <= epsilon
        assert result["correct"] <= result["guesses"] <= 20000


def test_grid_is_fixed_and_within_m():
    assert guess_grid(2) == [(0, 1), (1, 0), (1, 1)]
    grid = guess_grid(1000)
    assert all(0 < kp + km <= 1000 for kp, km in grid) and (500, 500) in grid


# --------------------------------------------------------------------------------------------
# Canaries and the command


SCHEMA = {"columns": [
    {"name": "age", "kind": "int", "min": 18, "max": 80},
    {"name": "score", "kind": "float", "min": 1.5, "max": 99.0},
    {"name": "city", "kind": "categorical", "categories": ["Bonn", "Essen", "Köln"]},
    {"name": "sex", "kind": "categorical", "categories": ["Female", "Male"]},
    {"name": "note", "kind": "id"}]}


def toy(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(30, 60, n), "score": rng.normal(50, 10, n),
                         "city": rng.choice(["Bonn", "Essen", "Köln"], n),
                         "sex": rng.choice(["Female", "Male"], n),
                         "note": [f"N{i}" for i in range(n)]})


def test_canaries_are_distinct_at_the_bounds_and_unseen():
    train = toy()
    canaries = draw_canaries(train, SCHEMA, 20, np.random.default_rng(0))
    assert len(canaries) == 20 and list(canaries.columns) == list(train.columns)
    assert not canaries[["age", "score", "city", "sex"]].duplicated().any()
    assert set(canaries["age"]) <= {18, 80} and set(canaries["score"]) <= {1.5, 99.0}
    assert canaries["age"].dtype == train["age"].dtype
    assert set(canaries["note"]) <= set(train["note"])  # other columns: from training rows
    # 2 x 2 x 3 x 2 = 24 distinct rows at most
    with pytest.raises(ConfigError, match="--canaries 30"):
        draw_canaries(train, SCHEMA, 30, np.random.default_rng(0))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    import genforge
    from genforge.registry import load_config

    base = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(0)
    frame = toy(200).drop(columns="note").assign(
        income=rng.choice(["<=50K", ">50K"], 200))
    frame.to_csv(base / "toy.csv", index=False)
    cfg = load_config("tables", [f"data.path={base / 'toy.csv'}", "data.target=income",
                                 "data.test_split=0.2", "model.kind=tvae", "model.hidden=16",
                                 "model.layers=1", "model.latent_dim=8", "model.max_modes=3",
                                 "train.max_steps=3", "train.batch_size=50", "train.warmup_steps=0",
                                 "log.progress=false", "log.tensorboard=false",
                                 "log.sample_every=0", "log.every=1"])
    return genforge.train(cfg, out=base / "run").run_dir


def test_audit_command_end_to_end(table_run):
    result = runner.invoke(app, ["audit", str(table_run), "--canaries", "40", "--steps", "2",
                                 "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "epsilon >=" in result.output and "no DP claim" in result.output
    audit = json.loads((table_run / "audit" / "audit.json").read_text())
    assert audit["m"] == 40 and audit["confidence"] == 0.95 and audit["delta"] == 1e-5
    assert audit["retraining"]["steps"] == 2 and audit["retraining"]["run_steps"] == 3
    assert 0 <= audit["correct"] <= audit["guesses"] == audit["k_plus"] + audit["k_minus"]
    assert audit["claimed_epsilon"] is None and audit["bound_within_claim"] is None
    canaries = pd.read_csv(table_run / "audit" / "canaries.csv")
    assert len(canaries) == 40 and canaries["included"].sum() == audit["included"]
    # a second audit moves the first aside, never over it
    again = runner.invoke(app, ["audit", str(table_run), "--canaries", "40", "--steps", "2"])
    assert again.exit_code == 0, again.output
    older = [p for p in table_run.iterdir() if p.name.startswith("audit-")]
    assert len(older) == 1 and (older[0] / "audit.json").exists()
    # and the eval report shows it
    from genforge.eval.images.pipeline import EvalOptions
    from genforge.eval.runs import evaluate_run

    _, paths = evaluate_run(str(table_run), EvalOptions(n=100), n_given=True)
    assert "Privacy audit" in paths["report"].read_text()


@pytest.mark.parametrize("args, named", [
    (["--canaries", "1"], "--canaries 1"), (["--confidence", "1.5"], "--confidence 1.5"),
    (["--confidence", "0"], "--confidence 0.0"), (["--steps", "0"], "--steps 0")])
def test_bad_options_fail_in_one_line(table_run, args, named):
    before = sorted(p.name for p in table_run.iterdir())
    result = runner.invoke(app, ["audit", str(table_run), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0]
    assert sorted(p.name for p in table_run.iterdir()) == before


def test_a_folder_without_a_run_fails_in_one_line(tmp_path):
    result = runner.invoke(app, ["audit", str(tmp_path)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
