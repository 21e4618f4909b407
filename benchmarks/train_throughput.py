"""Training throughput on CPU: genforge's loop vs. a hand-written PyTorch loop, same work.

    .venv/bin/python benchmarks/train_throughput.py                       # full run (minutes)
    .venv/bin/python benchmarks/train_throughput.py --steps 10 --warmup 3 --repeats 1   # smoke

Both sides train the same network classes, built from the same preset config and seed, on the
same MNIST batches (uint8 in memory, a seeded permutation as in BatchStream, scaled per batch),
with the same Adam settings and losses, in fp32 and in bf16 autocast. Every measurement runs in
a fresh process (no warm caches or imports carried from one run to the next), genforge and plain
runs alternate, and each cell reports the median over repeats. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

TARGET = 0.95  # the bar: genforge images/s >= 0.95 x plain images/s
PRESETS = {"dcgan": "mnist-dcgan", "vae": "mnist-vae"}
LOSS_KEY = {"dcgan": "loss/d", "vae": "loss/vae"}  # compared between the sides as a same-work check
DATA_INFO = {"channels": 1, "image_size": 28, "num_classes": 10}


def log_every(warmup: int, steps: int, lines: int = 5) -> int:
    """The largest common divisor of warmup and steps that still gives >= `lines` timed chunks."""
    g = math.gcd(warmup, steps)
    return max(d for d in range(1, g + 1) if g % d == 0 and steps // d >= min(lines, steps))


# ------------------------------------------------------------------------------------------
# genforge: the real loop, read back from metrics.jsonl


def run_genforge(model: str, precision: str, warmup: int, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    from genforge.api import train
    from genforge.registry import load_config

    every = log_every(warmup, steps)
    cfg = load_config(PRESETS[model], [
        f"train.max_steps={warmup + steps}", f"train.precision={precision}", "train.device=cpu",
        f"log.every={every}", "log.sample_every=0", "log.checkpoint_every=1000000000",
        "log.tensorboard=false", "log.progress=false",
    ])
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, out=Path(tmp) / "run", overwrite=True)
        lines = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [row for row in map(json.loads, lines) if row["step"] > warmup]
    return {"chunk_images_per_s": [row["images_per_s"] for row in rows],
            "chunk_loss": [row[LOSS_KEY[model]] for row in rows],
            "threads_after": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------
# plain PyTorch: the same nets, data order, optimizer and losses, written out by hand


def plain_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                  seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """BatchStream's order: epoch e is randperm(seed * 1_000_003 + e); the ragged tail dropped."""
    from genforge.modalities.images.data import to_model_range

    epoch = 0
    while True:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(images) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield to_model_range(images[index]), labels[index]
        epoch += 1


