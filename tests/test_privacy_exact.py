"""DP-SGD made exact: Poisson sampling, no by-category draws, CTGAN's conditions from a DP
release, nothing noise-free in the logs or the report, and one itemised budget whose total is
checked against an RDP computation made here."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch
from test_tables import TINY, toy_frame, toy_public_schema

import genforge
from genforge.data.batches import poisson_indices
from genforge.errors import ConfigError
from genforge.modalities.images.data import BatchStream
from genforge.modalities.tables.data import load_tables
from genforge.registry import load_config
from genforge.training import privacy as dp

CTGAN_DP = ["model.kind=ctgan", "model.pac=1", "model.gp_weight=0"]


@pytest.fixture(scope="module")
def toy_csv(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("exact")
    toy_frame().to_csv(folder / "toy.csv", index=False)
    toy_public_schema(folder)
    return str(folder / "toy.csv")


def table_config(csv: str, *extra: str):
    """A toy table with its public schema: these tests are about DP-SGD, so preprocessing
    spends nothing (tests/test_marginal.py covers the DP-released schema)."""
    schema = Path(csv).with_name("toy.schema.yaml")
    return load_config("tables", [f"data.path={csv}", "data.target=income",
                                  f"data.schema={schema}", *TINY, *extra])


@pytest.fixture(scope="module")
def ctgan_run(toy_csv, tmp_path_factory):
    cfg = table_config(toy_csv, *CTGAN_DP, "privacy.epsilon=3", "privacy.delta=1e-4",
                       "train.grad_clip=1.0")
    return genforge.train(cfg, out=tmp_path_factory.mktemp("ctgan") / "run").run_dir


def privacy_of(run) -> dict:
    return json.loads((run / "run.json").read_text())["privacy"]


# --- 1. Poisson sampling --------------------------------------------------------------------


class _Images:
    """The part of ImageData a BatchStream reads: n one-pixel images, numbered."""

    def __init__(self, n: int) -> None:
        self.images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
        self.labels = torch.arange(n)

    def __len__(self) -> int:
        return len(self.labels)


def test_dp_batches_are_poisson_samples_with_binomial_sizes(toy_csv):
    """Each record joins each step independently with probability q: the batch size is
    Binomial(n, q) (mean n q, variance n q (1 - q)) and each record is in a share q of the
    steps; the table stream and the image stream draw it, and a resumed stream draws the same."""
    steps, q = 4000, 1 / 6
    data = load_tables(table_config(toy_csv).data)  # 240 rows (the preset holds 20 % out)
    tables = data.stream(batch_size=40, seed=3, sample_rate=q)
    images = BatchStream(_Images(300), batch_size=50, seed=3, sample_rate=q)
    for stream, n in ((tables, len(data)), (images, 300)):
        sizes, seen = [], torch.zeros(n)
        for _ in range(steps):
            (batch,) = stream.next(1)
            index = batch.y if stream is images else None
            sizes.append(len(batch.x))
            if index is not None:
                assert len(set(index.tolist())) == len(index)  # without replacement
                seen[index] += 1
        sizes = torch.tensor(sizes, dtype=torch.float64)
        mean, var = n * q, n * q * (1 - q)  # images: 50, 41.67
        assert abs(sizes.mean() - mean) < 5 * math.sqrt(var / steps)  # 5 standard errors
        assert abs(sizes.var() - var) < 5 * var * math.sqrt(2 / (steps - 1))
        if stream is images:  # every record at rate q, none favoured
            assert abs(seen.mean() / steps - q) < 1e-3 and (seen / steps - q).abs().max() < 0.03
    again = data.stream(batch_size=40, seed=3, sample_rate=q)
    again.load_state_dict({"epoch": 0, "position": steps - 1})
    tables.load_state_dict({"epoch": 0, "position": steps - 1})
    assert torch.equal(again.next(1)[0].x, tables.next(1)[0].x)


def test_text_and_series_windows_are_poisson_sampled_too():
    """Their record is a window: each window start joins a step with probability q."""
    import numpy as np

    from genforge.modalities.series.data import SeriesStream
    from genforge.modalities.text.data import TextStream

    q, steps = 0.05, 2000
    text = TextStream(np.arange(1000), 8, batch_size=50, seed=1, sample_rate=q)
    series = SeriesStream(np.arange(500.0)[:, None], 3, 5, 0, batch_size=25, seed=1,
                          sample_rate=q)
    for stream, n in ((text, 1000 - 8), (series, 500 - 8 + 1)):
        sizes = []
        for _ in range(steps):
            (batch,) = stream.next(1)
            x = batch.x.reshape(len(batch.x), -1).double()
            assert (x.diff(dim=1) == 1).all()  # whole windows of consecutive steps
            sizes.append(len(x))
        sizes = torch.tensor(sizes, dtype=torch.float64)
        assert abs(sizes.mean() - n * q) < 5 * math.sqrt(n * q * (1 - q) / steps)


def test_an_empty_poisson_batch_still_takes_a_noisy_counted_step(toy_csv, tmp_path):
    """q = 1/300: some steps draw no row; the private net then steps on its noise alone."""
    empty = [len(poisson_indices(300, 1 / 300, seed=0, step=s)) == 0 for s in range(6)]
    assert any(empty) and not all(empty)  # the seed gives both kinds of step
    cfg = table_config(toy_csv, "model.kind=tvae", "train.batch_size=1", "train.max_steps=6",
                       "privacy.noise_multiplier=1.0", "privacy.delta=1e-4")
    run = genforge.train(cfg, out=tmp_path / "run").run_dir
    assert privacy_of(run)["private_steps"] == 6
    assert len(genforge.load(run).sample(5, seed=0)) == 5


# --- 2. by-category sampling refused ---------------------------------------------------------


def test_by_category_sampling_is_refused_under_dp_in_one_line(toy_csv, tmp_path):
    with pytest.raises(ConfigError, match="data.sampling=by-category") as err:
        cfg = table_config(toy_csv, *CTGAN_DP, "data.sampling=by-category",
                           "privacy.epsilon=3", "privacy.delta=1e-4")
        genforge.train(cfg, out=tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


# --- 3. CTGAN: conditions never from real rows -----------------------------------------------


class _Step:
    """A StepContext that only lends the frozen critic: no update is made."""

    def __init__(self, nets: dict) -> None:
        self.nets = nets

    def update(self, name: str, loss: torch.Tensor) -> None:
        pass

    @contextlib.contextmanager
    def frozen(self, name: str):
        yield self.nets[name]


def test_a_dp_ctgan_generator_never_sees_a_real_rows_category(toy_csv, monkeypatch):
    """Under DP the generator's condition vectors and its cross-entropy targets are the same
    whatever categories the real batch holds (they come from the released counts); and the
    released frequencies are not the exact ones."""
    from genforge.families.tabular.build import build_objective

    cfg = table_config(toy_csv, *CTGAN_DP, "privacy.epsilon=3", "privacy.delta=1e-4")
    data = load_tables(cfg.data)
    objective = build_objective(cfg.model, data.info())
    dp.start(cfg.privacy, objective, data, batch_size=50, max_steps=3, seed=0)
    objective.configure_optimizers(cfg.train)
    exact = [torch.tensor(s["freq"]) for s in data.info()["stats"]["categorical"]]
    assert objective.private and any(not torch.allclose(a.double(), b.double(), atol=1e-3)
                                     for a, b in zip(objective.freq, exact, strict=True))

    seen: list[tuple[str, torch.Tensor]] = []
    generator = objective.nets["generator"]
    forward = generator.forward
    monkeypatch.setattr(generator, "forward",
                        lambda z, c: (seen.append(("c", c.clone())), forward(z, c))[1])
    cross_entropy = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda x, t, **kw: (seen.append(("target", t.clone())),
                                            cross_entropy(x, t, **kw))[1])
    (batch,) = data.stream(batch_size=50, seed=0, sample_rate=50 / 300).next(1)
    other = type(batch)(batch.x, (batch.y + 1) % torch.tensor(objective.cards))  # new codes
    runs = []
    for b in (batch, other):
        seen.clear()
        torch.manual_seed(7)
        objective.training_step(b, _Step(objective.nets))
        runs.append(list(seen))
    assert len(runs[0]) == len(runs[1]) > 1 and any(k == "target" for k, _ in runs[0])
    for (k0, v0), (k1, v1) in zip(*runs, strict=True):
        assert k0 == k1 and torch.equal(v0, v1), k0
    assert runs[0][0][1].shape[0] == 50  # train.batch_size fakes, not the Poisson batch's count


# --- 4. nothing noise-free in the logs or the report -----------------------------------------


def test_a_dp_run_logs_no_loss_or_gradient_norm(ctgan_run):
    rows = [json.loads(x) for x in (ctgan_run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(set(r) <= {"step", "lr", "images_per_s", "privacy/epsilon"}
                        for r in rows), rows[0]
    assert any("grad_clip=1.0 is not applied" in a for a in privacy_of(ctgan_run)["assumptions"])


def test_a_dp_report_shows_no_training_images_or_loss_curves(ctgan_run, tmp_path):
    """The image report's nearest-training panel and loss curves: shown for a plain run,
    replaced by a sentence for a DP run (render_html on the same result, two run folders)."""
    from genforge.eval.images.pipeline import EvalResult
    from genforge.eval.images.report import DP_NO_CLOSEST, DP_NO_CURVES, render_html

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "run.json").write_text("{}")
    (plain / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n')
    memo = {"flagged": False, "rate": 0.0, "real_rate": 0.0, "threshold": 1.0,
            "definition": "d", "closest": [{"sample": 0, "train": 0}]}
    metrics = {"created": "now", "genforge": "x", "torch": "x",
               "protocol": {"fake": {"n": 2}, "real": {}, "train": {}, "seed": 0,
                            "params": {}},
               "features": {"domain": {"metrics": {"memorisation": memo}, "extractor": {},
                                       "protocol_hash": "0" * 16, "reference_cache": None}}}
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    shown = render_html(EvalResult(metrics, images, images, plain))
    assert "alt=closest" in shown and "alt='loss curves'" in shown
    hidden = render_html(EvalResult(metrics, images, images, ctgan_run))
    assert "alt=closest" not in hidden and "alt='loss curves'" not in hidden
    assert DP_NO_CLOSEST in hidden and DP_NO_CURVES in hidden


# --- 5. one budget, itemised ------------------------------------------------------------------


def independent_epsilon(items: list[dict], delta: float) -> float:
    """Hand-worked RDP: a Gaussian mechanism with noise multiplier z has RDP alpha / (2 z^2)
    at order alpha; the DP-SGD steps by Opacus' sampled-Gaussian RDP; summed over the
    mechanisms at each order, converted once (Opacus' conversion), at the same orders."""
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    orders = dp.RDP_ORDERS
    rdp = [0.0] * len(orders)
    for item in items:
        if item["step"].startswith("condition release"):
            z = item["noise_multiplier"]
            rdp = [r + a / (2 * z * z) for r, a in zip(rdp, orders, strict=True)]
        elif item["step"] == "training (DP-SGD)":
            sgd = compute_rdp(q=item["sample_rate"], noise_multiplier=item["noise_multiplier"],
                              steps=item["steps"], orders=orders)
            rdp = [r + s for r, s in zip(rdp, sgd, strict=True)]
    return float(get_privacy_spent(orders=orders, rdp=rdp, delta=delta)[0])


def test_the_itemised_total_is_one_rdp_composition(ctgan_run):
    rec = privacy_of(ctgan_run)
    steps = [i["step"] for i in rec["items"]]
    assert steps == ["condition release (CTGAN)", "training (DP-SGD)"]
    for item in rec["items"]:
        assert {"step", "mechanism", "epsilon", "delta", "detail"} <= set(item)
    expected = independent_epsilon(rec["items"], 1e-4)
    assert rec["total"]["epsilon"] == pytest.approx(expected, abs=1e-6)
    assert rec["epsilon"] == rec["total"]["epsilon"] and 3 - 0.02 <= expected <= 3
    alone = sum(i["epsilon"] for i in rec["items"])
    assert expected < alone  # composed in RDP: less than the items' sum
    release = rec["items"][0]  # its share: 0.1 of epsilon when alone
    assert release["epsilon"] == pytest.approx(0.3, abs=0.011)
    assert any(a.startswith("Poisson sampling at rate q = 0.2083") for a in rec["assumptions"])


def test_preprocessing_items_are_paid_first_and_added(toy_csv, tmp_path):
    """Without a public schema the schema step is a set of DP releases (the data's
    privacy_items, privacy.preprocessing_share of the budget): their (epsilon, delta) come off
    the target, the Gaussian mechanisms get the rest, and the total adds them back."""
    cfg = load_config("tables", [f"data.path={toy_csv}", "data.target=income", *TINY,
                                 "model.kind=tvae", "privacy.epsilon=2", "privacy.delta=1e-4",
                                 "privacy.preprocessing_share=0.1"])
    rec = privacy_of(genforge.train(cfg, out=tmp_path / "run").run_dir)
    pre = [i for i in rec["items"] if i["step"] == "preprocessing"]
    rest = [i for i in rec["items"] if i["step"] != "preprocessing"]
    assert pre and all(i["composition"] == "basic" for i in pre)
    assert rec["items"][:len(pre)] == pre  # paid first
    pre_eps, pre_delta = sum(i["epsilon"] for i in pre), sum(i["delta"] for i in pre)
    assert pre_eps == pytest.approx(0.1 * 2, rel=1e-6)
    gaussian = independent_epsilon(rest, 1e-4 - pre_delta)
    assert rec["total"]["epsilon"] == pytest.approx(pre_eps + gaussian, abs=1e-6)
    assert 2 - 0.02 <= rec["total"]["epsilon"] <= 2
    assert rest[0]["delta"] == pytest.approx(1e-4 - pre_delta)


def test_eval_and_train_lines_state_total_assumptions_and_items(ctgan_run, tmp_path):
    from genforge.eval.privacy import add_privacy

    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "report.html").write_text("<html><body></body></html>")
    lines = add_privacy(ctgan_run, {"metrics": tmp_path / "metrics.json",
                                    "report": tmp_path / "report.html"})
    rec = privacy_of(ctgan_run)
    assert lines[0].startswith(f"privacy: (epsilon {rec['epsilon']:.3g}, delta 0.0001)-DP "
                               "in total") and "assuming: Poisson sampling" in lines[0]
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["condition release (CTGAN)",
                                                              "training (DP-SGD)"]
    saved = json.loads((tmp_path / "metrics.json").read_text())["privacy"]
    assert saved["items"] == rec["items"]
    page = (tmp_path / "report.html").read_text()
    assert "Where epsilon went" in page and "Assumptions" in page


