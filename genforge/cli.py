"""The genforge command line: thin adapters over the Python API.

    genforge list
    genforge train mnist-dcgan train.max_steps=500 --out runs/dcgan1
    genforge train --resume runs/dcgan1
    genforge sample runs/dcgan1 --n 64 --seed 0 --out grid.png
    genforge complete runs/vae1 --input digits.npz --mask bottom-half --out filled.png
    genforge validate configs/mnist-dcgan.yaml
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from genforge.config import ConfigError
from genforge.data.errors import DataError
from genforge.eval.command import eval_command
from genforge.families.ar.command import convert_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, sample, complete and evaluate generative models.")

EXPECTED_ERRORS = (ConfigError, DataError, FileExistsError, FileNotFoundError)


def _fail(err: Exception) -> None:
    """One line naming what is wrong, on stderr, and exit code 2."""
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


@app.command("list")
def list_cmd(data_root: Annotated[str | None, typer.Option(help="Extra data root.")] = None):
    """Families, presets and the data sets found on this machine."""
    from genforge.config import read_yaml
    from genforge.data import data_roots
    from genforge.data.sources import SOURCES
    from genforge.registry import FAMILIES, PRESET_DIR, PRESETS

    typer.echo("families:")
    for spec in FAMILIES.values():
        typer.echo(f"  {spec.name:<8} {spec.description}")
    typer.echo("presets:")
    for name, file in PRESETS.items():
        raw = read_yaml(PRESET_DIR / file)
        model = raw.get("model", {})
        what = f"{raw['family']}/{model.get('arch', '')}"
        typer.echo(f"  {name:<16} {what:<18} {raw.get('data', {}).get('dataset', 'mnist')}")
    typer.echo("data sets (roots: " + ", ".join(map(str, data_roots(data_root))) + "):")
    for name, source in SOURCES.items():
        found = [str(r / source.folder) for r in data_roots(data_root)
                 if (r / source.folder).is_dir() and any((r / source.folder).iterdir())]
        typer.echo(f"  {name:<14} {found[0] if found else 'missing (data.download=true fetches)'}")


@app.command()
def train(
    config: Annotated[str | None, typer.Argument(help="Preset name or YAML file.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/<preset>).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    data_root: Annotated[str | None, typer.Option(help="Where data sets live.")] = None,
    processes: Annotated[int, typer.Option(help="DDP processes on this machine.")] = 1,
):
    """Train a preset or YAML config; --resume continues a run to its train.max_steps."""
    if processes > 1 and "RANK" not in os.environ:
        raise typer.Exit(_launch_processes(processes))
    from genforge.api import resume_config
    from genforge.config import load_config
    from genforge.training.loop import train as run_training

    overrides = list(overrides or [])
    if config is not None and "=" in config:  # `train --resume RUN key=value`
        overrides.insert(0, config)
        config = None
    try:
        if resume:
            cfg = resume_config(resume, overrides)
            if config is not None and config != cfg.preset:
                raise ConfigError(f"--resume {resume} is a {cfg.preset!r} run, not {config!r}")
        elif config is None:
            raise ConfigError("train needs a preset or YAML file (see `genforge list`)")
        else:
            cfg = load_config(config, overrides)
        result = run_training(cfg, out=out, resume=resume, overwrite=overwrite,
                              data_root=data_root)
    except EXPECTED_ERRORS as err:
        _fail(err)
    where = result.run_dir
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under DDP the main process reports
    if result.stopped:
        typer.echo(f"stopped at step {result.step} ({result.stopped}); continue with: "
                   f"genforge train --resume {where}")
        if result.stopped in ("SIGINT", "SIGTERM"):
            raise typer.Exit(128 + signal.Signals[result.stopped].value)
    else:
        typer.echo(f"done: {result.step} steps; run folder {where}")
    typer.echo(f"samples: {where / 'samples'}   weights: {where / 'model.safetensors'}")


@app.command()
def sample(
    run: Annotated[str, typer.Argument(help="Run folder.")],
    n: Annotated[int | None, typer.Option(help="Number of samples (64; text: 1).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    label: Annotated[int | None, typer.Option(help="Class label (conditional models).")] = None,
    out: Annotated[str | None, typer.Option(help="A .png grid or an .npz; text: .txt, .jsonl "
                   "or - (the default: the terminal).")] = None,
    nrow: Annotated[int | None, typer.Option(help="Images per grid row.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    # family-specific options: passed on only when given, refused where they do not apply
    scheduler: Annotated[str | None, typer.Option(help="Diffusion: ddpm or ddim.")] = None,
    steps: Annotated[int | None, typer.Option(help="Diffusion: sampling steps.")] = None,
    eta: Annotated[float | None, typer.Option(help="Diffusion: DDIM eta.")] = None,
    guidance: Annotated[float | None, typer.Option(help="Diffusion: guidance scale.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Text: the prompt.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Text: tokens to add.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Text: temperature.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Text: top-k.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Text: nucleus top-p.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="Text: penalty.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Text: stop string(s).")] = None,
    stream: Annotated[bool, typer.Option(help="Text: print tokens as they come.")] = False,
    horizon: Annotated[int | None, typer.Option(help="Series: steps ahead.")] = None,
):
    """Draw samples from a trained run (images, text or series paths) into --out."""
    from genforge.api import load

    given = {"scheduler": scheduler, "steps": steps, "eta": eta, "guidance": guidance,
             "prompt": prompt, "max_new_tokens": max_new_tokens, "temperature": temperature,
             "top_k": top_k, "top_p": top_p, "repetition_penalty": repetition_penalty,
             "stop": stop or None, "horizon": horizon, "stream": stream or None}
    options = {k: v for k, v in given.items() if v is not None}
    try:
        model = load(run, device=device)
        out = out or getattr(model.objective, "default_out", "samples.png")
        n = n if n is not None else getattr(model.objective, "default_n", 64)
        samples = model.sample(n, seed=seed, label=label, **options)
        model.write_samples(samples, Path(out), nrow=nrow)
    except EXPECTED_ERRORS as err:
        _fail(err)
    if out != "-":
        typer.echo(f"wrote {n} samples to {out}")


@app.command()
def complete(
    run: Annotated[str, typer.Argument(help="Run folder.")],
    input: Annotated[str, typer.Option(help=".npz/.npy/.png images, or DATASET:SPLIT.")],
    mask: Annotated[str, typer.Option(help="bottom-half, top-half, left-half, right-half, "
                                           "center, random:P, or a mask file.")] = "bottom-half",
    out: Annotated[str, typer.Option(help="A .png grid or an .npz.")] = "filled.png",
    n: Annotated[int, typer.Option(help="Images to take from DATASET:SPLIT.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    method: Annotated[str | None, typer.Option(
        help="VAE: optimize or iterate; diffusion: repaint or replace.")] = None,
    steps: Annotated[int | None, typer.Option(
        help="VAE: iterations; diffusion: noise levels.")] = None,
    jump: Annotated[int | None, typer.Option(help="Diffusion repaint: levels per jump.")] = None,
    resample: Annotated[int | None, typer.Option(
        help="Diffusion repaint: resampling rounds per jump.")] = None,
    show_input: Annotated[bool, typer.Option(help="Rows of original, masked, filled.")] = False,
):
    """Fill in the masked pixels of images: a VAE optimises or iterates its latent, a diffusion
    model keeps the known pixels at every noise level (RePaint resampling by default)."""
    from genforge.api import load

    try:
        model = load(run)
        images, labels = _read_input(input, n)
        given = {"method": method, "steps": steps, "jump": jump, "resample": resample}
        options = {k: v for k, v in given.items() if v is not None}
        label = labels if model.num_classes and labels is not None else None
        filled = model.complete(images, mask, seed=seed, label=label, **options)
        if show_input:
            filled = _compare(images, filled, mask, seed)
        model.write_samples(filled, Path(out), nrow=images.shape[0] if show_input else None)
    except EXPECTED_ERRORS as err:
        _fail(err)
    typer.echo(f"wrote {len(images)} completed images to {out}")


@app.command()
def validate(config: Annotated[str, typer.Argument(help="Preset name or YAML file.")],
             overrides: Annotated[list[str] | None, typer.Argument()] = None):
    """Check a config (types, allowed values, combinations) without building a model."""
    from genforge.config import load_config

    try:
        cfg = load_config(config, list(overrides or []))
    except EXPECTED_ERRORS as err:
        _fail(err)
    typer.echo(f"ok: {config} ({cfg.family}, {cfg.data.dataset}, {cfg.train.max_steps} steps)")


def _launch_processes(n: int) -> int:
    """Run this same command in n processes with torch's launcher (gloo on CPU, NCCL on GPUs);
    what `accelerate launch --multi_gpu --num_processes n -m genforge ...` does too."""
    import socket
    import subprocess

    args, skip = [], False
    for arg in sys.argv[1:]:  # the command line, less --processes
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            args.append(arg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
           "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "genforge", *args]
    return subprocess.call(cmd)


def _read_input(spec: str, n: int):
    import numpy as np

    from genforge.api import read_images

    if not Path(spec).exists() and ":" in spec and "/" not in spec:
        from genforge.config import DataConfig
        from genforge.data import load_images

        dataset, split = spec.split(":", 1)
        data = load_images(DataConfig(dataset=dataset, split=split, limit=n))
        return data.images.numpy(), None if data.labels is None else data.labels.numpy()
    images, labels = read_images(spec)
    return np.ascontiguousarray(images[:n]), None if labels is None else labels[:n]


def _compare(images, filled, mask: str, seed: int):
    """Stack original, masked (missing pixels grey) and filled images for a side-by-side grid."""
    import torch

    from genforge.data.masks import make_mask

    x = torch.as_tensor(images)
    m = make_mask(mask, tuple(x.shape), seed=seed).expand_as(x)
    return torch.cat([x, torch.where(m, torch.full_like(x, 128), x), filled])


app.command("eval")(eval_command)
app.command("convert")(convert_command)


def main() -> None:
    app(prog_name="genforge")


if __name__ == "__main__":
    sys.exit(main())
