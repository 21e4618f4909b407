"""Tables: schema, bad input, the four synthesizers (contract, conditions, imputation),
metrics, chunked writing. A 300-row toy table with every column kind; tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import genforge
from genforge.errors import ConfigError, DataError
from genforge.modalities.tables.config import TablesDataConfig
from genforge.modalities.tables.data import load_tables, write_table
from genforge.modalities.tables.schema import infer_schema
from genforge.registry import load_config

KINDS = ("copula", "tvae", "ctgan", "tabddpm")
TINY = ["model.hidden=16", "model.layers=1", "model.latent_dim=8", "model.max_modes=3",
        "model.timesteps=8", "model.pac=5", "train.max_steps=3", "train.batch_size=50",
        "train.warmup_steps=0", "train.ema_decay=null", "log.progress=false",
        "log.tensorboard=false", "log.sample_every=0", "log.sample_n=10", "log.every=1"]


def toy_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Female", "Male"], n)
    income = np.where(rng.random(n) < 0.25 + 0.25 * (sex == "Male"), ">50K", "<=50K")
    score = np.round(rng.normal(50, 10, n), 2)
    score[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)], "age": rng.integers(18, 80, n),
        "score": score, "sex": sex,
        "opened": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "vip": rng.choice(["true", "false"], n),
        "city": rng.choice(["Bonn", "Köln", "Essen", None], n), "income": income})


def toy_public_schema(folder: Path) -> str:
    """A schema file for toy_frame, standing in for one its owner publishes: the kinds and
    categories the generator draws from, with the generator's own ranges as numeric bounds
    (age 18-80; score's normal clipped to 0-100), so DP runs need no DP preprocessing."""
    schema = infer_schema(toy_frame(), source="toy", target="income")
    for col in schema["columns"]:
        if col["name"] == "age":
            col["min"], col["max"] = 18, 80
        if col["name"] == "score":
            col["min"], col["max"] = 0.0, 100.0
    path = folder / "toy.schema.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tables") / "toy.csv"
    toy_frame().to_csv(path, index=False)
    return str(path)


class _Runs(dict):
    """One tiny trained run per synthesizer, trained when a test first asks for it."""

    def __init__(self, csv: str, factory) -> None:
        super().__init__()
        self.csv, self.factory = csv, factory

    def __missing__(self, kind: str):
        cfg = load_config("tables", [f"data.path={self.csv}", "data.target=income",
                                     f"model.kind={kind}", *TINY])
        self[kind] = genforge.train(cfg, out=self.factory.mktemp(kind) / "run").run_dir
        return self[kind]


@pytest.fixture(scope="module")
def runs(toy_csv, tmp_path_factory) -> dict:
    return _Runs(toy_csv, tmp_path_factory)


def test_schema_inferred_and_round_trips(toy_csv, tmp_path):
    data = load_tables(TablesDataConfig(path=toy_csv, target="income", test_split=0.2))
    kinds = {c["name"]: c["kind"] for c in data.schema["columns"]}
    assert kinds == {"customer_id": "id", "age": "int", "score": "float", "sex": "categorical",
                     "opened": "datetime", "vip": "boolean", "city": "categorical",
                     "income": "categorical"}
    score = next(c for c in data.schema["columns"] if c["name"] == "score")
    assert score["decimals"] == 2 and 0.05 < score["missing"] < 0.15
    # encoded and decoded back, every learned cell is as it was
    back = data.codec.decode(data.encoded)
    learned = [c for c, k in kinds.items() if k != "id"]
    pd.testing.assert_frame_equal(back[learned].astype(str), data.train_frame[learned].astype(str))
    # the schema is plain JSON, and a saved one replaces inference
    file = tmp_path / "schema.json"
    file.write_text(json.dumps(data.info()["schema"]))
    again = load_tables(TablesDataConfig(path=toy_csv, target="income", schema=str(file)))
    assert again.schema == data.schema
    overridden = load_tables(TablesDataConfig(path=toy_csv, columns=("age:categorical",
                                                                     "customer_id:drop")))
    kinds2 = {c["name"]: c["kind"] for c in overridden.schema["columns"]}
    assert kinds2["age"] == "categorical" and "customer_id" not in kinds2


