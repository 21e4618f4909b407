"""Faults during work (issue 16): a full disk, a file size limit, a crash or SIGKILL at any
point of a checkpoint write, SIGTERM while training. The run folder always stays loadable at
its last good checkpoint, the error is one line, and loading never unpickles user input."""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genforge.cli import app
from genforge.training import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
TINY = ["model.width=8", "model.latent_dim=8", "train.max_steps=2", "train.batch_size=8",
        "data.limit=64", "log.progress=false", "log.tensorboard=false", "log.sample_every=0",
        "log.checkpoint_every=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from genforge.api import train
    from genforge.registry import load_config

    return train(load_config("mnist-dcgan", TINY),
                 out=tmp_path_factory.mktemp("good") / "run").run_dir


def copy_of(run: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(run, tmp / "run"))


def one_error_line(result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        result.stdout + result.stderr
    return lines[0]


def assert_loadable(run: Path, step: int) -> None:
    """The model and the training state both at `step`, every file of it readable."""
    from genforge.api import load

    assert load(run).step == step
    folder = ckpt.state_dir(run)
    assert folder is not None
    model = load(run).objective
    trainer = ckpt.load_state(folder, rank=0, nets=model.nets, emas={}, optimizers={},
                              schedulers={})
    assert trainer["step"] == step
    assert not list(run.glob(".*.tmp")) and not (run / "state.new").exists()


# ------------------------------------------------------------------------------------------
# a crash at every point of a checkpoint write (in-process, exhaustive)


class Crash(BaseException):
    """The process dying: nothing after it runs (a BaseException passes every `except`)."""


def test_crash_at_every_point_of_a_checkpoint(tmp_path, monkeypatch):
    """Kill the writer at each file operation of save_state + save_model in turn (a file
    write dies half-way): the folder holds the old or the new checkpoint, whole."""
    from genforge.registry import load_config

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    cfg = load_config("mnist-dcgan", TINY)

    def checkpoint(run: Path, step: int) -> None:
        with torch.no_grad():
            net.weight.fill_(step)
        ckpt.save_state(run, rank=0, is_main=True, barrier=lambda: None, nets={"g": net},
                        emas={}, optimizers={"g": opt}, schedulers={},
                        trainer={"step": step})
        ckpt.save_model(run / ckpt.MODEL_FILE, {"g": net}, cfg, step, {"kind": "images"})

    rename = os.replace

    def dying(fn, counter, at):
        def wrapped(*args, **kwargs):
            counter[0] += 1
            if counter[0] == at:
                fn(*args, **kwargs)
                if fn is not rename:  # a write dies half-way through its file
                    target = Path(str(args[1]))
                    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
                raise Crash(f"killed at operation {at}")
            return fn(*args, **kwargs)
        return wrapped

    at, crashed = 1, True
    while crashed:
        run = tmp_path / f"run{at}"
        run.mkdir()
        checkpoint(run, 1)
        counter = [0]
        for name, fn in [("save_file", ckpt.save_file)]:
            monkeypatch.setattr(ckpt, name, dying(fn, counter, at))
        monkeypatch.setattr(ckpt.torch, "save", dying(torch.save, counter, at))
        monkeypatch.setattr(ckpt.os, "replace", dying(os.replace, counter, at))
        try:
            checkpoint(run, 2)
            crashed = False
        except Crash:
            pass
        monkeypatch.undo()
        folder = ckpt.state_dir(run)
        assert folder is not None, f"no complete state after a crash at operation {at}"
        probe = torch.nn.Linear(3, 2)
        trainer = ckpt.load_state(folder, rank=0, nets={"g": probe}, emas={},
                                  optimizers={"g": torch.optim.SGD(probe.parameters(), 0.1)},
                                  schedulers={})
        assert trainer["step"] in (1, 2) and torch.all(probe.weight == trainer["step"])
        tensors, meta = ckpt.read_model(run / ckpt.MODEL_FILE)
        assert meta["step"] in ("1", "2") and torch.all(tensors["g.weight"] == int(meta["step"]))
        at += 1
    assert at > 6  # every write and rename of both files was a crash point


# ------------------------------------------------------------------------------------------
# a full disk (ENOSPC) while writing a checkpoint or samples


def _full_disk(fn):
    def wrapped(*args, **kwargs):
        target = args[1] if len(args) > 1 else kwargs.get("filename", "?")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    return wrapped


def test_full_disk_while_checkpointing(run, tmp_path, monkeypatch):
    copy = copy_of(run, tmp_path)
    monkeypatch.setattr(ckpt, "save_file", _full_disk(ckpt.save_file))
    line = one_error_line(runner.invoke(app, ["train", "--resume", str(copy),
                                              "train.max_steps=3"]))
    assert "No space left on device" in line and "nets.safetensors" in line
    monkeypatch.undo()
    assert_loadable(copy, 2)


@pytest.mark.parametrize("out", ["x.png", "x.npz"])
def test_full_disk_while_writing_samples(run, tmp_path, monkeypatch, out):
    import numpy as np
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image.Image, "save", _full_disk(Image.Image.save))
    monkeypatch.setattr(np, "savez_compressed", _full_disk(np.savez_compressed))
    line = one_error_line(runner.invoke(app, ["sample", str(run), "--n", "4", "--out", out]))
    assert "No space left on device" in line
    assert list(tmp_path.iterdir()) == []  # no sample file, no temporary debris


# ------------------------------------------------------------------------------------------
# real processes: a file size limit, SIGTERM and SIGKILL while training


def _genforge(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-m", "genforge", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_file_size_limit_while_writing_samples(run, tmp_path):
    def limit() -> None:  # writes past 1 KiB fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    proc = _genforge("sample", str(run), "--n", "64", "--out", "x.npz", cwd=tmp_path,
                     preexec_fn=limit)
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and "File too large" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def _wait_for_step(run: Path, past: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            step = int(re.search(r'"step": (\d+)', (run / "state" / "trainer.json")
                                 .read_text()).group(1))
        except (OSError, AttributeError):
            step = 0
        if step > past:
            return step
        time.sleep(0.2)
    raise AssertionError("training made no progress")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_while_checkpointing_every_step(run, tmp_path, sig):
    """SIGTERM: a checkpoint at the step it stops, exit 143. SIGKILL at a random moment of a
    run that checkpoints every step: the folder still loads at its last whole checkpoint and
    resumes."""
    from genforge.api import resume_config, train

    copy = copy_of(run, tmp_path)
    proc = _genforge("train", "--resume", str(copy), "train.max_steps=100000",
                     "log.checkpoint_every=1", "log.every=1", cwd=tmp_path)
    _wait_for_step(copy, 2, proc)
    time.sleep(float(torch.rand(1)) * 0.5)  # somewhere inside a step or a checkpoint
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "stopped at step" in out, out + err
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    step = ckpt.load_state(ckpt.state_dir(copy), rank=0, nets={}, emas={}, optimizers={},
                           schedulers={})["step"]
    from genforge.api import load

    assert load(copy).step in (step, step - 1)  # the state is written before the model
    result = train(resume_config(copy, [f"train.max_steps={step + 1}"]), resume=copy)
    assert result.step == step + 1
