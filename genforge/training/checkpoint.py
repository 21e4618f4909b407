"""Run folders and checkpoints on disk, always written under a temporary name and renamed.

runs/<name>/
  config.yaml          the resolved config
  model.safetensors    the sampling nets (EMA weights where EMA is on) + config in the metadata
  state/               nets.safetensors, ema.safetensors, optim.pt, rng_rank<r>.pt, trainer.json
  metrics.jsonl, samples/, tb/

Nothing here unpickles code: weights are safetensors and `optim.pt` / `rng_*.pt` are read with
`torch.load(weights_only=True)`, which accepts tensors and plain containers only.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from genforge.config import RunConfig
from genforge.errors import DataError, GenforgeError

MODEL_FILE = "model.safetensors"
STATE_DIR = "state"


class RunExistsError(GenforgeError, FileExistsError):
    """The output folder holds a run; it is never overwritten without --overwrite."""


class RunStateError(GenforgeError, FileNotFoundError):
    """A run folder without the checkpoint that an operation needs."""


def flat_state(nets: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """{'generator': net} -> {'generator.fc.weight': tensor, ...}, contiguous CPU copies."""
    return {
        f"{name}.{key}": value.detach().to("cpu").contiguous()
        for name, net in nets.items()
        for key, value in net.state_dict().items()
    }


def split_state(flat: dict[str, torch.Tensor], names: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {name: {} for name in names}
    for key, value in flat.items():
        name, _, rest = key.partition(".")
        if name in out:
            out[name][rest] = value
    return out


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path,
                            metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a signal: the last good file stays, no debris
        tmp.unlink(missing_ok=True)
        raise


def save_model(path: Path, nets: dict[str, nn.Module], cfg: RunConfig, step: int,
               data_info: dict[str, Any]) -> None:
    """model.safetensors: enough to rebuild and sample without anything else."""
    metadata = {
        "format": "genforge-model-v1",
        "config": json.dumps(cfg.to_dict()),
        "data_info": json.dumps(data_info),
        "step": str(step),
    }
    atomic_save_safetensors(flat_state(nets), path, metadata)


# what a damaged, truncated or half-copied checkpoint file raises when it is read
UNREADABLE = (SafetensorError, OSError, EOFError, RuntimeError, ValueError, KeyError,
              pickle.UnpicklingError)


def damaged(path: Path, err: BaseException) -> DataError:
    """One line: which checkpoint file cannot be read, why, and what to do."""
    reason = " ".join(str(err).split())[:160] or type(err).__name__
    return DataError(f"{path}: not a readable checkpoint ({reason}); it is truncated, "
                     "damaged or no genforge file: copy the run folder again")


def read_model(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """model.safetensors: its tensors and metadata; a damaged file is a DataError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except UNREADABLE as err:
        raise damaged(path, err) from None


def save_state(run_dir: Path, *, rank: int, is_main: bool, barrier: Any, nets: dict,
               emas: dict, optimizers: dict, schedulers: dict, trainer: dict) -> None:
    """Write state/ as state.new/ and swap it in; every process adds its own RNG state."""
    new, final, old = run_dir / "state.new", run_dir / STATE_DIR, run_dir / "state.old"
    if is_main:
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
    barrier()
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, new / f"rng_rank{rank}.pt")
    barrier()
    if is_main:
        try:
            save_file(flat_state(nets), str(new / "nets.safetensors"))
            if emas:
                ema_flat = {f"{n}.{k}": v.contiguous() for n, e in emas.items()
                            for k, v in e.state_dict().items()}
                save_file(ema_flat, str(new / "ema.safetensors"))
            torch.save({"optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                        "schedulers": {k: s.state_dict() for k, s in schedulers.items()}},
                       new / "optim.pt")
            (new / "trainer.json").write_text(json.dumps(trainer, indent=1))
            if final.exists():
                os.replace(final, old)
            os.replace(new, final)
        except BaseException:  # a full disk, a signal: state/ (or state.old/) stays the last
            shutil.rmtree(new, ignore_errors=True)  # good one; the half-written one goes
            raise
        shutil.rmtree(old, ignore_errors=True)
    barrier()


def state_dir(run_dir: Path) -> Path | None:
    """The last complete state (state/, or state.old/ if a crash fell between two renames)."""
    for name in (STATE_DIR, "state.old"):
        candidate = run_dir / name
        if (candidate / "trainer.json").exists():
            return candidate
    return None


def load_state(folder: Path, *, rank: int, nets: dict, emas: dict, optimizers: dict,
               schedulers: dict) -> dict:
    """Restore everything `save_state` wrote; returns trainer.json's content. A missing or
    damaged file is a DataError naming it (a half-copied run folder); nothing is written."""
    file = folder / "trainer.json"
    try:
        trainer = json.loads(file.read_text())
        file = folder / "nets.safetensors"
        flat = load_file(str(file))
        for name, sd in split_state(flat, list(nets)).items():
            nets[name].load_state_dict(sd)
        if emas:
            file = folder / "ema.safetensors"
            ema_flat = load_file(str(file))
            for name, sd in split_state(ema_flat, list(emas)).items():
                emas[name].load_state_dict(sd)
        file = folder / "optim.pt"
        optim = torch.load(file, weights_only=True, map_location="cpu")
        for key, opt in optimizers.items():
            opt.load_state_dict(optim["optimizers"][key])
        for key, sched in schedulers.items():
            sched.load_state_dict(optim["schedulers"][key])
        file = folder / f"rng_rank{rank}.pt"
        if file.exists():
            rng = torch.load(file, weights_only=True)
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])
    except UNREADABLE as err:
        raise damaged(file, err) from None
    return trainer


def next_free_run_dir(base: Path) -> Path:
    """runs/mnist-dcgan, else runs/mnist-dcgan-2, -3, ...: a default never overwrites."""
    if not base.exists():
        return base
    i = 2
    while (base.parent / f"{base.name}-{i}").exists():
        i += 1
    return base.parent / f"{base.name}-{i}"


def prepare_run_dir(out: Path, *, overwrite: bool) -> None:
    """Create `out` for a new run; an existing non-empty folder needs `overwrite`."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunExistsError(
                f"{out}: a run folder already exists; choose another --out, pass --overwrite "
                f"to replace it, or --resume {out} to continue it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past `step` (written after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(ln + "\n" for ln in kept))
    os.replace(tmp, path)
