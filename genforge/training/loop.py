"""The one training loop, on accelerate. It knows the contract, never the family.

The API (genforge.api.train) reads the data and hands the loop the data and a function that
builds the family's objective from the data's facts; the loop never looks a family up.

    genforge.train(load_config("mnist-dcgan"))                   # new run in runs/mnist-dcgan
    genforge.train(cfg, resume="runs/dcgan1")                    # continue to train.max_steps
    accelerate launch --multi_gpu --num_processes 2 -m genforge train mnist-dcgan   # DDP
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from tqdm.auto import tqdm

from genforge.config import RunConfig, TrainConfig, save_config
from genforge.errors import ConfigError
from genforge.runtime.precision import choose_precision
from genforge.training import checkpoint as ckpt
from genforge.training.contract import Objective, StepContext, TrainingData
from genforge.training.ema import EMA
from genforge.training.metrics import MetricsLog


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    stopped: str | None  # None when train.max_steps was reached; else "stop_after" / a signal


def make_schedule(optimizer: torch.optim.Optimizer, t: TrainConfig):
    """Linear warm-up, then constant, cosine or linear decay to zero at max_steps."""

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
        if t.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if t.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _StopSignals:
    """Ctrl-C and SIGTERM ask the loop to stop after the current step, with a checkpoint."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg: RunConfig, *, data: TrainingData,
          build_objective: Callable[[dict[str, Any]], Objective],
          out: str | Path | None = None, resume: str | Path | None = None,
          overwrite: bool = False) -> TrainResult:
    """Train `cfg` on `data` into a run folder (new, or `resume`d); `build_objective(info)`
    makes the family's objective from `data.info()`. Returns where and how it ended."""
    t = cfg.train
    # accelerate keeps one process-wide state; a notebook or test may train many configs with
    # different precision or accumulation, so start each run from a fresh one. PartialState,
    # which holds the process group of a distributed launch, is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    on_cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
    precision, why = choose_precision(
        t.precision, "cpu" if on_cpu else "cuda",
        fp32_only="DP-SGD runs in fp32 only" if cfg.privacy.enabled else None)
    accelerator = Accelerator(
        cpu=on_cpu,
        mixed_precision="bf16" if precision == "bf16" else "no",
        gradient_accumulation_steps=t.grad_accum,
    )
    chosen = {"requested": t.precision, "chosen": precision, "reason": why}
    data_info = data.info()

    torch.manual_seed(t.seed)  # the same initial weights on every process
    objective = build_objective(data_info)
    noise_seed = None  # a DP run's noise, Poisson draws and releases: a secret seed
    if cfg.privacy.enabled:
        from genforge.training import privacy as dp

        noise_seed = dp.noise_seed(cfg.privacy, resume, t.seed)
    if hasattr(objective, "fit"):  # fitted from the whole table at once (AIM, MST): no steps
        return _fit_whole(cfg, objective, data, out, resume, overwrite, accelerator, chosen,
                          noise_seed)
    privacy = None
    if noise_seed is not None:  # DP-SGD: hooks on the nets that see real data, checked first
        privacy = dp.start(cfg.privacy, objective, data, batch_size=t.batch_size,
                           max_steps=t.max_steps, grad_accum=t.grad_accum,
                           processes=accelerator.num_processes, precision=precision,
                           seed=noise_seed, grad_clip=t.grad_clip)
    run_dir = _run_dir(cfg, out, resume, overwrite, accelerator, chosen)  # after every refusal
    optimizers = objective.configure_optimizers(t)
    if privacy is not None:
        optimizers = privacy.wrap_optimizers(optimizers)  # clip per sample, add noise, count
    schedulers = {k: make_schedule(opt, t) for k, opt in optimizers.items()}
    names = list(objective.nets)
    prepared = accelerator.prepare(*objective.nets.values(), *optimizers.values(),
                                   *schedulers.values())
    objective.nets.update(zip(names, prepared[: len(names)], strict=True))
    optimizers = dict(zip(optimizers, prepared[len(names) : len(names) + len(optimizers)],
                          strict=True))
    schedulers = dict(zip(schedulers, prepared[len(names) + len(optimizers) :], strict=True))
    bare = {k: accelerator.unwrap_model(v) for k, v in objective.nets.items()}
    emas = {k: EMA(bare[k], t.ema_decay, t.ema_start)
            for k in objective.sampling_nets if t.ema_decay is not None}

    world, rank = accelerator.num_processes, accelerator.process_index
    if t.batch_size % (world * t.grad_accum):
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by "
                         f"{world} processes x train.grad_accum={t.grad_accum}")
    trainer = None
    if resume is not None:  # read the whole checkpoint before the run folder is touched
        folder = ckpt.state_dir(run_dir)
        if folder is None:
            raise ckpt.RunStateError(f"{run_dir}: no checkpoint (state/) to resume from")
        trainer = ckpt.load_state(folder, rank=rank, nets=bare, emas=emas,
                                  optimizers=optimizers, schedulers=schedulers)
    poisson = {} if privacy is None else {"sample_rate": privacy.sample_rate}  # DP: Poisson
    draws = t.seed if noise_seed is None else noise_seed.value  # DP: the Poisson draws' seed
    stream = data.stream(batch_size=t.batch_size, seed=draws, rank=rank, world=world,
                         device=accelerator.device, **poisson)
    ctx = StepContext(accelerator, optimizers, schedulers, objective.nets, t.grad_clip,
                      privacy=privacy)
    log = MetricsLog(run_dir, enabled=accelerator.is_main_process,
                     tensorboard=cfg.log.tensorboard)

    step = 0
    if trainer is not None:
        step = trainer["step"]
        stream.load_state_dict(trainer["stream"])
        log.load_state_dict(trainer["log"])
        _resume_privacy(privacy, trainer, step, run_dir)
        if accelerator.is_main_process:
            _record_resume(run_dir, _provenance(cfg, accelerator, chosen))
            ckpt.truncate_metrics(run_dir / "metrics.jsonl", step)
    else:
        torch.manual_seed(draws + 7919 * rank)  # each process draws its own noise

    def checkpoint() -> None:
        trainer = {"step": step, "stream": stream.state_dict(), "log": log.state_dict()}
        if privacy is not None:
            trainer["privacy"] = privacy.state_dict()  # the accountant: spent budget so far
            if accelerator.is_main_process:
                _record(run_dir, "privacy", privacy.record())
        ckpt.save_state(run_dir, rank=rank, is_main=accelerator.is_main_process,
                        barrier=accelerator.wait_for_everyone, nets=bare, emas=emas,
                        optimizers=optimizers, schedulers=schedulers, trainer=trainer)
        if accelerator.is_main_process:
            with _sampling_weights(emas):
                sampling = {k: bare[k] for k in objective.sampling_nets}
                ckpt.save_model(run_dir / ckpt.MODEL_FILE, sampling, cfg, step, data_info)
                if hasattr(objective, "export"):  # e.g. a diffusers or transformers folder
                    objective.export(run_dir / "model")

    def sample_grid() -> None:
        n = cfg.log.sample_n
        if not accelerator.is_main_process or n == 0:
            return
        with _sampling_weights(emas), accelerator.autocast():
            samples = objective.sample(n, seed=t.seed, condition=data.preview_condition(n))
        data.write_samples(samples, run_dir / "samples" / f"step_{step:06d}")

    stopped = None
    bar = tqdm(total=t.max_steps, initial=step, disable=not (cfg.log.progress and
               accelerator.is_main_process), desc=run_dir.name, dynamic_ncols=True)
    with _StopSignals() as signals:
        tick, tick_step = time.perf_counter(), step
        deadline = None if t.max_minutes is None else tick + 60.0 * t.max_minutes
        while step < t.max_steps:
            ctx.step = step
            batches = stream.next(t.grad_accum)
            if privacy is not None and len(batches[0].x) == 0:
                ctx.noise_only()  # an empty Poisson batch: the private nets' noisy step
                batches = []
            for batch in batches:
                with accelerator.accumulate(*objective.nets.values()):
                    logged = objective.training_step(batch, ctx)
                if privacy is None:  # DP: losses of private records are not logged (no noise)
                    log.add(logged)
            step += 1
            for ema in emas.values():
                ema.update(step)
            bar.update(1)
            if step % cfg.log.every == 0 or step == t.max_steps:
                now = time.perf_counter()
                extra = {"lr": schedulers[next(iter(schedulers))].get_last_lr()[0],
                         "images_per_s": t.batch_size * (step - tick_step) / (now - tick),
                         **{f"grad_norm/{k}": float(v) for k, v in ctx.grad_norms.items()}}
                if privacy is not None:
                    extra["privacy/epsilon"] = privacy.epsilon()
                tick, tick_step = now, step
                row = log.write(step, extra)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()
                                 if k.startswith("loss")}, refresh=False)
            if cfg.log.sample_every and step % cfg.log.sample_every == 0:
                sample_grid()
            time_up = deadline is not None and time.perf_counter() >= deadline
            stopped = _should_stop(step, t.stop_after, signals.received or
                                   ("max_minutes" if time_up else None), accelerator)
            if stopped or step % cfg.log.checkpoint_every == 0 or step == t.max_steps:
                checkpoint()
            if stopped:
                break
    bar.close()
    if world > 1:
        _check_replicas(accelerator, bare, run_dir)
    if stopped in (None, "stop_after", "max_minutes"):
        sample_grid()
    log.close()
    # every process leaves together: a process that tears its gloo group down while another
    # still writes the final grid can abort at exit ("terminate called without an active
    # exception"), failing a finished run
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(run_dir, step, stopped)


