"""Image quality per wall-minute: genforge's best preset next to a plain PyTorch DCGAN.

    .venv/bin/python benchmarks/image_quality.py                  # MNIST: both sides, 20 minutes
    .venv/bin/python benchmarks/image_quality.py --preset fashion-20min --no-baseline
    .venv/bin/python benchmarks/image_quality.py --preset cifar10-60min --no-baseline
    .venv/bin/python benchmarks/image_quality.py --minutes 0.5 --marks 0.25,0.5 \
        --inception-marks 0.5 --n-inception 50 --n-domain 500 --work /tmp/iq --out /tmp/iq.json

1. Train. genforge (`genforge train PRESET train.max_minutes=M`) and, unless --no-baseline, a plain
   PyTorch DCGAN of the seeds' design (the DCGAN nets at width 64, non-saturating BCE, Adam 2e-4,
   beta1 0.5, batch 128, no EMA, unconditional) start at the same moment, each in its own process
   on ONE torch thread (one core each on a 2-core machine), each for M minutes of wall time counted
   from the moment its process was started, so imports and data loading count for both. Snapshots
   of the generator: genforge's checkpoints (copied as they appear, timed by their file's mtime) and
   the baseline's at each mark. A run folder already there (--work) is reused: --skip-train.
2. Evaluate each side at each mark, from the last snapshot written at or before it: --n-domain
   samples against as many real images in domain-classifier features (fast; MNIST, Fashion-MNIST)
   at every mark, and --n-inception in Inception features (genforge's pinned FID protocol, fp32,
   slow on a CPU) at --inception-marks. Sampling seed 0; a conditional model gets balanced labels.
   The real images are the preset's --real split (default <dataset>:test; CIFAR-10 has only its
   test split here, so its FID is against the images it trained on).
Prints the table of FID against minutes, writes --out (default
benchmarks/results/image_quality_<preset>.json) and the final genforge grid to docs/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
STOP_GRACE_S = 5.0  # the step the stop signal lands in, and writing the checkpoint
BASELINE = {"width": 64, "latent_dim": 100, "batch_size": 128, "lr": 2e-4, "betas": (0.5, 0.999)}


def floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


def rel(path: Path) -> str:
    """Repo-relative where possible: committed results carry no machine's absolute paths."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return Path(path).name


# ------------------------------------------------------------------------------------------
# the plain baseline, run as its own process (`image_quality.py _baseline ...`)


def run_baseline(dataset: str, split: str, data_root: str, minutes: float, marks: list[float],
                 folder: Path, started: float) -> None:
    """The seeds' DCGAN, written out by hand; saves G at each mark of wall time since `started`."""
    torch.set_num_threads(1)
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from genforge.config import DataConfig
    from genforge.families.gan.config import GANConfig
    from genforge.families.gan.nets import build_nets
    from genforge.modalities.images.data import load_images, to_model_range

    data = load_images(DataConfig(dataset=dataset, split=split), data_root)
    images = data.images  # uint8 (N, C, H, W)
    torch.manual_seed(0)
    G, D = build_nets(GANConfig(width=BASELINE["width"], latent_dim=BASELINE["latent_dim"]),
                      images.shape[1], images.shape[2], 0)
    opt_g = torch.optim.Adam(G.parameters(), lr=BASELINE["lr"], betas=BASELINE["betas"])
    opt_d = torch.optim.Adam(D.parameters(), lr=BASELINE["lr"], betas=BASELINE["betas"])
    bs, pending, step = BASELINE["batch_size"], sorted(marks), 0
    while pending:
        order = torch.randperm(len(images))
        for start in range(0, len(images) - bs + 1, bs):
            real = to_model_range(images[order[start : start + bs]])
            fake = G(torch.randn(bs, BASELINE["latent_dim"]))
            real_logit, fake_logit = D(real), D(fake.detach())
            d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                      + F.binary_cross_entropy_with_logits(fake_logit,
                                                           torch.zeros_like(fake_logit)))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)
            fake_logit = D(fake)
            D.requires_grad_(True)
            g_loss = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            step += 1
            elapsed = time.time() - started
            while pending and elapsed >= 60 * pending[0]:
                mark = pending.pop(0)
                name = folder / f"baseline_t{elapsed:08.1f}_s{step:06d}.safetensors"
                save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(name),
                          metadata={"step": str(step), "mark_min": str(mark)})
            if not pending or elapsed >= 60 * minutes:
                return


