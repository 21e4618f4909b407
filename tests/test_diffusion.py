"""The diffusion family beyond the shared contract: samplers, guidance, inpainting, export to
diffusers (parity with its pipelines), exact resume and the CLI, all on a tiny UNet."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
import torch
from test_resume import weights
from typer.testing import CliRunner

import genforge
from genforge.api import train
from genforge.config import ConfigError
from genforge.families.diffusion.inpaint import network_calls, repaint_levels
from genforge.modalities.images.masks import make_mask
from genforge.registry import FAMILIES, load_config

from conftest import tiny_config

INFO = {"kind": "images", "dataset": "mnist", "channels": 1, "image_size": 28,
        "num_classes": 10, "class_names": [str(i) for i in range(10)]}


def build(preset: str = "mnist-ddpm", *extra: str):
    torch.manual_seed(0)
    return FAMILIES["diffusion"].build(tiny_config(preset, *extra).model, INFO)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (unconditional with EMA, conditional) shared by the tests below."""
    base = tmp_path_factory.mktemp("runs")
    uncond = train(tiny_config("mnist-ddpm", "train.ema_decay=0.5"), out=base / "u").run_dir
    cond = train(tiny_config("mnist-ddpm-cond"), out=base / "c").run_dir
    return {"uncond": uncond, "cond": cond}


def test_samplers_are_seeded_and_leave_the_global_rng_alone():
    objective = build()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for options in ({"scheduler": "ddim", "steps": 4}, {"scheduler": "ddim", "steps": 4,
                    "eta": 1.0}, {"scheduler": "ddpm", "steps": 4}):
        x = objective.sample(3, seed=1, **options)
        assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
        assert torch.equal(x, objective.sample(3, seed=1, **options)), options
        assert not torch.equal(x, objective.sample(3, seed=2, **options)), options
    assert torch.equal(torch.rand(3), expected)
    # chunks of a batch give the images one batch gives
    whole = objective.sample(5, seed=1, steps=4)
    chunked = objective.sample(5, seed=1, steps=4, batch_size=2)  # kernels round per batch size
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-4)


def test_guidance_zero_is_the_unconditional_model_and_one_the_conditional():
    objective = build("mnist-ddpm-cond")
    a, b = torch.tensor([1, 2, 3]), torch.tensor([7, 7, 0])
    null = torch.full((3,), objective.null_class)
    w0 = objective.sample(3, seed=0, condition=a, guidance=0.0, steps=4)
    assert torch.equal(w0, objective.sample(3, seed=0, condition=b, guidance=0.0, steps=4))
    assert torch.equal(w0, objective.sample(3, seed=0, condition=null, guidance=1.0, steps=4))
    w1 = objective.sample(3, seed=0, condition=a, guidance=1.0, steps=4)
    assert not torch.equal(w0, w1)
    # w = 3 in one batch of both halves: eps(x) + 3 (eps(x, y) - eps(x))
    unet = objective.nets["unet"].eval()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor(500)
    with torch.inference_mode():
        guided = objective._denoiser(unet, a, 0, 8, 3.0)(x, t)
        cond, uncond = (unet(x, t, c, return_dict=False)[0] for c in (a, null))
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="class-conditional"):
        build().sample(2, seed=0, guidance=2.0)


def test_bf16_sampling_runs_under_autocast():
    objective = build()
    fp32 = objective.sample(2, seed=0, steps=3)
    bf16 = objective.sample(2, seed=0, steps=3, precision="bf16")
    assert torch.isfinite(bf16).all() and not torch.equal(fp32, bf16)
    with pytest.raises(ConfigError, match="precision"):
        objective.sample(2, seed=0, steps=3, precision="fp16")


def test_repaint_schedule():
    assert repaint_levels(6, 2, 1) == [5, 4, 3, 2, 1, 0, -1]  # resample 1: plain replacement
    levels = repaint_levels(10, 3, 3)
    assert levels[0] == 9 and levels[-1] == -1
    for a, b in pairwise(levels):
        assert b == a - 1 or b == a + 1  # one level down (a network call) or up (noise)
    assert network_calls(levels) == 10 + 3 * 2 * 3  # jump points 0, 3, 6; twice each; 3 up


@pytest.mark.parametrize("method", ["repaint", "replace"])
def test_inpainting_keeps_known_pixels_exactly(method):
    objective = build()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mask = make_mask("center", (3, 1, 28, 28))
    filled = objective.complete(x, mask, seed=0, method=method, steps=4)
    m = mask.expand_as(x)
    assert torch.equal(filled[~m], x[~m])
    assert not torch.equal(filled[m], x[m]) and filled.abs().max() <= 1
    assert torch.equal(filled, objective.complete(x, mask, seed=0, method=method, steps=4))