def _fit_whole(cfg: RunConfig, objective: Any, data: TrainingData, out: str | Path | None,
               resume: str | Path | None, overwrite: bool, accelerator: Accelerator,
               chosen: dict, noise_seed: Any = None) -> TrainResult:
    """An objective with `fit(data, privacy, seed)` (its own DP mechanism, not DP-SGD) is
    fitted before the run folder exists, so any refusal leaves nothing behind; then the
    model file, the privacy record and one sample grid are written."""
    if resume is not None:
        raise ConfigError(f"{resume}: this model is fitted in one pass, there is nothing to "
                          "resume; train it again")
    if accelerator.num_processes > 1:
        raise ConfigError("this model is fitted in one pass on one process: drop --processes")
    t = cfg.train
    seed = t.seed if noise_seed is None else noise_seed.value
    record = objective.fit(data, cfg.privacy if cfg.privacy.enabled else None, seed)
    run_dir = _run_dir(cfg, out, None, overwrite, accelerator, chosen)
    if record is not None:
        if noise_seed is not None:
            record["assumptions"].append(noise_seed.assumption())
        _record(run_dir, "privacy", record)
    sampling = {k: objective.nets[k] for k in objective.sampling_nets}
    ckpt.save_model(run_dir / ckpt.MODEL_FILE, sampling, cfg, 0, objective.info)
    if cfg.log.sample_n:
        samples = objective.sample(cfg.log.sample_n, seed=t.seed)
        data.write_samples(samples, run_dir / "samples" / "step_000000")
    return TrainResult(run_dir, 0, None)