def test_string_columns_are_parsed_like_object_columns():
    # pandas 3 reads CSV text (and Parquet strings) as its `str` dtype, pandas 2 as object:
    # the schema must not depend on which (pandas 3 once made every number a category)
    text = toy_frame().astype(str).where(toy_frame().notna())
    as_object = infer_schema(text.astype(object), source="t", target="income")
    for dtype in (pd.StringDtype(na_value=np.nan), pd.StringDtype()):
        assert infer_schema(text.astype(dtype), source="t", target="income") == as_object
    kinds = {c["name"]: c["kind"] for c in as_object["columns"]}
    assert kinds["age"] == "int" and kinds["score"] == "float" and kinds["vip"] == "boolean"


@pytest.mark.parametrize(("edit", "expect"), [
    (lambda f: f.iloc[:0], "empty"),
    (lambda f: f.assign(age=f["age"].astype(object).where(f.index != 41, "forty")),
     "column 'age' row 42: 'forty' is not a number"),
    (lambda f: f.assign(city=None), "column 'city' is empty"),
])
def test_bad_tables_get_one_line(tmp_path, edit, expect):
    path = tmp_path / "bad.csv"
    edit(toy_frame()).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_tables(TablesDataConfig(path=str(path), target="income"))
    message = str(err.value)
    assert expect in message and str(path) in message and "\n" not in message


def test_target_not_a_column(toy_csv):
    with pytest.raises(DataError, match="data.target='salary' is not a column"):
        load_tables(TablesDataConfig(path=toy_csv, target="salary"))


@pytest.mark.parametrize("kind", KINDS)
def test_synthesizer_contract_and_schema(runs, kind):
    model = genforge.load(runs[kind])
    assert (runs[kind] / "model.safetensors").exists() and model.modality == "tables"
    df = model.sample(40, seed=1)
    assert isinstance(df, pd.DataFrame) and len(df) == 40
    assert list(df.columns) == ["customer_id", "age", "score", "sex", "opened", "vip", "city",
                                "income"]
    assert df["age"].between(18, 79).all() and df["age"].dtype == np.int64
    assert set(df["sex"]) <= {"Female", "Male"} and set(df["vip"].dropna()) <= {True, False}
    assert df["customer_id"].is_unique
    assert (df["score"].dropna() == df["score"].dropna().round(2)).all()
    again = model.sample(40, seed=1)
    pd.testing.assert_frame_equal(df, again)  # a seed fixes the sample


@pytest.mark.parametrize("kind", KINDS)
def test_conditional_samples_obey(runs, kind):
    model = genforge.load(runs[kind])
    df = model.sample(30, seed=0, where={"sex": "Female", "income": ">50K"})
    assert len(df) == 30 and (df["sex"] == "Female").all() and (df["income"] == ">50K").all()
    ranged = model.sample(10, seed=0, where="age=30..50")
    assert ranged["age"].between(30, 50).all()
    with pytest.raises(ConfigError, match="not a category of 'sex'"):
        model.sample(5, where={"sex": "Other"})


@pytest.mark.parametrize("kind", KINDS)
def test_imputation_keeps_given_cells(runs, kind):
    model = genforge.load(runs[kind])
    rows = model.complete_rows(pd.DataFrame(toy_frame().iloc[:8]))  # parse by the schema
    given = rows.copy()
    given.loc[0:3, "age"] = np.nan
    given.loc[2:5, "sex"] = np.nan
    given.loc[4:7, "score"] = np.nan
    filled = model.complete_rows(given, seed=0)
    for col in ("age", "sex", "score"):
        assert filled[col].notna()[given[col].isna()].all(), col
    known = given.notna()
    for col in given.columns:
        assert filled[col][known[col]].tolist() == given[col][known[col]].tolist(), col


