"""AIM and MST (genforge/families/tabular/marginal*.py) and private preprocessing of tables
(genforge/modalities/tables/privacy.py): accounting, recovery of known marginals, refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import genforge
from genforge.errors import ConfigError, DataError
from genforge.registry import load_config

pytest.importorskip("mbi")
pytest.importorskip("opendp")

from genforge.families.tabular import marginal_select as ms

N = 4000
QUIET = ["log.progress=false", "log.tensorboard=false", "log.sample_n=0",
         "model.estimation_iters=300", "model.round_iters=50", "model.bins=8"]
SCHEMA = """version: 1
target: b
columns:
  - {name: a, kind: categorical, missing: 0.0, categories: [x, y, z]}
  - {name: b, kind: categorical, missing: 0.0, categories: [p, q]}
  - {name: c, kind: categorical, missing: 0.0, categories: [u, v]}
  - {name: n, kind: float, min: 0.0, max: 8.0, decimals: 3, missing: 0.0}
"""


def known_frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    """a uniform on 3 values; b = p for a = x, else q (90 %); c independent; n ~ U(0, 8)
    shifted up by 4 where b = q."""
    rng = np.random.default_rng(seed)
    a = rng.choice(["x", "y", "z"], n)
    agree = rng.random(n) < 0.9
    b = np.where((a == "x") == agree, "p", "q")
    c = rng.choice(["u", "v"], n, p=[0.3, 0.7])
    num = rng.uniform(0, 4, n) + 4 * (b == "q")
    return pd.DataFrame({"a": a, "b": b, "c": c, "n": np.round(num, 3)})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("marginal")
    known_frame().to_csv(folder / "t.csv", index=False)
    (folder / "t.schema.yaml").write_text(SCHEMA)
    return folder


def config(files, kind: str, *extra: str):
    return load_config("tables", [f"data.path={files / 't.csv'}", "data.target=b",
                                  f"data.schema={files / 't.schema.yaml'}", f"model.kind={kind}",
                                  "privacy.epsilon=20", "privacy.delta=1e-6", *QUIET, *extra])


@pytest.fixture(scope="module")
def mst_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("mst") / "run"
    return genforge.train(config(files, "mst"), out=out).run_dir


def _tvd(real: pd.DataFrame, syn: pd.DataFrame, cols: list[str]) -> float:
    p = real.groupby(cols).size() / len(real)
    q = syn.groupby(cols).size() / len(syn)
    return float(0.5 * p.subtract(q, fill_value=0).abs().sum())


def test_mst_recovers_known_marginals(mst_run):
    """At a large epsilon the synthetic one- and two-way marginals equal the table's (the
    pair (a, b) is 90 % dependent: a model of independent columns misses it by ~0.3)."""
    real = known_frame()
    syn = genforge.load(mst_run).sample(20000, seed=1)
    for cols in (["a"], ["b"], ["c"], ["a", "b"]):
        assert _tvd(real, syn, cols) < 0.03, cols
    real_bins, syn_bins = real.assign(h=real["n"] >= 4), syn.assign(h=syn["n"] >= 4)
    assert _tvd(real_bins, syn_bins, ["b", "h"]) < 0.05  # the number follows b
    rec = json.loads((mst_run / "run.json").read_text())["privacy"]
    assert rec["items"][-1]["step"] == "measurement" and rec["epsilon"] <= 20 + 1e-6
    assert rec["delta"] == pytest.approx(1e-6)


def test_mst_spends_exactly_its_rho_with_the_papers_noise():
    """MST at rho: d one-way marginals at sigma^2 = 3d / (2 rho), d-1 exponential-mechanism
    picks at eps = sqrt(8 (rho/3) / (d-1)), d-1 pairs at sigma^2 = 3 (d-1) / (2 rho)."""
    from mbi import Dataset, Domain

    rng = np.random.default_rng(0)
    d, rho = 4, 0.5
    table = Dataset({f"x{i}": rng.integers(0, 3, 500) for i in range(d)},
                    Domain([f"x{i}" for i in range(d)], [3] * d))
    pairs = [(f"x{i}", f"x{j}") for i in range(d) for j in range(i + 1, d)]
    _, spend = ms.mst(table, rho, pairs, one_way_share=1 / 3, iters=20, rng=rng)
    gauss = [e for e in spend.log if e["what"] == "gaussian"]
    picks = [e for e in spend.log if e["what"] == "exponential"]
    assert [e["sigma"] for e in gauss[:d]] == pytest.approx([math.sqrt(3 * d / (2 * rho))] * d)
    assert [e["sigma"] for e in gauss[d:]] == pytest.approx(
        [math.sqrt(3 * (d - 1) / (2 * rho))] * (d - 1))
    assert [e["epsilon"] for e in picks] == pytest.approx([math.sqrt(8 * rho / 3 / (d - 1))]
                                                         * (d - 1))
    assert spend.rho == pytest.approx(rho, rel=1e-9)


def test_measured_noise_has_the_configured_scale_and_sensitivity_one():
    """The measured vector is the count histogram plus N(0, sigma^2): removing one row moves it
    by exactly 1 in L2 (the sensitivity the noise is calibrated to), and its residuals have
    standard deviation sigma."""
    from mbi import Dataset, Domain

    rng = np.random.default_rng(1)
    values = rng.integers(0, 4000, 20000)
    dom = Domain(["v"], [4000])
    full, less = Dataset({"v": values}, dom), Dataset({"v": values[1:]}, dom)
    a, b = ms.Spend(), ms.Spend()
    a.measure(full, ("v",), 1e-9, np.random.default_rng(2))
    b.measure(less, ("v",), 1e-9, np.random.default_rng(2))
    diff = np.asarray(a.measurements[0].noisy_measurement) - np.asarray(
        b.measurements[0].noisy_measurement)
    assert np.linalg.norm(diff) == pytest.approx(1.0, abs=1e-6)
    noisy = ms.Spend()
    noisy.measure(full, ("v",), 3.0, np.random.default_rng(3))
    resid = np.asarray(noisy.measurements[0].noisy_measurement) - np.bincount(values,
                                                                              minlength=4000)
    assert resid.std() == pytest.approx(3.0, rel=0.05)
    assert noisy.rho == pytest.approx(1 / (2 * 9.0))


def test_zcdp_conversion_against_an_independent_minimisation():
    """delta(rho, eps) = min_alpha exp((alpha-1)(alpha rho - eps)) / alpha (1 - 1/alpha)^(alpha-1)
    (CKS20 Prop. 12), minimised here on a fine grid; and eps never exceeds Bun-Steinke's
    rho + 2 sqrt(rho ln(1/delta))."""
    for rho, eps in ((0.05, 1.0), (0.5, 3.0), (0.01, 0.5)):
        alpha = np.linspace(1.0001, 400, 2_000_000)
        with np.errstate(over="ignore"):
            grid = np.exp((alpha - 1) * (alpha * rho - eps) + (alpha - 1) * np.log1p(-1 / alpha)
                          - np.log(alpha))
        assert ms.cdp_delta(rho, eps) == pytest.approx(min(grid.min(), 1.0), rel=1e-3)
    rho = ms.cdp_rho(1.0, 1e-5)
    assert ms.cdp_delta(rho, 1.0) <= 1e-5
    assert ms.cdp_eps(rho, 1e-5) == pytest.approx(1.0, rel=1e-6)
    assert rho + 2 * math.sqrt(rho * math.log(1e5)) >= 1.0


def test_numbers_decode_inside_their_bins(mst_run):
    objective = genforge.load(mst_run).objective
    codes = torch.stack([torch.randint(0, k, (500,)) for k in objective.sizes.values()], 1)
    enc = objective.from_codes(codes)
    assert (torch.from_numpy(objective.to_codes(enc)) == codes).all()
    edges = objective.layout[0]
    assert edges == pytest.approx(np.linspace(0.0, 8.0, 9))  # model.bins=8 between 0 and 8
    raw = enc.num[:, 0].double().numpy() * objective.codec.std[0] + objective.codec.mean[0]
    k = codes[:, 0].numpy()
    assert ((raw >= k - 1e-9) & (raw <= k + 1 + 1e-9)).all()


def test_public_bin_edges_are_used(files, tmp_path):
    """A schema's own "bins" (a zero bin, then wider ones) replace the equal widths."""
    (tmp_path / "edges.yaml").write_text(SCHEMA.replace(
        "decimals: 3, missing: 0.0}", "decimals: 3, missing: 0.0, bins: [0, 1, 4, 8]}"))
    run = genforge.train(config(files, "mst", f"data.schema={tmp_path / 'edges.yaml'}"),
                         out=tmp_path / "run").run_dir
    objective = genforge.load(run).objective
    assert objective.sizes["n"] == 3
    codes = torch.stack([torch.randint(0, k, (300,)) for k in objective.sizes.values()], 1)
    raw = objective.from_codes(codes).num[:, 0].double().numpy() * objective.codec.std[0] + \
        objective.codec.mean[0]
    lo, hi = np.array([0, 1, 4])[codes[:, 0]], np.array([1, 4, 8])[codes[:, 0]]
    assert ((raw >= lo - 1e-9) & (raw <= hi + 1e-9)).all()