def test_export_loads_in_diffusers_and_gives_the_same_images(runs):
    from diffusers import DDIMPipeline, DDPMPipeline

    model_dir = runs["uncond"] / "model"
    assert (model_dir / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (model_dir / "scheduler" / "scheduler_config.json").exists()
    objective = genforge.load(runs["uncond"]).objective  # EMA weights, from model.safetensors
    for cls, options in ((DDIMPipeline, {"eta": 0.0}), (DDIMPipeline, {"eta": 1.0}),
                         (DDPMPipeline, {})):
        pipe = cls.from_pretrained(model_dir)
        pipe.set_progress_bar_config(disable=True)
        theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(7),
                      num_inference_steps=10, output_type="pt", **options).images  # [0, 1]
        ours = objective.sample(4, seed=7, scheduler=cls.__name__[:4].lower(), steps=10,
                                **options)
        assert ours.std() > 0.05 and (ours.abs() < 0.99).float().mean() > 0.1  # not saturated
        torch.testing.assert_close(ours * 0.5 + 0.5, theirs, rtol=0, atol=1e-4)
    # a conditional model: unet/ and scheduler/ in diffusers' format, no pipeline index
    cond_dir = runs["cond"] / "model"
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(cond_dir / "unet")
    assert unet.config.num_class_embeds == 11 and not (cond_dir / "model_index.json").exists()


def test_default_options_work_through_load(runs):
    model = genforge.load(runs["cond"])
    images = model.sample(4, seed=0, label=7)
    assert images.dtype == torch.uint8 and images.shape == (4, 1, 28, 28)
    assert genforge.load(runs["uncond"]).sample(2, seed=0).shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match="--top-k does not apply"):
        model.sample(2, top_k=3)


def test_cli_sample_and_complete(runs, tmp_path):
    from genforge.cli import app

    cli = CliRunner()
    out = tmp_path / "g.png"
    result = cli.invoke(app, ["sample", str(runs["cond"]), "--n", "4", "--scheduler", "ddim",
                              "--steps", "3", "--guidance", "3.0", "--label", "7", "--out",
                              str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists()
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", x=x)
    filled = tmp_path / "filled.npz"
    result = cli.invoke(app, ["complete", str(runs["uncond"]), "--input", str(tmp_path / "x.npz"),
                              "--mask", "center", "--steps", "4", "--out", str(filled)])
    assert result.exit_code == 0, result.output
    got = np.load(filled)["x"]
    known = ~make_mask("center", x.shape).numpy()
    assert np.array_equal(got[known], x[known])
    result = cli.invoke(app, ["sample", str(runs["uncond"]), "--scheduler", "ddpm", "--eta", "1"])
    assert result.exit_code == 2 and "--eta applies only to --scheduler ddim" in result.output


def test_stop_and_resume_equals_an_unbroken_run(tmp_path):
    extra = ["train.ema_decay=0.9", "train.max_steps=5", "log.sample_every=3",
             "log.checkpoint_every=4"]
    full = train(tiny_config("mnist-ddpm-cond", *extra), out=tmp_path / "full").run_dir
    part = train(tiny_config("mnist-ddpm-cond", *extra, "train.stop_after=2"),
                 out=tmp_path / "part").run_dir
    resumed = train(genforge.api.resume_config(part), resume=part).run_dir

    def losses(run):
        return [(r["step"], r["loss/unet"]) for r in
                map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]

    assert losses(resumed) == losses(full)
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for file in ("samples/step_000003.png", "model/unet/diffusion_pytorch_model.safetensors"):
        assert (resumed / file).read_bytes() == (full / file).read_bytes(), file


@pytest.mark.parametrize(("override", "message"), [
    ("model.channels=[12,24]", "multiple of model.norm_groups"),
    ("model.attention=[false]", "one per level"),
    ("model.guidance=3.0", "only to model.conditional=true"),
    ("model.sampling_steps=2000", "at most model.timesteps"),
    ("model.schedule=sigmoid", "allowed values are 'linear', 'cosine'"),
])
def test_config_errors_teach(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("mnist-ddpm", [override])


def test_image_size_must_fit_the_levels():
    cfg = load_config("mnist-ddpm", ["model.channels=[8,8,8,8]",
                                     "model.attention=[false,false,false,false]"])
    with pytest.raises(ConfigError, match="multiple of 8; they are 28 px"):
        FAMILIES["diffusion"].check_data(cfg, INFO)