def test_the_train_command_prints_the_total_with_its_assumptions(toy_csv, tmp_path):
    from typer.testing import CliRunner

    from genforge.cli import app

    args = ["train", "tables", f"data.path={toy_csv}", "data.target=income", *TINY,
            "model.kind=tvae", "privacy.epsilon=2", "privacy.delta=1e-4", "--out",
            str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("privacy: (epsilon"))
    rec = privacy_of(tmp_path / "run")
    assert f"(epsilon {rec['epsilon']:.3g}, delta 0.0001)-DP in total" in line
    assert "assuming: Poisson sampling at rate q = 0.2083" in line and "not privatised" in line
    assert "  training (DP-SGD): epsilon" in result.output


def test_a_resumed_dp_ctgan_run_keeps_its_one_release(toy_csv, tmp_path):
    """Resuming rebuilds the run: the release is made again from the same seeded noise, and
    the accountant counts it once, so the total equals an unbroken run's."""
    from genforge.api import resume_config

    args = [*CTGAN_DP, "privacy.epsilon=3", "privacy.delta=1e-4", "train.max_steps=4",
            "privacy.noise_seed=5"]  # replayable, so an unbroken run can be compared
    full = genforge.train(table_config(toy_csv, *args), out=tmp_path / "full").run_dir
    part = genforge.train(table_config(toy_csv, *args, "train.stop_after=2"),
                          out=tmp_path / "part").run_dir
    resumed = genforge.train(resume_config(part), resume=part).run_dir
    a, b = privacy_of(full), privacy_of(resumed)
    assert b["epsilon"] == pytest.approx(a["epsilon"], rel=1e-12) and b["private_steps"] == 4
    assert b["items"] == a["items"]
    freq = [genforge.load(r).data_info["condition_freq"] for r in (full, resumed)]
    assert freq[0] == freq[1]  # the model samples from the same released frequencies
    # with a secret seed (the default) the release made again on resume is the one made
    # before the interruption: the seed comes back from the checkpoint
    secret = genforge.train(table_config(toy_csv, *args[:-1], "train.stop_after=2"),
                            out=tmp_path / "secret").run_dir
    before = genforge.load(secret).data_info["condition_freq"]
    again = genforge.train(resume_config(secret), resume=secret).run_dir
    assert genforge.load(again).data_info["condition_freq"] == before != freq[0]