def test_sample_where_and_complete(mst_run):
    model = genforge.load(mst_run)
    rows = model.sample(300, seed=0, where={"a": "x"})
    assert len(rows) == 300 and (rows["a"] == "x").all()
    assert (rows["b"] == "p").mean() > 0.8  # the condition carries its dependence
    gaps = known_frame(50, seed=5)
    gaps.loc[:24, "b"] = None
    filled = model.complete_rows(gaps, seed=0)
    assert filled["b"].notna().all()
    assert (filled["a"] == gaps["a"]).all() and (filled.loc[25:, "b"] == gaps.loc[25:, "b"]).all()
    assert (filled.loc[:24, "b"] == np.where(gaps.loc[:24, "a"] == "x", "p", "q")).mean() > 0.7


def test_aim_fits_and_records_its_budget(files, tmp_path):
    run = genforge.train(config(files, "aim", "model.rounds=8", "model.max_model_size=1"),
                         out=tmp_path / "run").run_dir
    rec = json.loads((run / "run.json").read_text())["privacy"]
    meas = rec["items"][-1]
    assert meas["step"] == "measurement"
    assert meas["detail"]["rho"] == pytest.approx(meas["detail"]["rho_budget"], rel=1e-9)
    assert rec["epsilon"] == pytest.approx(20, rel=1e-6)
    assert len(genforge.load(run).sample(100, seed=0)) == 100


