"""The shared loop end to end on tiny runs: artifacts, loading, EMA, bf16, accumulation."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import genforge
from genforge.api import train
from genforge.registry import build_run_config
from genforge.training.checkpoint import RunExistsError, RunStateError

from conftest import tiny_config


def test_run_folder_has_every_artifact(tmp_path):
    cfg = tiny_config("mnist-dcgan", "log.tensorboard=true")
    result = train(cfg, out=tmp_path / "run")
    run = result.run_dir
    assert result.step == 4 and result.stopped is None
    for name in ("config.yaml", "model.safetensors", "metrics.jsonl", "run.json",
                 "state/nets.safetensors", "state/optim.pt", "state/trainer.json",
                 "state/rng_rank0.pt", "samples/step_000002.png", "samples/step_000004.png"):
        assert (run / name).exists(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert not list(run.glob("state.*")) and not list(run.glob(".*.tmp"))
    # the resolved config is complete and rebuilds the same config
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert build_run_config(saved, source="saved") == cfg
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert {"loss/d", "loss/g", "lr", "images_per_s"} <= set(lines[0])
    record = json.loads((run / "run.json").read_text())
    assert record["torch"] == torch.__version__ and record["seed"] == 0


def test_load_rebuilds_from_the_folder_alone(tmp_path):
    run = train(tiny_config("mnist-cdcgan"), out=tmp_path / "run").run_dir
    model = genforge.load(run)
    images = model.sample(10, seed=1, label=3)
    assert images.dtype == torch.uint8 and images.shape == (10, 1, 28, 28)
    assert torch.equal(images, genforge.load(str(run / "model.safetensors")).sample(
        10, seed=1, label=3))
    assert not torch.equal(images, model.sample(10, seed=1, label=4))
    with pytest.raises(genforge.config.ConfigError, match="allowed are 0..9"):
        model.sample(2, label=12)


def test_existing_runs_are_never_overwritten(tmp_path):
    cfg = tiny_config("mnist-vae")
    out = tmp_path / "run"
    train(cfg, out=out)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="--overwrite"):
        train(cfg, out=out)
    assert (out / "model.safetensors").read_bytes() == before
    train(tiny_config("mnist-vae", "train.seed=1"), out=out, overwrite=True)
    assert (out / "model.safetensors").read_bytes() != before


def test_default_run_names_count_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config("mnist-vae", "train.max_steps=1")
    assert train(cfg).run_dir.name == "mnist-vae"
    assert train(cfg).run_dir.name == "mnist-vae-2"


def test_resume_without_checkpoint_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(RunStateError, match="no checkpoint"):
        train(tiny_config("mnist-vae"), resume=tmp_path / "run")


def test_ema_weights_are_what_is_saved(tmp_path):
    cfg = tiny_config("mnist-vae", "train.ema_decay=0.5", "train.max_steps=3")
    run = train(cfg, out=tmp_path / "run").run_dir
    saved = load_file(str(run / "model.safetensors"))
    live = load_file(str(run / "state" / "nets.safetensors"))
    ema = load_file(str(run / "state" / "ema.safetensors"))
    key = "vae.decoder.0.weight"
    assert torch.equal(saved[key], ema[key])
    assert not torch.equal(saved[key], live[key])


def test_bf16_trains_and_differs_from_fp32(tmp_path):
    fp32 = train(tiny_config("mnist-dcgan"), out=tmp_path / "a").run_dir
    bf16 = train(tiny_config("mnist-dcgan", "train.precision=bf16"), out=tmp_path / "b").run_dir
    read = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
            for r in (fp32, bf16)]
    for row32, row16 in zip(*read, strict=True):
        assert torch.isfinite(torch.tensor(row16["loss/d"]))
        assert row32["loss/d"] == pytest.approx(row16["loss/d"], rel=0.1)
    assert read[0][-1]["loss/d"] != read[1][-1]["loss/d"]  # autocast really ran in bf16
    assert genforge.load(bf16).sample(4).shape == (4, 1, 28, 28)


class ToyConfig:
    """A deterministic family (a linear autoencoder) to test the loop's own arithmetic."""

    def __init__(self, width: int = 8) -> None:
        self.width = width

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToyConfig) and other.width == self.width


class ToyObjective:
    sampling_nets = ("net",)
    capabilities = frozenset({"sample"})  # genforge.inference.sampler
    sample_keywords = ()

    def __init__(self, cfg: ToyConfig, info: dict) -> None:
        pixels = info["channels"] * info["image_size"] ** 2
        self.nets = {"net": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(pixels, 8),
                                                torch.nn.Linear(8, pixels))}
        self.num_classes = 0

    def configure_optimizers(self, t):
        return {"net": torch.optim.SGD(self.nets["net"].parameters(), lr=0.5)}

    def training_step(self, batch, step):
        loss = (self.nets["net"](batch.x) - batch.x.flatten(1)).pow(2).mean()
        step.update("net", loss)
        return {"loss": loss.detach()}

    def sample(self, n, *, seed, condition=None):
        return torch.zeros(n, 1, 28, 28)


@pytest.fixture
def toy_family(monkeypatch):
    from dataclasses import dataclass

    from genforge.registry import FamilySpec, families

    @dataclass
    class Toy:
        width: int = 8

    monkeypatch.setitem(families(), "toy", FamilySpec("toy", "test only", Toy,
                                                      f"{__name__}:ToyObjective", ("images",)))

    def make(*overrides):
        from genforge.config import apply_overrides
        from genforge.registry import build_run_config

        from conftest import TINY_LOOP

        raw = apply_overrides({"family": "toy"}, [*TINY_LOOP, *overrides])
        return build_run_config(raw, source="toy")

    return make


def test_accumulation_matches_one_big_batch(tmp_path, toy_family):
    """Two micro-batches of 8 give the update that one batch of 16 gives, clipping included."""
    base = ["train.max_steps=3", "train.lr_schedule=cosine", "train.grad_clip=0.5"]
    one = train(toy_family(*base), out=tmp_path / "one").run_dir
    two = train(toy_family(*base, "train.grad_accum=2"), out=tmp_path / "two").run_dir
    a = load_file(str(one / "state" / "nets.safetensors"))
    b = load_file(str(two / "state" / "nets.safetensors"))
    start = train(toy_family("train.max_steps=1", "train.lr=1e-12"), out=tmp_path / "s").run_dir
    s = load_file(str(start / "state" / "nets.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(a[key], s[key])  # the steps did move the weights


RECORDED = {  # tiny configs, seed 0, torch 2.13 on CPU: a change here is a change in behaviour
    "mnist-dcgan": [[1.301339, 0.700301], [1.272657, 0.675649], [1.28375, 0.660226],
                    [1.253904, 0.66029]],
    "mnist-vae": [[547.911804], [545.421509], [544.85376], [542.605347]],
}


@pytest.mark.parametrize("preset", list(RECORDED))
def test_recorded_loss_curves(tmp_path, preset):
    keys = ["loss/d", "loss/g"] if "gan" in preset else ["loss/vae"]
    run = train(tiny_config(preset), out=tmp_path / "r").run_dir
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    got = [row[k] for row in rows for k in keys]
    assert got == pytest.approx([v for pair in RECORDED[preset] for v in pair], rel=1e-4)
