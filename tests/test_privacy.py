"""DP-SGD in the shared loop: budgets kept, impossible settings refused, resume, clipping."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genforge.api import load, resume_config, train
from genforge.config import PrivacyConfig
from genforge.errors import ConfigError
from genforge.registry import build_run_config, load_config
from genforge.training import privacy as dp

from conftest import tiny, tiny_config


def quick(preset: str, *extra: str):
    """A tiny config without intermediate sample grids (per-sample gradients are slow)."""
    return tiny_config(preset, "log.sample_every=0", *extra)


@pytest.fixture(scope="module")
def dp_vae(tmp_path_factory):
    return train(quick("mnist-vae", "privacy.epsilon=5"),
                 out=tmp_path_factory.mktemp("dp") / "vae").run_dir


def record(run) -> dict:
    return json.loads((run / "run.json").read_text())["privacy"]


def logged_epsilons(run) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["privacy/epsilon"] for r in rows if "privacy/epsilon" in r]


@pytest.mark.parametrize(("preset", "target", "private", "public"), [
    ("mnist-vae", 5.0, ["vae"], []),
    ("mnist-gan", 8.0, ["discriminator"], ["generator"]),
])
def test_a_private_run_spends_at_most_its_target(tmp_path, dp_vae, preset, target, private,
                                                 public):
    run = dp_vae if preset == "mnist-vae" else train(
        quick(preset, f"privacy.epsilon={target}"), out=tmp_path / "r").run_dir
    rec = record(run)
    # the noise multiplier is solved to 0.01 in epsilon: spent within [target - 0.02, target]
    assert target - 0.02 <= rec["epsilon"] <= target
    assert rec["private_nets"] == private and rec["public_nets"] == public
    assert rec["private_steps"] == 4 and rec["noise_multiplier"] > 0
    assert rec["delta"] == 1e-5 and rec["records"] == 128 and "Poisson" in rec["sampling"]
    eps = logged_epsilons(run)
    assert len(eps) == 4 and all(0 < a < b for a, b in itertools.pairwise(eps))
    assert eps[-1] == pytest.approx(rec["epsilon"])


def _textbook_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """min over integer orders a of T log(A_a) / (a - 1) + log((a - 1) / a)
    - (log delta + log a) / (a - 1), with A_a = sum_k C(a, k) (1 - q)^(a - k) q^k
    exp((k^2 - k) / (2 sigma^2))."""
    import math

    import numpy as np
    from scipy.special import comb, logsumexp

    best = math.inf
    for a in range(2, 64):
        k = np.arange(a + 1)
        log_a = logsumexp(np.log(comb(a, k)) + (a - k) * math.log1p(-q) + k * math.log(q)
                          + (k * k - k) / (2 * sigma**2))
        best = min(best, steps * log_a / (a - 1) + math.log((a - 1) / a)
                   - (math.log(delta) + math.log(a)) / (a - 1))
    return best


def test_a_gan_generator_learns_through_the_private_discriminator(tmp_path, monkeypatch):
    from genforge.training.contract import StepContext

    updated = []
    update = StepContext.update
    monkeypatch.setattr(StepContext, "update",
                        lambda self, name, loss: (updated.append(name), update(self, name,
                                                                                loss))[1])
    cfg = quick("mnist-cdcgan", "privacy.noise_multiplier=1.0", "privacy.fix_modules=true")
    run = train(cfg, out=tmp_path / "r").run_dir
    assert updated.count("generator") == 4  # the generator step ran through the hooked D
    rec = record(run)
    assert rec["epsilon_target"] is None  # sigma given: epsilon only reported
    # the reported epsilon by the textbook: the sampled Gaussian's RDP at integer orders
    # (Mironov, Talwar & Zhang 2019, sec. 3.3) converted at delta (Balle et al. 2020), for
    # sigma 1, q = batch / records and one private step per training step. Opacus also
    # tries fractional orders, so its value lies at most ~2 % below the integer orders' best
    q, steps = rec["batch_size"] / rec["records"], cfg.train.max_steps
    assert (rec["noise_multiplier"], rec["sample_rate"], rec["private_steps"]) == (1.0, q, steps)
    best = _textbook_epsilon(1.0, q, steps, rec["delta"])
    assert 0.98 * best <= rec["epsilon"] <= best
    assert rec["fixed_layers"]["discriminator"][0].endswith("(BatchNorm2d)")
    images = load(run).sample(4, seed=0)  # the generator (with its own BatchNorm) loads back
    assert images.shape[0] == 4


@pytest.mark.parametrize(("override", "message"), [
    ("privacy.epsilon=0", "privacy.epsilon=0.0: must be > 0"),
    ("privacy.epsilon=-1", "must be > 0"),
    ("privacy.delta=0", "privacy.delta=0.0: must be in (0, 1)"),
    ("privacy.delta=1.5", "must be in (0, 1)"),
    ("privacy.noise_multiplier=-0.5", "must be >= 0"),
    ("privacy.max_grad_norm=0", "must be > 0"),
    ("privacy.accountant=gauss", "allowed 'rdp', 'prv'"),
])
def test_impossible_settings_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("mnist-vae", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_epsilon_and_noise_multiplier_together_are_refused():
    with pytest.raises(ConfigError, match="set one of them"):
        load_config("mnist-vae", ["privacy.epsilon=1", "privacy.noise_multiplier=1"])


@pytest.mark.parametrize(("preset", "extra", "message"), [
    ("mnist-vae", ["privacy.delta=0.01"], r"privacy.delta=0.01: must be below 1 / records"),
    ("mnist-vae", ["privacy.epsilon=1e-6"], "unreachable"),
    ("mnist-vae", ["train.grad_accum=2"], "train.grad_accum=2 with privacy"),
    ("mnist-dcgan", [], r"layer 'body.3' \(BatchNorm2d\).*privacy.fix_modules=true"),
    ("mnist-wgan-gp", [], "model.loss=wgan-gp with privacy"),
    ("airline-series", [], r"'body.layers.0.self_attn' \(MultiheadAttention\)"),
])
def test_settings_that_cannot_be_trained_privately_are_refused(tmp_path, preset, extra,
                                                                 message):
    cfg = quick(preset, "privacy.epsilon=3", *extra)  # a later override wins
    with pytest.raises(ConfigError, match=message) as err:
        train(cfg, out=tmp_path / "r")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()  # refused before a run folder exists


def test_resume_continues_the_accountant_exactly(tmp_path):
    steps = ["privacy.epsilon=6", "train.max_steps=4", "privacy.noise_seed=11"]
    full = train(quick("mnist-vae", *steps), out=tmp_path / "full").run_dir
    part = train(quick("mnist-vae", *steps, "train.stop_after=2"), out=tmp_path / "part")
    spent_at_stop = record(part.run_dir)["epsilon"]
    resumed = train(resume_config(part.run_dir), resume=part.run_dir).run_dir
    assert 0 < spent_at_stop < record(resumed)["epsilon"]
    assert record(resumed)["epsilon"] == pytest.approx(record(full)["epsilon"], rel=1e-12)
    assert record(resumed)["private_steps"] == 4
    assert logged_epsilons(resumed) == pytest.approx(logged_epsilons(full), rel=1e-12)
    a = load_file(str(full / "state" / "nets.safetensors"))
    b = load_file(str(resumed / "state" / "nets.safetensors"))
    for key in a:  # the noise draws continue too: the same weights as an unbroken run
        assert torch.equal(a[key], b[key]), key
    # going on past the budget's max_steps would overspend: refused
    with pytest.raises(ConfigError, match="would spend epsilon"):
        train(resume_config(resumed, ["train.max_steps=8"]), resume=resumed)


class _Records:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def info(self) -> dict:
        return {"kind": "records"}

    def stream(self, *, batch_size: int, seed: int, sample_rate: float | None = None):
        raise NotImplementedError  # only its signature is read: it can draw Poisson samples


class _Objective:
    def __init__(self) -> None:
        self.nets = {"net": nn.Sequential(nn.Linear(5, 4), nn.ReLU(inplace=True),
                                          nn.Linear(4, 1))}
        self.sampling_nets = ("net",)


def test_per_sample_gradients_are_clipped_before_the_noise():
    torch.manual_seed(0)
    obj = _Objective()
    cfg = PrivacyConfig(noise_multiplier=0.0, max_grad_norm=0.01)
    private = dp.start(cfg, obj, _Records(100), batch_size=8, max_steps=10)
    net = obj.nets["net"]
    opt = private.wrap_optimizers({"net": torch.optim.SGD(net.parameters(), lr=1.0)})["net"]
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(8, 5) * 10
    loss = net(x).pow(2).mean()
    loss.backward()
    assert net[0].weight.grad_sample.shape == (8, 4, 5)  # one gradient per sample
    per_sample = torch.cat([p.grad_sample.flatten(1) for p in net.parameters()], 1)
    assert per_sample.norm(dim=1).min() > 10 * cfg.max_grad_norm  # far above the bound
    opt.step()
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before,
                                                                   strict=True)])
    # the update is the mean of clipped per-sample gradients: its norm is at most C
    assert 0 < moved.norm() <= cfg.max_grad_norm * (1 + 1e-5)
    assert private.steps == 1 and private.epsilon() == float("inf")  # sigma 0: no guarantee


def test_a_config_without_a_privacy_section_loads_with_privacy_off():
    raw = {"family": "vae", "model": {"hidden": 8}, "train": {"max_steps": 2}}
    assert not build_run_config(raw, source="old run").privacy.enabled
    assert not load_config("mnist-vae", tiny("vae")).privacy.enabled


def test_eval_states_the_guarantee(tmp_path, dp_vae):
    from genforge.eval.privacy import add_privacy

    run = dp_vae
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "report.html").write_text("<html><body><h1>x</h1></body></html>")
    lines = add_privacy(run, {"metrics": tmp_path / "metrics.json",
                              "report": tmp_path / "report.html"})
    spent = record(run)["epsilon"]
    # the total with its assumptions, then the one item (the DP-SGD steps)
    assert len(lines) == 2 and f"epsilon {spent:.3g}" in lines[0] and "assuming" in lines[0]
    assert lines[1].startswith("  training (DP-SGD): epsilon")
    assert json.loads((tmp_path / "metrics.json").read_text())["privacy"]["epsilon"] == spent
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Differential privacy</h2>" in page and page.index("privacy") < page.index(
        "</body>")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "run.json").write_text(json.dumps({"seed": 0}))  # a run without privacy
    assert add_privacy(plain, {"metrics": tmp_path / "metrics.json"}) == []


def test_a_secret_noise_seed_stays_in_the_checkpoint_and_a_resume_continues_it(tmp_path):
    steps = ["privacy.epsilon=6", "train.max_steps=4"]
    a = train(quick("mnist-vae", *steps), out=tmp_path / "a").run_dir
    b = train(quick("mnist-vae", *steps), out=tmp_path / "b").run_dir
    wa = load_file(str(a / "state" / "nets.safetensors"))
    wb = load_file(str(b / "state" / "nets.safetensors"))
    # the same train.seed, data and initial weights: only the secret noise tells them apart
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)
    seed = json.loads((a / "state" / "trainer.json").read_text())["privacy"]["noise_seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**42
    for file in ("run.json", "config.yaml", "metrics.jsonl", "model.safetensors"):
        assert str(seed).encode() not in (a / file).read_bytes(), file
    assert any("secure source" in line for line in record(a)["assumptions"])

    # interrupted at step 2 and resumed, a secret-seeded run draws what an unbroken run
    # seeded with the same number (privacy.noise_seed) draws
    part = train(quick("mnist-vae", *steps, "train.stop_after=2"), out=tmp_path / "part")
    secret = json.loads((part.run_dir / "state" / "trainer.json").read_text())["privacy"][
        "noise_seed"]
    resumed = train(resume_config(part.run_dir), resume=part.run_dir).run_dir
    replay = train(quick("mnist-vae", *steps, f"privacy.noise_seed={secret}"),
                   out=tmp_path / "replay").run_dir
    wr = load_file(str(resumed / "state" / "nets.safetensors"))
    wp = load_file(str(replay / "state" / "nets.safetensors"))
    for key in wr:
        assert torch.equal(wr[key], wp[key]), key
    assert any("privacy.noise_seed" in line for line in record(replay)["assumptions"])