def baseline_generator(file: Path, channels: int, size: int) -> torch.nn.Module:
    from safetensors.torch import load_file

    from genforge.families.gan.config import GANConfig
    from genforge.families.gan.nets import build_nets

    G, _ = build_nets(GANConfig(width=BASELINE["width"], latent_dim=BASELINE["latent_dim"]),
                      channels, size, 0)
    G.load_state_dict(load_file(str(file)))
    return G.eval()


# ------------------------------------------------------------------------------------------
# 1. train both sides at once


def train_side_by_side(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    snaps = work / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)
    run = work / "genforge"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "genforge", "train", args.preset, "--out", str(run),
           "--data-root", args.data_root, f"train.max_minutes={args.minutes + 1}",
           f"log.checkpoint_every={args.checkpoint_every}", "log.progress=false",
           "--overwrite"]
    started = time.time()
    procs = {"genforge": subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)}
    if args.baseline:
        procs["baseline"] = subprocess.Popen(
            [sys.executable, __file__, "_baseline", "--dataset", args.dataset, "--split",
             args.split, "--data-root", args.data_root, "--minutes", str(args.minutes),
             "--marks", ",".join(map(str, args.marks)), "--folder", str(snaps),
             "--started", repr(started)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
    seen, stop_at = None, started + 60 * args.minutes
    model = run / "model.safetensors"
    while procs["genforge"].poll() is None or seen != _mtime(model):
        if time.time() >= stop_at and procs["genforge"].poll() is None:
            procs["genforge"].send_signal(signal.SIGTERM)  # stops after this step, checkpointed
            stop_at = float("inf")
        mtime = _mtime(model)
        if mtime is not None and mtime != seen:  # a new checkpoint: keep a copy of it
            seen = mtime
            step = int(_metadata(model).get("step", "0"))
            shutil.copy2(model, snaps / f"genforge_t{mtime / 1e9 - started:08.1f}_s{step:06d}"
                                        ".safetensors")
        time.sleep(0.2)
    logs = {name: p.communicate()[0] for name, p in procs.items()}
    for name, p in procs.items():
        if p.returncode not in (0, 128 + signal.SIGTERM):  # 143: stopped at the mark
            raise SystemExit(f"{name} side failed (exit {p.returncode}):\n{logs[name][-3000:]}")
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "genforge_command": " ".join(["genforge", *cmd[3:]]).replace(str(work), "WORK")
            .replace(args.data_root, "DATA")}


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


# ------------------------------------------------------------------------------------------
# 2. evaluate the snapshots


def snapshot_at(snaps: Path, side: str, minutes: float) -> Path | None:
    """The snapshot of `side` for the mark `minutes` (file names carry the time): genforge's
    last checkpoint written by then (the final one is the stop's, a step past the mark), the
    baseline's first one at or after it (it saves at the first step past each mark)."""
    files = sorted(snaps.glob(f"{side}_t*.safetensors"), key=_elapsed)
    if side == "baseline":
        return next((f for f in files if _elapsed(f) >= 60 * minutes), None)
    before = [f for f in files if _elapsed(f) <= 60 * minutes + STOP_GRACE_S]
    return before[-1] if before else None


def _elapsed(file: Path) -> float:
    return float(file.name.split("_t")[1].split("_s")[0])


def _step(file: Path) -> int:
    return int(file.name.split("_s")[-1].split(".")[0])


def sample_file(side: str, snapshot: Path, n: int, out: Path, channels: int, size: int) -> Path:
    from genforge import load
    from genforge.modalities.images.data import from_model_range

    if side == "genforge":
        model = load(snapshot)
        labels = torch.arange(n) % model.num_classes if model.num_classes else None
        x = model.sample(n, seed=0, label=labels, precision="fp32")
    else:
        G = baseline_generator(snapshot, channels, size)
        z = torch.randn(n, BASELINE["latent_dim"], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            x = from_model_range(torch.cat([G(c) for c in z.split(1000)]))
    np.savez(out, x=np.asarray(x))
    return out


def fid(fake: Path, args: argparse.Namespace, features: str, n: int) -> dict[str, Any]:
    from genforge.eval import EvalOptions, evaluate

    options = EvalOptions(n=n, features=features, seed=0, precision="fp32", real=args.real,
                          train=args.real if args.dataset == "cifar10" else None,
                          data_root=args.data_root, progress=features == "inception")
    start = time.perf_counter()
    block = evaluate(fake=fake, options=options).metrics["features"][features]
    return {"fid": block["metrics"]["fid"], "kid": block["metrics"].get("kid"),
            "precision": block["metrics"].get("precision"),
            "recall": block["metrics"].get("recall"), "n": n,
            "protocol_hash": block["protocol_hash"],
            "seconds": round(time.perf_counter() - start, 1)}


def adopt_run(run: Path, work: Path) -> None:
    """A run trained with `genforge train PRESET` (no baseline): its final model is the one
    snapshot, timed from the run's start (run.json) to its model file's last write."""
    started = datetime.strptime(json.loads((run / "run.json").read_text())["started"],
                                "%Y-%m-%dT%H:%M:%S%z").timestamp()
    model = run / "model.safetensors"
    step = int(_metadata(model).get("step", "0"))
    (work / "snapshots").mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, work / "snapshots" /
                 f"genforge_t{model.stat().st_mtime - started:08.1f}_s{step:06d}.safetensors")


def evaluate_marks(args: argparse.Namespace, work: Path, run: Path) -> list[dict[str, Any]]:
    from genforge import load

    snaps = work / "snapshots"
    final = load(run)
    channels, size = final.data_info["channels"], final.data_info["image_size"]
    domain = args.dataset in ("mnist", "fashion-mnist")
    rows = []
    for side in ("genforge", "baseline") if args.baseline else ("genforge",):
        for mark in args.marks:
            snapshot = snapshot_at(snaps, side, mark)
            if snapshot is None:
                continue
            batch = BASELINE["batch_size"] if side == "baseline" else final.config.train.batch_size
            row: dict[str, Any] = {"side": side, "mark_min": mark,
                                   "snapshot_min": round(_elapsed(snapshot) / 60, 2),
                                   "step": _step(snapshot),
                                   "images_seen": _step(snapshot) * batch}
            if domain:
                fake = sample_file(side, snapshot, args.n_domain, work / "fake_domain.npz",
                                   channels, size)
                row["domain"] = fid(fake, args, "domain", args.n_domain)
            if mark in args.inception_marks:
                fake = sample_file(side, snapshot, args.n_inception, work / "fake_incep.npz",
                                   channels, size)
                row["inception"] = fid(fake, args, "inception", args.n_inception)
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def real_floor(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """What a perfect generator would score at these sizes: n training images (seed 1) in the
    fake's place. FID falls with n, so this floor is what a figure at the same n compares to."""
    from genforge.eval.images.pipeline import image_set

    row: dict[str, Any] = {"side": "real train images", "mark_min": None}
    for features, n in (("domain", args.n_domain), ("inception", args.n_inception)):
        if features == "domain" and args.dataset not in ("mnist", "fashion-mnist"):
            continue
        train = image_set(f"{args.dataset}:train", n, 1, args.data_root, "train")
        np.savez(work / "floor.npz", x=train.images.numpy())
        row[features] = fid(work / "floor.npz", args, features, n)
    return row


def write_grid(run: Path, preset: str) -> str:
    from genforge import load

    model = load(run)
    labels = torch.arange(100) % model.num_classes if model.num_classes else None
    out = REPO / "docs" / "results" / f"{preset}-grid.png"
    model.write(model.sample(100, seed=0, label=labels, precision="fp32"), out, nrow=10)
    return rel(out)


def _line(row: dict[str, Any]) -> str:
    def f(key: str) -> str:
        return f"{row[key]['fid']:9.2f}" if key in row else f"{'-':>9s}"
    if row["mark_min"] is None:
        return f"{row['side']:44s} {f('domain')} {f('inception')}"
    return (f"{row['side']:9s} {row['mark_min']:6.2f} {row['snapshot_min']:8.2f} "
            f"{row['step']:7d} {row['images_seen']:9d} {f('domain')} {f('inception')}")


def machine() -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "avx512_bf16": "avx512_bf16" in info, "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads_per_side": 1}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        p = argparse.ArgumentParser()
        for key in ("dataset", "split", "data-root", "marks", "folder"):
            p.add_argument(f"--{key}")
        p.add_argument("--minutes", type=float)
        p.add_argument("--started", type=float)
        a = p.parse_args(sys.argv[2:])
        run_baseline(a.dataset, a.split, a.data_root, a.minutes, floats(a.marks),
                     Path(a.folder), a.started)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="mnist-20min")
    p.add_argument("--minutes", type=float, default=None, help="default: the preset's budget")
    p.add_argument("--marks", type=floats, default=None,
                   help="minutes to evaluate at (default 2.5,5,10,15,20 up to --minutes)")
    p.add_argument("--inception-marks", type=floats, default=None,
                   help="marks with an Inception FID (default: 5 and the last)")
    p.add_argument("--n-domain", type=int, default=10000)
    p.add_argument("--n-inception", type=int, default=1000)
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--checkpoint-every", type=int, default=250,
                   help="genforge checkpoint (snapshot) interval in steps")
    p.add_argument("--data-root", default=os.environ.get("GENFORGE_DATA", str(SHARED_DATA)))
    p.add_argument("--work", default=None, help="run folders (default runs/image-quality/PRESET)")
    p.add_argument("--skip-train", action="store_true", help="evaluate what --work holds")
    p.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="also score n real training images (the FID floor at this n)")
    p.add_argument("--run", default=None, help="evaluate this finished run of the preset "
                   "(trained with `genforge train PRESET`) instead of training; no baseline")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from genforge.registry import load_config

    cfg = load_config(args.preset)
    args.dataset, args.split = cfg.data.dataset, cfg.data.split
    args.real = f"{args.dataset}:test"  # CIFAR-10: the split it trained on (the only one here)
    args.minutes = args.minutes or cfg.train.max_minutes or 20.0
    args.marks = args.marks or [m for m in (2.5, 5, 10, 15, 20, 30, 45, 60)
                                if m < args.minutes] + [args.minutes]
    args.inception_marks = args.inception_marks or sorted({min(5.0, args.minutes),
                                                           args.marks[-1]})
    work = Path(args.work or REPO / "runs" / "image-quality" / args.preset)
    out = Path(args.out or REPO / "benchmarks" / "results" / f"image_quality_{args.preset}.json")

    run = Path(args.run) if args.run else work / "genforge"
    if args.run:
        args.baseline = False
        adopt_run(run, work)
        args.marks = args.inception_marks = [args.minutes]
    setup = {} if args.skip_train or args.run else train_side_by_side(args, work)
    print(f"{'side':9s} {'mark':>6s} {'snap min':>8s} {'step':>7s} {'images':>9s} "
          f"{'FID dom':>9s} {'FID incep':>9s}", flush=True)
    rows = evaluate_marks(args, work, run)
    if args.floor and args.split != "test":  # (a model trained on the test split has none)
        rows.append(real_floor(args, work))
        print(_line(rows[-1]), flush=True)
    result = {
        "benchmark": "image_quality", "preset": args.preset, "dataset": args.dataset,
        "train_split": args.split, "real": args.real, "minutes": args.minutes,
        "marks": args.marks, "inception_marks": args.inception_marks,
        "n_domain": args.n_domain, "n_inception": args.n_inception,
        "baseline": ({**BASELINE, "design": "DCGAN nets (genforge.families.gan.nets), BCE, "
                      "unconditional, no EMA, plain PyTorch loop"} if args.baseline else None),
        "protocol": "each side in its own process, one torch thread, started together; time "
                    "from process start (imports and data loading included); FID of the last "
                    "snapshot at or before each mark; seed 0; fp32",
        "machine": machine(), **setup, "rows": rows, "grid": write_grid(run, args.preset),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {rel(out)}")


if __name__ == "__main__":
    main()
