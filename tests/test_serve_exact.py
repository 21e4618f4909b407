"""Per-request noise: `GenerativeModel.sample_batch` runs several seeded requests as one forward
pass and each gets bit for bit what it gets alone, whoever shares the pass.

Preset-sized networks (as initialised: kernel choice depends on shapes, not trained values),
because tiny ones can hide the effect being guarded against: on this machine a DDPM UNet's
rows differ in the last bits between batch 64 and every smaller batch, and an MLP GAN's at
batch 1-3 (benchmarks/batch_exactness.py), so without fixed-shape chunks these tests fail."""

from __future__ import annotations

import functools

import pytest
import torch

import genforge
from genforge.api import EXACT_CHUNK, GenerativeModel
from genforge.errors import ConfigError
from genforge.registry import FAMILIES, get_modality
from genforge.runtime.noise import RowNoise, fixed_chunks

from conftest import REPO


def preset_model(preset: str, *overrides: str) -> GenerativeModel:
    cfg = genforge.load_config(preset, list(overrides))  # MNIST presets: the bundled copy
    info = get_modality(cfg.modality or FAMILIES[cfg.family].modalities[0]).load(
        cfg.data, REPO / "data").info()
    torch.manual_seed(0)
    objective = FAMILIES[cfg.family].build(cfg.model, info)
    for net in objective.nets.values():
        net.eval()
    return GenerativeModel(cfg, objective, info, 0, REPO)


def test_row_noise_is_each_requests_own_generator():
    one = RowNoise.single(7, 5)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(one.randn(3), torch.randn(5, 3, generator=g))  # today's draws exactly
    assert torch.equal(one.randint(10), torch.randint(0, 10, (5,), generator=g))
    both = RowNoise([(7, 5), (9, 2)])
    z, alone = both.randn(3), RowNoise.single(9, 2).randn(3)
    assert torch.equal(z[:5], RowNoise.single(7, 5).randn(3)) and torch.equal(z[5:], alone)


def test_fixed_chunks_runs_every_pass_at_one_shape():
    shapes = []

    def fn(x, y):
        shapes.append(tuple(x.shape))
        return x * 2 + (0 if y is None else y[:, None])

    x = torch.arange(22.0).reshape(11, 2)
    out = fixed_chunks(fn, [x, None], 4)
    assert shapes == [(4, 2)] * 3 and torch.equal(out, x * 2)