def _resume_privacy(privacy: Any, trainer: dict, step: int, run_dir: Path) -> None:
    """The accountant continues where the checkpoint left it; privacy cannot change mid-run."""
    saved = trainer.get("privacy")
    if (privacy is None) != (saved is None):
        now, then = ("on", "off") if saved is None else ("off", "on")
        raise ConfigError(f"{run_dir}: privacy is {now} but the run trained with it {then}; "
                          "a DP guarantee must cover every step, so resume with the run's "
                          "privacy section")
    if privacy is not None:
        privacy.load_state_dict(saved, step=step)


def _record(run_dir: Path, key: str, value: Any) -> None:
    """Set one entry of run.json (main process only)."""
    path = run_dir / "run.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record[key] = value
    path.write_text(json.dumps(record, indent=1))


def _should_stop(step: int, stop_after: int | None, received: str | None,
                 accelerator: Accelerator) -> str | None:
    if stop_after is not None and step >= stop_after:
        return "stop_after"
    if accelerator.num_processes > 1:  # every process must agree to stop at the same step
        flag = torch.tensor([1.0 if received else 0.0], device=accelerator.device)
        if accelerator.reduce(flag, reduction="sum").item() > 0:
            return received or "signal from another process"
        return None
    return received


def _check_replicas(accelerator: Accelerator, nets: dict, run_dir: Path) -> None:
    """DDP keeps one model on every process; record that the replicas still agree."""
    total = torch.stack([sum(p.double().sum() for p in net.parameters())
                         for net in nets.values()]).to(accelerator.device)
    gathered = accelerator.gather(total[None]).cpu()  # (processes, nets)
    in_sync = bool(torch.allclose(gathered, gathered[:1].expand_as(gathered), rtol=0, atol=0))
    if accelerator.is_main_process:
        path = run_dir / "run.json"
        record = json.loads(path.read_text())
        record["replicas_in_sync"] = in_sync
        path.write_text(json.dumps(record, indent=1))


def _sampling_weights(emas: dict[str, EMA]):
    """The EMA weights swapped into their nets for the duration of a `with`."""
    from contextlib import ExitStack

    if not emas:
        return nullcontext()
    stack = ExitStack()
    for ema in emas.values():
        stack.enter_context(ema.swapped_in())
    return stack


def _run_dir(cfg: RunConfig, out: str | Path | None, resume: str | Path | None,
             overwrite: bool, accelerator: Accelerator, precision: dict) -> Path:
    """Pick and create the run folder on the main process; every process gets the same path."""
    if resume is not None:
        return Path(resume)  # recorded in run.json once its checkpoint has been read
    base = Path(out) if out else Path("runs") / (cfg.preset or cfg.family)
    path = base if out else ckpt.next_free_run_dir(base)
    accelerator.wait_for_everyone()  # all have chosen before the main process creates it
    if accelerator.is_main_process:
        ckpt.prepare_run_dir(path, overwrite=overwrite)
        save_config(cfg, path / "config.yaml")
        record = _provenance(cfg, accelerator, precision)
        (path / "run.json").write_text(json.dumps(record, indent=1))
    accelerator.wait_for_everyone()
    return path


def _record_resume(path: Path, provenance: dict) -> None:
    if (path / "run.json").exists():
        record = json.loads((path / "run.json").read_text())
        record.setdefault("resumed", []).append(provenance)
        (path / "run.json").write_text(json.dumps(record, indent=1))


def _provenance(cfg: RunConfig, accelerator: Accelerator, precision: dict) -> dict:
    """The audit record: versions, machine and launch, next to the config."""
    import platform
    import sys

    import accelerate

    from genforge.version import __version__

    return {
        "genforge": __version__, "torch": torch.__version__,
        "accelerate": accelerate.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "argv": sys.argv,
        "processes": accelerator.num_processes, "device": str(accelerator.device),
        "seed": cfg.train.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "precision": precision,  # requested, chosen and why
    }
