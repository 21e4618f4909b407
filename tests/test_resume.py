"""Exact resume: a run stopped at step k and resumed equals one that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from genforge.api import resume_config, train
from genforge.config import ConfigError

from conftest import REPO, SHARED_DATA, tiny, tiny_config
from skips import skip_unless

LOSS_KEYS = ("loss/d", "loss/g", "loss/vae", "neg_elbo", "kl", "wasserstein", "loss/lm")


def losses(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], {k: r[k] for k in LOSS_KEYS if k in r}) for r in rows]


def weights(run):
    out = load_file(str(run / "state" / "nets.safetensors"))
    if (run / "state" / "ema.safetensors").exists():
        out.update({"ema." + k: v for k, v in
                    load_file(str(run / "state" / "ema.safetensors")).items()})
    out.update({"model." + k: v for k, v in
                load_file(str(run / "model.safetensors")).items()})
    return out


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        # batch norm, EMA, accumulation, a cosine schedule, clipping and two players
        ("mnist-dcgan", ["train.ema_decay=0.9", "train.grad_accum=2",
                         "train.lr_schedule=cosine", "train.warmup_steps=2",
                         "train.grad_clip=1.0"]),
        # critic steps: the generator updates every 2nd step; odd stop point
        ("mnist-wgan-gp", ["model.critic_steps=2", "log.every=2"]),
        ("mnist-cvae", ["train.ema_decay=0.5"]),
        # text: windows drawn per step, tied embeddings under EMA, dropout
        pytest.param("shakespeare-char", [f"data.root={SHARED_DATA}", "train.ema_decay=0.9",
                                          "train.grad_accum=2", "model.dropout=0.1"],
                     marks=skip_unless((SHARED_DATA / "text").is_dir(), "no-shared-data",
                                       f"{SHARED_DATA}/text")),
    ],
)
def test_stop_and_resume_equals_an_unbroken_run(tmp_path, preset, extra):
    steps = ["train.max_steps=7", "log.sample_every=3", "log.checkpoint_every=4"]
    full = train(tiny_config(preset, *extra, *steps), out=tmp_path / "full").run_dir

    stopped = train(tiny_config(preset, *extra, *steps, "train.stop_after=3"),
                    out=tmp_path / "part")
    assert stopped.stopped == "stop_after" and stopped.step == 3
    cfg = resume_config(stopped.run_dir)
    assert cfg.train.stop_after is None  # the stop does not stop the resumed run again
    resumed = train(cfg, resume=stopped.run_dir)
    assert resumed.step == 7 and resumed.stopped is None

    assert losses(resumed.run_dir) == losses(full)
    a, b = weights(full), weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    grid = next((full / "samples").glob("step_000006.*")).name  # .png, .txt, ...
    same_samples = (full / "samples" / grid).read_bytes()
    assert (resumed.run_dir / "samples" / grid).read_bytes() == same_samples
    record = json.loads((resumed.run_dir / "run.json").read_text())
    assert len(record["resumed"]) == 1


def test_resume_may_extend_max_steps_but_not_change_the_model(tmp_path):
    run = train(tiny_config("mnist-vae"), out=tmp_path / "r").run_dir
    cfg = resume_config(run, ["train.max_steps=6"])
    assert train(cfg, resume=run).step == 6
    with pytest.raises(ConfigError, match="a resume keeps the run's config"):
        resume_config(run, ["model.latent_dim=3"])


def test_sigterm_checkpoints_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "genforge", "train", "mnist-vae", *tiny("vae"),
            "train.max_steps=100000", "log.checkpoint_every=100000", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and
                                          metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped at step" in stdout and "--resume" in stdout
    trainer = json.loads((out / "state" / "trainer.json").read_text())
    assert trainer["step"] >= 3
    resumed = subprocess.run([sys.executable, "-m", "genforge", "train", "--resume", str(out),
                              f"train.max_steps={trainer['step'] + 2}"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((out / "state" / "trainer.json").read_text())
    assert final["step"] == trainer["step"] + 2


def test_a_time_budget_ends_the_run_with_a_checkpoint_that_resumes(tmp_path):
    # a budget of a few microseconds is spent by the first step: the loop stops there
    steps = ["train.max_steps=5", "log.checkpoint_every=100", "train.max_minutes=1e-7"]
    stopped = train(tiny_config("mnist-vae", *steps), out=tmp_path / "run")
    assert stopped.stopped == "max_minutes" and stopped.step == 1
    trainer = json.loads((stopped.run_dir / "state" / "trainer.json").read_text())
    assert trainer["step"] == 1
    assert list((stopped.run_dir / "samples").iterdir())  # the final grid, as a finished run
    resumed = train(resume_config(stopped.run_dir, ["train.max_minutes=null"]),
                    resume=stopped.run_dir)
    assert resumed.step == 5 and resumed.stopped is None


def test_a_time_budget_must_be_positive():
    with pytest.raises(ConfigError, match=r"train.max_minutes=0"):
        tiny_config("mnist-vae", "train.max_minutes=0")