@pytest.mark.parametrize(("extra", "error", "message"), [
    (["privacy.delta=0.001"], ConfigError, "privacy.delta"),  # >= 1/n for 4000 rows
    (["model.workload=[a+nope]"], ConfigError, "'nope'"),
    (["model.max_domain=2"], ConfigError, "max_domain"),
    (["privacy.epsilon=null"], ConfigError, "privacy.epsilon"),
])
def test_marginal_runs_refuse_bad_settings(files, tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        genforge.train(config(files, "mst", *extra), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_epsilon_at_most_zero_is_refused(files):
    with pytest.raises(ConfigError, match="privacy.epsilon"):
        config(files, "mst", "privacy.epsilon=0")


def test_public_schema_whose_bounds_exclude_data_is_refused(files, tmp_path):
    (tmp_path / "narrow.yaml").write_text(SCHEMA.replace("max: 8.0", "max: 5.0"))
    cfg = config(files, "mst", f"data.schema={tmp_path / 'narrow.yaml'}")
    with pytest.raises(DataError, match="'n' max=5.0 excludes data"):
        genforge.train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_without_schema_a_zero_share_refuses_naming_the_step(files, tmp_path):
    cfg = load_config("tables", [f"data.path={files / 't.csv'}", "data.target=b",
                                 "model.kind=mst", "privacy.epsilon=1", "privacy.delta=1e-6",
                                 "privacy.preprocessing_share=0", *QUIET])
    with pytest.raises(ConfigError, match="schema step"):
        genforge.train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_dp_preprocessing_releases_bounds_and_categories(files):
    """Without a schema the bounds, categories and missing rates are DP releases paid from
    preprocessing_share of (epsilon, delta); the statistics come from them alone."""
    from genforge.modalities.tables.data import load_tables

    cfg = load_config("tables", [f"data.path={files / 't.csv'}", "data.target=b",
                                 "model.kind=mst", "privacy.epsilon=40", "privacy.delta=1e-6",
                                 "privacy.preprocessing_share=0.5", *QUIET])
    data = load_tables(cfg.data)
    data.privatise(cfg.privacy)
    cols = {c["name"]: c for c in data.schema["columns"]}
    assert cols["a"]["categories"] == ["x", "y", "z"] and cols["c"]["categories"] == ["u", "v"]
    assert 0 <= cols["n"]["min"] <= 0.2 and 7.5 <= cols["n"]["max"] <= 9.6  # quarter octaves
    assert sum(i["epsilon"] for i in data.privacy_items) == pytest.approx(20)
    assert sum(i["delta"] for i in data.privacy_items) == pytest.approx(0.5e-6)
    assert all(i["step"] == "preprocessing" for i in data.privacy_items)
    lo, hi = cols["n"]["min"], cols["n"]["max"]
    assert data.stats["numeric"][0]["mean"] == pytest.approx((lo + hi) / 2)
    assert data.stats["categorical"][0]["freq"] == pytest.approx([1 / 4] * 4)  # + missing


def test_a_served_marginal_run_generates_conditions_and_completes(mst_run):
    """The same routes as any table model: CSV rows, `where`, and completion of empty cells;
    its knobs are the tables' (where), and a bad condition is a 4xx naming the field."""
    import io

    from fastapi.testclient import TestClient

    from genforge.serve import create_app

    client = TestClient(create_app([mst_run]))
    (listing,) = client.get("/v1/models").json()["models"]
    assert (listing["family"], listing["modality"]) == ("tabular", "tables")
    assert "where" in {k["name"] for k in listing["knobs"]}
    model_id = listing["id"]
    resp = client.post("/v1/generate", json={"model": model_id, "n": 64, "seed": 1,
                                             "where": "a=x"})
    assert resp.status_code == 200, resp.text
    rows = pd.read_csv(io.StringIO(resp.text.split("\n", 1)[1]))  # past the provenance line
    assert len(rows) == 64 and (rows["a"] == "x").all()
    assert (rows["b"] == "p").mean() > 0.8  # the known dependence of b on a, as in sampling
    again = client.post("/v1/generate", json={"model": model_id, "n": 64, "seed": 1,
                                              "where": "a=x"})
    assert again.text.split("\n", 1)[1] == resp.text.split("\n", 1)[1]  # seeded
    gaps = known_frame(20, seed=7)
    gaps.loc[:9, "b"] = None
    filled = client.post("/v1/complete", json={"model": model_id, "seed": 0,
                                               "rows": gaps.to_csv(index=False)})
    assert filled.status_code == 200, filled.text
    done = pd.read_csv(io.StringIO(filled.text.split("\n", 1)[1]))
    assert done["b"].notna().all() and (done["a"] == gaps["a"]).all()
    bad = client.post("/v1/generate", json={"model": model_id, "n": 5, "where": "nope=1"})
    assert 400 <= bad.status_code < 500 and "nope" in bad.text
