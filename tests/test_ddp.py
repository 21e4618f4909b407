"""Multi-process DDP on CPU (gloo) through accelerate's launcher: 2 processes, one run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import torch

import genforge

from conftest import REPO, tiny


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    # `--multi_gpu` selects accelerate's torchrun launcher; with no GPU each process runs on
    # the CPU with the gloo backend (accelerate's `--cpu` flag starts a single process).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "genforge",
           *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_two_process_ddp_gan_and_vae(tmp_path):
    for preset, family in (("mnist-cdcgan", "gan"), ("mnist-vae", "vae")):
        out = tmp_path / preset
        done = launch(["train", preset, *tiny(family, "train.device=cpu", "train.grad_accum=2"),
                       "--out", str(out)], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("done: 4 steps") == 1  # the main process reports, once
        record = json.loads((out / "run.json").read_text())
        assert record["processes"] == 2
        assert record["replicas_in_sync"] is True  # gradients were averaged over processes
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2, 3, 4]
        assert all(torch.isfinite(torch.tensor(v)) for r in rows for v in r.values())
        assert genforge.load(out).sample(4, seed=0).shape == (4, 1, 28, 28)


def test_two_process_stop_and_resume(tmp_path):
    out = tmp_path / "run"
    first = launch(["train", "mnist-vae", *tiny("vae", "train.stop_after=2"), "--out", str(out)],
                   tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in (out / "state").glob("rng_rank*.pt")) == [
        "rng_rank0.pt", "rng_rank1.pt"]
    second = launch(["train", "--resume", str(out)], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((out / "state" / "trainer.json").read_text())["step"] == 4


def test_processes_option_launches_ddp_itself(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "genforge", "train", "mnist-vae",
                           *tiny("vae", "train.max_steps=2"), "--out", str(out),
                           "--processes", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["processes"] == 2 and record["replicas_in_sync"] is True
    assert "--processes" not in record["argv"]