def test_metrics_of_a_table_against_itself(toy_csv):
    from genforge.eval.tables.evaluate import evaluate_tables, report_section

    data = load_tables(TablesDataConfig(path=toy_csv, target="income", test_split=0.3))
    train, test = data.train_frame, data.test_frame
    same = evaluate_tables(train, test, train, data.schema, protected="sex")
    assert same["fidelity"]["quality"] == pytest.approx(1.0)
    assert abs(same["fidelity"]["detection_auc"] - 0.5) < 0.1
    assert same["privacy"]["exact_copy_rate"] == 1.0
    assert same["privacy"]["dcr_synthetic"]["median"] == 0.0
    shuffled = pd.DataFrame({c: train[c].sample(frac=1, random_state=i).to_numpy()
                             for i, c in enumerate(train.columns)})
    other = evaluate_tables(train, test, shuffled, data.schema)
    assert other["fidelity"]["column_shapes"] == pytest.approx(1.0)  # marginals kept
    assert other["fidelity"]["column_pairs"] < 0.99  # the pairs are broken
    assert "<table>" in report_section(same)


def test_copying_flag_marks_a_table_closer_to_training_than_the_holdout(toy_csv):
    """The flag is set when the synthetic rows lie nearer the training rows than real unseen
    rows do (here: the training rows themselves, DCR 0) and not for rows far from both (every
    number moved past the training range: each row's DCR >= 1, the holdout's far below)."""
    from genforge.eval.tables.evaluate import evaluate_tables, report_section

    data = load_tables(TablesDataConfig(path=toy_csv, target="income", test_split=0.3))
    train, test = data.train_frame, data.test_frame
    copied = evaluate_tables(train, test, train.copy(), data.schema)["privacy"]
    far_rows = train.copy()
    for col in ("age", "score"):
        far_rows[col] = far_rows[col] + 3 * (train[col].max() - train[col].min())
    far = evaluate_tables(train, test, far_rows, data.schema)
    assert copied["dcr_holdout"]["median"] > 0 and copied["copies_training"] is True
    assert far["privacy"]["dcr_synthetic"]["median"] > far["privacy"]["dcr_holdout"]["median"]
    assert far["privacy"]["copies_training"] is False
    assert "Copies its training rows" in report_section({**far, "privacy": copied})
    assert "Copies its training rows" not in report_section(far)


