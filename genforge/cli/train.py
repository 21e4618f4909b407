"""`genforge train`: a preset or YAML config into a run folder, or --resume one."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from genforge.cli.common import user_errors
from genforge.errors import ConfigError


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
    from genforge.api import train as run_training
    from genforge.registry import load_config

    overrides = list(overrides or [])
    if config is not None and "=" in config:  # `train --resume RUN key=value`
        overrides.insert(0, config)
        config = None
    with user_errors():
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
    from genforge.eval.privacy import item_lines, privacy_record, summary_line

    record = privacy_record(where)
    if record is not None:  # the (epsilon, delta) total, its assumptions, and its items
        for line in (summary_line(record), *item_lines(record)):
            typer.echo(line)


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