def forward(net: torch.nn.Module, *args: torch.Tensor, bf16: bool) -> Any:
    """net(*args), in bf16 autocast with outputs cast back to fp32, as accelerate wraps forward."""
    if not bf16:
        return net(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(*args)
    return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def gan_step_fn(cfg: Any, bf16: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """One D update on real and detached fake, then one G update through a frozen D (bce)."""
    from genforge.families.gan.nets import build_nets

    G, D = build_nets(cfg.model, **DATA_INFO)
    t = cfg.train
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    def step(real: torch.Tensor) -> torch.Tensor:
        fake = forward(G, torch.randn(real.shape[0], cfg.model.latent_dim), bf16=bf16)
        real_logit = forward(D, real, bf16=bf16)
        fake_logit = forward(D, fake.detach(), bf16=bf16)
        d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        d_loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        D.requires_grad_(False)  # gradients flow through D to G; D's own are not needed
        fake_logit = forward(D, fake, bf16=bf16)
        D.requires_grad_(True)
        g_loss = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
        g_loss.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        return d_loss.detach()

    return step


def vae_step_fn(cfg: Any, bf16: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Negative ELBO with a Bernoulli likelihood and the analytic KL, one Adam update."""
    from genforge.families.vae.nets import VAE

    vae = VAE(cfg.model, **DATA_INFO)
    t = cfg.train
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    def step(x: torch.Tensor) -> torch.Tensor:
        out, mu, logvar = forward(vae, x, bf16=bf16)
        recon = F.binary_cross_entropy_with_logits(out, (x + 1) / 2, reduction="none")
        recon = recon.flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        loss = (recon + cfg.model.beta * kl).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def run_plain(model: str, precision: str, warmup: int, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    from genforge.modalities.images.data import load_images
    from genforge.registry import load_config

    cfg = load_config(PRESETS[model])
    t, every = cfg.train, log_every(warmup, steps)
    data = load_images(cfg.data)
    torch.manual_seed(t.seed)  # the same initial weights as genforge's run
    step = (gan_step_fn if model == "dcgan" else vae_step_fn)(cfg, precision == "bf16")
    torch.manual_seed(t.seed)  # the same noise (genforge reseeds with seed + 7919 * rank)
    batches = plain_batches(data.images, data.labels, t.batch_size, t.seed)
    for _ in range(warmup):
        step(next(batches)[0])
    rates, losses, total = [], [], torch.zeros(())
    tick = time.perf_counter()
    for i in range(1, steps + 1):
        total += step(next(batches)[0])
        if i % every == 0:
            now = time.perf_counter()
            rates.append(t.batch_size * every / (now - tick))
            losses.append(float(total) / every)
            tick, total = now, torch.zeros(())
    return {"chunk_images_per_s": rates, "chunk_loss": losses,
            "threads_after": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------
# Driver: interleave, repeat, summarise


def measure(side: str, model: str, precision: str, args: argparse.Namespace) -> dict:
    """One run in a fresh process; returns its raw chunks and their median."""
    fn = run_genforge if side == "genforge" else run_plain
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        raw = pool.submit(fn, model, precision, args.warmup, args.steps, args.threads).result()
    rates = raw["chunk_images_per_s"]
    raw.update(side=side, model=model, precision=precision,
               images_per_s=statistics.median(rates),  # the number compared
               overall_images_per_s=statistics.harmonic_mean(rates))  # equal-sized chunks
    print(f"  {side:8s} {model:5s} {precision}: {raw['images_per_s']:8.1f} img/s", flush=True)
    return raw


def summarise(runs: list[dict], models: list[str], precisions: list[str]) -> list[dict]:
    def values(side: str, model: str, precision: str) -> list[float]:
        return [r["images_per_s"] for r in runs
                if (r["side"], r["model"], r["precision"]) == (side, model, precision)]

    def median(side: str, model: str, precision: str) -> float | None:
        vals = values(side, model, precision)
        return statistics.median(vals) if vals else None

    def loss_gap(model: str, precision: str) -> float:
        """Largest relative difference of the per-chunk losses of the two sides (same work?)."""
        pairs = [r for r in runs if (r["model"], r["precision"]) == (model, precision)]
        a = next(r for r in pairs if r["side"] == "plain")["chunk_loss"]
        b = next(r for r in pairs if r["side"] == "genforge")["chunk_loss"]
        return max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True))

    rows = []
    for model in models:
        for precision in precisions:
            plain, gf = median("plain", model, precision), median("genforge", model, precision)
            row = {"model": model, "precision": precision, "plain_images_per_s": plain,
                   "genforge_images_per_s": gf, "ratio": gf / plain,
                   "meets_target": gf / plain >= TARGET,
                   "loss_rel_gap_first_repeat": loss_gap(model, precision)}
            for side in ("plain", "genforge"):
                row[f"{side}_repeats"] = values(side, model, precision)  # behind the median
                fp32, bf16 = median(side, model, "fp32"), median(side, model, "bf16")
                row[f"{side}_bf16_speedup"] = bf16 / fp32 if fp32 and bf16 else None
            rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    def fmt(v: float | None, width: int) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:{width}.2f}"

    head = (f"{'model':6s} {'prec':5s} {'plain img/s':>12s} {'genforge img/s':>15s} "
            f"{'gf/plain':>9s} {'bf16x plain':>12s} {'bf16x gf':>9s}  target >= {TARGET}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        bf16 = r["precision"] == "bf16"  # the speed-ups belong to the model: shown once
        print(f"{r['model']:6s} {r['precision']:5s} {r['plain_images_per_s']:12.1f} "
              f"{r['genforge_images_per_s']:15.1f} {r['ratio']:9.3f} "
              f"{fmt(r['plain_bf16_speedup'] if bf16 else None, 12)} "
              f"{fmt(r['genforge_bf16_speedup'] if bf16 else None, 9)}"
              f"  {'meets' if r['meets_target'] else 'MISSES'}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--models", default="dcgan,vae")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch.set_num_threads on both sides (default: all usable cores)")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()
    models, precisions = args.models.split(","), args.precisions.split(",")
    for chosen, allowed in ((models, PRESETS), (precisions, ("fp32", "bf16"))):
        if unknown := set(chosen) - set(allowed):
            parser.error(f"unknown {sorted(unknown)}; allowed: {', '.join(allowed)}")
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("need --steps >= 1, --warmup >= 0, --repeats >= 1")

    print(f"{args.steps} timed steps after {args.warmup} warm-up steps, chunks of "
          f"{log_every(args.warmup, args.steps)}, {args.repeats} repeats, {args.threads} threads")
    runs = []
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}", flush=True)
        for model in models:
            for precision in precisions:
                # alternate which side goes first, so that drift hits both sides alike
                order = ("plain", "genforge") if r % 2 == 0 else ("genforge", "plain")
                runs += [measure(side, model, precision, args) | {"repeat": r} for side in order]
    rows = summarise(runs, models, precisions)
    print_table(rows)

    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
        "threads": args.threads, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "target_ratio": TARGET,
        "settings": {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                     "chunk_steps": log_every(args.warmup, args.steps)},
        "summary": rows, "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