def test_chunked_writing_is_memory_bounded(runs, tmp_path, monkeypatch):
    """Memory is bounded by the chunk: the model is asked for at most `chunk` rows at a time
    (what torch allocates scales with that, not with n), and the writer lets go of each
    chunk before the next is made (counted with weak references)."""
    import weakref

    model = genforge.load(runs["copula"])
    asked = []  # rows of each call into the synthesizer
    generate = model.objective._generate
    monkeypatch.setattr(model.objective, "_generate",
                        lambda m, *a, **k: asked.append(m) or generate(m, *a, **k))

    def watched(chunks, alive_at_each):
        held = []  # weak references to the chunks handed to the writer so far
        for frame in chunks:
            alive_at_each.append(sum(ref() is not None for ref in held))
            held.append(weakref.ref(frame))
            yield frame
            del frame

    for name, n in (("20000.parquet", 20000), ("s.csv", 9000)):
        asked.clear()
        alive: list[int] = []
        path = model.write(watched(model.sample_chunks(n, seed=0, chunk=2000), alive),
                           tmp_path / name, provenance={"seed": 0})
        assert asked == [2000] * (n // 2000) + ([n % 2000] if n % 2000 else []), asked
        # when a chunk is made, at most the one before it is still referenced (the writer's
        # loop variable); keeping them all would hold 1, 2, 3, ... chunks
        assert len(alive) == len(asked) and max(alive) <= 1, alive
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        assert len(frame) == n
    import pyarrow.parquet as pq

    meta = pq.read_schema(tmp_path / "20000.parquet").metadata
    assert json.loads(meta[b"genforge.provenance"])["seed"] == 0
    csv = write_table(model.sample(10), tmp_path / "t.csv", provenance={"seed": 0})
    assert (tmp_path / "t.csv.provenance.json").exists() and len(pd.read_csv(csv)) == 10


def test_cli_sample_where_and_complete(runs, tmp_path):
    from typer.testing import CliRunner

    from genforge.cli import app

    runner = CliRunner()
    out = tmp_path / "cond.csv"
    result = runner.invoke(app, ["sample", str(runs["tabddpm"]), "--n", "20", "--where",
                                 "sex=Female,income=>50K", "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert len(df) == 20 and (df["sex"] == "Female").all() and (df["income"] == ">50K").all()
    gaps = toy_frame().iloc[:5].copy()
    gaps.loc[1, "city"] = None
    gaps.loc[2, "age"] = None
    gaps.to_csv(tmp_path / "gaps.csv", index=False)
    result = runner.invoke(app, ["complete", str(runs["copula"]), "--input",
                                 str(tmp_path / "gaps.csv"), "--out", str(tmp_path / "f.csv")])
    assert result.exit_code == 0, result.output
    filled = pd.read_csv(tmp_path / "f.csv")
    assert filled["age"].notna().all() and filled.loc[0, "age"] == gaps.loc[0, "age"]
    bad = runner.invoke(app, ["sample", str(runs["copula"]), "--where", "planet=Mars",
                              "--out", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 2 and "not a generated column" in bad.output
    assert not list(tmp_path.glob("*bad.csv*"))  # neither the file nor its temporary one


def _category_entropy(frame: pd.DataFrame) -> float:
    """Mean entropy (nats) of the categorical columns' value shares."""
    columns = ("sex", "city", "vip", "income")
    return float(np.mean([-(p * np.log(p)).sum() for p in
                          (frame[c].astype(str).value_counts(normalize=True) for c in columns)]))


def test_tabddpm_temperature_sharpens_the_categories_and_others_refuse_it(runs, tmp_path):
    """`temperature` divides TabDDPM's predicted category logits: 1 is the plain sampler,
    below 1 draws the likelier categories more often; other kinds refuse the option, and
    neither lists it among its knobs."""
    from typer.testing import CliRunner

    from genforge.cli import app

    model = genforge.load(runs["tabddpm"])
    assert "temperature" in [o.name for o in model.options()]
    plain = model.sample(600, seed=0)
    pd.testing.assert_frame_equal(model.sample(600, seed=0, temperature=1.0), plain)
    sharp = model.sample(600, seed=0, temperature=0.3)
    assert _category_entropy(sharp) < _category_entropy(plain) - 0.03  # 0.80 against 0.86
    with pytest.raises(ConfigError, match="--temperature=0: a tables model takes"):
        model.sample(5, seed=0, temperature=0)
    result = CliRunner().invoke(app, ["sample", str(runs["tabddpm"]), "--n", "30",
                                      "--temperature", "0.5", "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "t.csv")) == 30
    copula = genforge.load(runs["copula"])
    assert "temperature" not in [o.name for o in copula.options()]
    with pytest.raises(ConfigError, match="applies to the tables diffusion model"):
        copula.sample(5, seed=0, temperature=0.5)


def test_tabddpm_category_spans_match_per_column_ops():
    """The flat, all-columns-at-once multinomial ops equal the per-column ones."""
    import torch
    import torch.nn.functional as F

    from genforge.families.tabular.tabddpm import CategorySpans

    torch.manual_seed(0)
    cards = [3, 1, 5, 2]
    spans = CategorySpans(cards)
    logits = torch.randn(7, sum(cards)) * 30  # large: the per-column max must stabilise
    flat = spans.log_softmax(logits)
    starts = [0, 3, 4, 9, 11]
    for j in range(len(cards)):
        a, b = starts[j], starts[j + 1]
        assert torch.allclose(flat[:, a:b], F.log_softmax(logits[:, a:b], 1), atol=1e-5)
    p = spans.normalise(torch.rand(7, sum(cards)) + 0.1)
    for j in range(len(cards)):
        assert torch.allclose(p[:, starts[j]:starts[j + 1]].sum(1), torch.ones(7))
    codes = torch.tensor([[2, 0, 4, 1], [0, 0, 0, 0]])
    assert torch.equal(spans.codes(spans.onehot(codes)), codes)
    probs = spans.onehot(codes[:1]).repeat(4000, 1) * 0 + 1  # uniform per column
    probs[:, 0:3] = torch.tensor([0.7, 0.2, 0.1])
    drawn = spans.codes(spans.draw(spans.normalise(probs)))
    assert drawn.shape == (4000, 4) and (drawn[:, 1] == 0).all()
    freq = torch.bincount(drawn[:, 0], minlength=3) / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)
    assert (drawn[:, 2] < 5).all() and (drawn[:, 3] < 2).all()


@pytest.mark.parametrize("kind", ["tvae", "ctgan", "tabddpm", "tabddpm+target"])
def test_dp_table_runs_record_their_epsilon(toy_csv, tmp_path, kind):
    """DP-SGD on every neural synthesizer: the spent epsilon stays within the target, the
    privatised nets are the ones that see real rows, and the model still samples."""
    gan = ["model.pac=1", "model.gp_weight=0"] if kind == "ctgan" else []
    if kind == "tabddpm+target":  # the denoiser's class embedding is privatised too
        kind, gan = "tabddpm", ["model.condition_on_target=true"]
    schema = toy_public_schema(tmp_path)
    cfg = load_config("tables", [f"data.path={toy_csv}", "data.target=income",
                                 f"data.schema={schema}",
                                 f"model.kind={kind}", *TINY, "privacy.epsilon=4",
                                 "privacy.delta=1e-4", *gan])
    run = genforge.train(cfg, out=tmp_path / "run").run_dir
    rec = json.loads((run / "run.json").read_text())["privacy"]
    assert 4 - 0.02 <= rec["epsilon"] <= 4 and rec["delta"] == 1e-4
    assert rec["private_steps"] == 3 and rec["noise_multiplier"] > 0
    if kind == "ctgan":  # public only because its conditions come from a DP release
        assert rec["public_nets"] == ["generator"]  # (test_privacy_exact: never real rows)
        assert rec["items"][0]["step"] == "condition release (CTGAN)"
    else:
        assert rec["public_nets"] == []
    rows = genforge.load(run).sample(20, seed=0)
    assert len(rows) == 20 and set(rows["income"].dropna()) <= {"<=50K", ">50K"}


@pytest.mark.parametrize(("extra", "message"), [
    (["model.kind=tvae", "privacy.delta=0.01"], "delta"),  # >= 1/n for 300 rows
    (["model.kind=copula", "train.ema_decay=null"], "copula"),
    (["model.kind=ctgan", "model.pac=1"], "gp_weight"),
    (["model.kind=ctgan", "model.gp_weight=0"], "pac"),
])
def test_dp_table_runs_refuse_impossible_settings(toy_csv, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        cfg = load_config("tables", [f"data.path={toy_csv}", "data.target=income", *TINY,
                                     "privacy.epsilon=3", *extra])
        genforge.train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_eval_report_of_a_table_run(runs, toy_csv, tmp_path):
    """`genforge eval RUN` on tables: one page with sample rows, fidelity, utility, fairness
    for the protected column, privacy measures, and what the privacy story is."""
    from genforge.eval.images.pipeline import EvalOptions
    from genforge.eval.runs import evaluate_run

    lines, paths = evaluate_run(str(runs["tabddpm"]), EvalOptions(n=200, protected="sex"),
                                out=str(tmp_path / "plain"))
    page = paths["report"].read_text()
    for part in ("Sample rows", "Table fidelity", "Utility", "Fairness (sex)", "Privacy",
                 "No differential-privacy guarantee", "Training losses"):
        assert part in page, part
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["run"]["rows_sampled"] == 200 and metrics["fairness"]["protected"] == "sex"
    assert any(line.startswith("fairness (sex)") for line in lines)

    cfg = load_config("tables", [f"data.path={toy_csv}", "data.target=income",
                                 "data.protected=sex", "model.kind=tvae", *TINY,
                                 "privacy.epsilon=2"])
    dp_run = genforge.train(cfg, out=tmp_path / "dp").run_dir
    lines, paths = evaluate_run(str(dp_run), EvalOptions(n=200), out=str(tmp_path / "dp-eval"))
    page = paths["report"].read_text()
    # no public schema: the schema step was DP releases, and the report says so
    assert "Differential privacy" in page and "Preprocessing: " in page and "DP releases" in page
    assert "Not covered by the DP guarantee" not in page
    assert "alt='loss curves'" not in page and "Not shown: this run was trained with" in page
    assert "Fairness (sex)" in page  # from the run's data.protected
    assert any(line.startswith("privacy: (epsilon") for line in lines)


def test_a_protected_column_that_is_not_there_is_refused(toy_csv):
    cfg = load_config("tables", [f"data.path={toy_csv}", "data.target=income",
                                 "data.protected=gender", "model.kind=copula", *TINY,
                                 "train.ema_decay=null"])
    with pytest.raises(DataError, match="data.protected='gender' is not a column"):
        genforge.train(cfg, out=None)


def test_tabddpm_samples_common_conditions_freely_and_rejects(runs, monkeypatch):
    """Inpainting does not make the other columns follow the fixed ones, so a condition that
    enough free samples obey is met by rejection alone (no steered pass)."""
    model = genforge.load(runs["tabddpm"])
    objective = model.objective
    seen: list[dict] = []
    original = objective._generate
    monkeypatch.setattr(objective, "_generate",
                        lambda m, cond: seen.append(dict(cond)) or original(m, cond))
    rows = model.sample(30, seed=0, where="sex=Female")
    assert (rows["sex"] == "Female").all() and len(rows) == 30
    assert seen and all(cond == {} for cond in seen)


def test_tabddpm_steered_pass_with_resampling_holds_the_fixed_category(runs):
    """The rare-condition path: inpainting with RePaint rounds keeps the fixed cells."""
    model = genforge.load(runs["tabddpm"])
    objective = model.objective
    objective.cfg.resample = 3
    j = next(i for i, c in enumerate(objective.codec.categorical) if c["name"] == "sex")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        rows = objective._generate(40, {j: 1})
    assert rows.cat.shape[0] == 40 and (rows.cat[:, j] == 1).float().mean() >= 0.9


def test_tabddpm_told_the_target_draws_it_by_its_frequencies(toy_csv, tmp_path):
    """model.condition_on_target: the class is drawn from the training frequencies and the
    denoiser is told it; a where-condition on the target fixes it without RePaint rounds."""
    cfg = load_config("tables", [f"data.path={toy_csv}", "data.target=income",
                                 "model.kind=tabddpm", "model.condition_on_target=true", *TINY])
    model = genforge.load(genforge.train(cfg, out=tmp_path / "run").run_dir)
    objective = model.objective
    assert objective.nets["denoiser"].label.num_embeddings == 2
    j = objective.target
    freq = objective.info["stats"]["categorical"][j]["freq"]
    rows = model.sample(3000, seed=0)
    share = (rows["income"] == objective.codec.categorical[j]["categories"][1]).mean()
    assert abs(share - freq[1]) < 0.03

    calls: list[torch.Tensor] = []
    net = objective.nets["denoiser"]
    handle = net.register_forward_hook(lambda mod, args, out: calls.append(args[2].clone()))
    try:
        fixed = model.sample(40, seed=1, where="income=>50K")
    finally:
        handle.remove()
    assert (fixed["income"] == ">50K").all()
    assert len(calls) == objective.T  # one pass a step: the target is told, not inpainted
    code = objective.codec.categorical[j]["categories"].index(">50K")
    assert all((labels == code).all() for labels in calls)


@pytest.mark.parametrize("target, shown", [("age", "age"), ("null", "None")])
def test_tabddpm_condition_on_target_needs_a_categorical_target(toy_csv, tmp_path, target,
                                                                 shown):
    cfg = load_config("tables", [f"data.path={toy_csv}", f"data.target={target}",
                                 "model.kind=tabddpm", "model.condition_on_target=true", *TINY])
    with pytest.raises(ConfigError, match=f"data.target={shown} must name a categorical"):
        genforge.train(cfg, out=tmp_path / "run")