# (preset, overrides, sampling options): conv and MLP GANs, a conditional one, a VAE, DDPM/DDIM
MODELS = {
    "dcgan": ("mnist-dcgan", [], {}),
    "cdcgan": ("mnist-cdcgan", [], {}),
    "mlp-gan": ("mnist-gan", [], {}),
    "mlp-vae": ("mnist-vae", [], {}),
    "ddim": ("mnist-ddpm", [], {"steps": 2}),
    "ddpm-guided": ("mnist-ddpm-cond", [], {"scheduler": "ddpm", "steps": 2, "guidance": 2.0}),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_request_gets_the_same_images_merged_or_alone(name):
    preset, overrides, options = MODELS[name]
    model = preset_model(preset, *overrides)
    assert model.merges_requests
    me = {"n": 3, "seed": 11, **options}
    alone = model.sample_batch([me])[0]
    assert alone.dtype == torch.uint8 and alone.shape[0] == 3
    floats = _floats(model, [me], options)  # before uint8 rounding, which hides most flips
    for total, at in ((4, 0), (9, 2), (23, 5), (64, 61)):
        company = [{"n": 1, "seed": 100 + i, **options} for i in range(total - 3)]
        reqs = [*company[:at], me, *company[at:]]
        got = model.sample_batch(reqs)
        assert torch.equal(got[at], alone), (name, total, at)
        assert not torch.equal(got[0 if at else 1][0], alone[0])  # others get their own rows
        assert torch.equal(_floats(model, reqs, options)[at : at + 3], floats), (name, total)


@pytest.mark.parametrize("name", ["ddim", "ddpm-guided"])
def test_requests_joining_a_running_chain_get_their_lone_images(name):
    """Continuous batching: b joins a's 4-step reverse chain after 2 steps, c joins b's after
    a has left; each gets bit for bit what it gets alone."""
    preset, overrides, options = MODELS[name]
    options = {**options, "steps": 4}
    model = preset_model(preset, *overrides)
    a, b, c = {"n": 3, "seed": 11}, {"n": 6, "seed": 12}, {"n": 1, "seed": 13}
    if name == "ddpm-guided":
        b["label"] = [0, 1, 2, 3, 4, 5]  # given labels next to drawn ones
    session, got = model.session(options), {}

    def steps(k: int) -> None:
        for _ in range(k):
            got.update(session.step())

    session.add(1, a)
    steps(2)
    session.add(2, b)
    steps(2)
    assert set(got) == {1} and session.rows == 6  # a is done, b half way
    session.add(3, c)
    steps(2)
    assert set(got) == {1, 2}
    steps(2)
    assert not session.rows
    for ticket, req in ((1, a), (2, b), (3, c)):
        assert torch.equal(got[ticket], model.sample_batch([{**req, **options}])[0]), ticket


def test_a_request_removed_mid_chain_leaves_the_others_exact():
    preset, overrides, options = MODELS["ddim"]
    options = {**options, "steps": 4}
    model = preset_model(preset, *overrides)
    a, b = {"n": 2, "seed": 21}, {"n": 5, "seed": 22}
    session, got = model.session(options), {}
    session.add(1, a)
    session.add(2, b)
    got.update(session.step())
    session.remove(2)  # its caller gave up: its rows leave the chain
    assert session.rows == 2
    while session.rows:
        got.update(session.step())
    assert set(got) == {1}
    assert torch.equal(got[1], model.sample_batch([{**a, **options}])[0])


def test_a_gan_session_runs_what_waits_in_one_pass():
    model = preset_model("mnist-cdcgan")
    session = model.session()
    session.add(1, {"n": 2, "seed": 1})
    session.add(2, {"n": 3, "seed": 2})
    got = dict(session.step())
    assert not session.rows
    for ticket, req in ((1, {"n": 2, "seed": 1}), (2, {"n": 3, "seed": 2})):
        assert torch.equal(got[ticket], model.sample_batch([req])[0])
    with pytest.raises(ConfigError, match="label 10"):
        session.add(3, {"n": 1, "seed": 3, "label": 10})  # refused alone, at the door


def _floats(model: GenerativeModel, reqs: list[dict], options: dict) -> torch.Tensor:
    """The family's float output for requests merged as sample_batch merges them."""
    noise = RowNoise([(r["seed"], r["n"]) for r in reqs])
    return model.objective.sample(noise.n, seed=0, noise=noise, pad_to=EXACT_CHUNK, **options)


def test_labels_merge_and_unlabelled_requests_draw_their_own():
    model = preset_model("mnist-cdcgan")
    a, b = {"n": 2, "seed": 1, "label": 3}, {"n": 3, "seed": 2, "label": [0, 1, 2]}
    c = {"n": 2, "seed": 3}  # no label: drawn from its own generator, in a separate pass
    together = model.sample_batch([a, c, b])
    for req, got in zip([a, c, b], together, strict=True):
        assert torch.equal(got, model.sample_batch([req])[0])
    assert not torch.equal(together[0], model.sample_batch([{**a, "label": 4}])[0])


def test_requests_with_other_knobs_run_in_separate_passes(monkeypatch):
    model = preset_model("mnist-ddpm")
    calls = []
    real = model.objective.sample

    @functools.wraps(real)  # its signature: the API checks options against it
    def counting(n, **kw):
        calls.append((n, kw.get("steps")))
        return real(n, **kw)

    monkeypatch.setattr(model.objective, "sample", counting)
    reqs = [{"n": 1, "seed": 1, "steps": 2}, {"n": 2, "seed": 2, "steps": 3},
            {"n": 1, "seed": 3, "steps": 2}]
    together = model.sample_batch(reqs)
    assert sorted(calls) == [(1 + 1, 2), (2, 3)]  # steps=2 merged, steps=3 alone
    calls.clear()
    for req, got in zip(reqs, together, strict=True):
        assert torch.equal(got, model.sample_batch([req])[0])


def test_bad_requests_are_refused_naming_the_field():
    model = preset_model("mnist-dcgan")
    with pytest.raises(ConfigError, match="n=0"):
        model.sample_batch([{"n": 0, "seed": 1}])
    with pytest.raises(ConfigError, match="--steps does not apply"):
        model.sample_batch([{"n": 1, "seed": 1, "steps": 3}])
    with pytest.raises(ConfigError, match="chunk=0"):
        model.sample_batch([{"n": 1, "seed": 1}], chunk=0)
