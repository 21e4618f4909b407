"""Diffusion speed: genforge's samplers vs. diffusers' pipelines, and its loop vs. plain PyTorch.

    .venv/bin/python benchmarks/sampling_speed.py                           # full run (long)
    .venv/bin/python benchmarks/sampling_speed.py --batch 16 --ddpm-steps 100 --repeats 1 \
        --train-steps 10 --train-warmup 3 --out /tmp/ss.json                # smoke

Sampling: the same UNet weights (a preset's UNet, seeded; exported with `export` and loaded by
DDIMPipeline / DDPMPipeline.from_pretrained), the same batch and seed, DDIM-50 (eta 0) and the
DDPM chain, in fp32 and bf16. genforge bf16 is its `precision="bf16"` option (bf16 autocast
around the UNet, float32 chain); the pipeline's bf16 is the same autocast around its call
(`pipeline_bf16=autocast`, the same arithmetic) or, with --pipeline-bf16 weights, diffusers'
own way (torch_dtype=bfloat16: bf16 weights and a bf16 chain). Each output pair is compared
(max |difference| in [0, 1] pixels) so that the table shows both sides did the same work.

Training: images/s of genforge's loop (metrics.jsonl, after the warm-up) vs. a hand-written
loop on the same UNet class, initial weights, batch, MNIST batches, AdamW and loss, in fp32
and bf16 autocast. Every training measurement runs in a fresh process; sides alternate.
Prints a table; writes JSON (default benchmarks/results/sampling_speed.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

TARGET = 1.2  # the bar for sampling: genforge images/s >= 1.2 x the pipeline's
DATA_INFO = {"kind": "images", "dataset": "mnist", "channels": 1, "image_size": 28,
             "num_classes": 10, "class_names": [str(i) for i in range(10)]}


# A UNet of one level and 4 channels: its forward costs little, so images/s measure what each
# sampler spends around the network per step (scheduler arithmetic, noise, bookkeeping).
OVERHEAD_UNET = ["model.channels=[4]", "model.attention=[false]", "model.norm_groups=4",
                 "model.attention_head_dim=4"]


def model_config(preset: str, channels: str | None, extra: list[str] | None = None):
    from genforge.registry import load_config

    widths = [f"model.channels=[{channels}]"] if channels else []
    return load_config(preset, [*widths, *(extra or [])])


# ------------------------------------------------------------------------------------------
# sampling


def time_call(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_sampling(args, *, overhead: bool = False) -> list[dict]:
    from diffusers import DDIMPipeline, DDPMPipeline

    from genforge.registry import FAMILIES

    cfg = model_config(args.preset, None, OVERHEAD_UNET) if overhead else \
        model_config(args.preset, args.channels)
    batch = 1 if overhead else args.batch
    torch.manual_seed(0)
    objective = FAMILIES["diffusion"].build(cfg.model, DATA_INFO)
    folder = Path(tempfile.mkdtemp()) / "model"
    objective.export(folder)
    rows = []
    for precision in args.precisions:
        weights_bf16 = precision == "bf16" and args.pipeline_bf16 == "weights"
        dtype = {"torch_dtype": torch.bfloat16} if weights_bf16 else {}
        for name, cls, steps in (("ddim", DDIMPipeline, args.ddim_steps),
                                 ("ddpm", DDPMPipeline, args.ddpm_steps)):
            pipe = cls.from_pretrained(folder, **dtype)
            pipe.set_progress_bar_config(disable=True)
            autocast = precision == "bf16" and not weights_bf16

            def theirs(n=batch, steps=steps, pipe=pipe, autocast=autocast):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    return pipe(batch_size=n, generator=torch.Generator().manual_seed(0),
                                num_inference_steps=steps, output_type="pt").images

            def ours(n=batch, steps=steps, name=name, precision=precision):
                return objective.sample(n, seed=0, scheduler=name, steps=steps,
                                        precision=precision, progress=False) * 0.5 + 0.5

            for fn in (theirs, ours):  # warm-up: allocator, oneDNN kernels
                fn(n=batch, steps=2)
            t_ours, t_theirs, x_ours, x_theirs = [], [], None, None
            for r in range(args.repeats):  # alternate which side goes first
                order = ((ours, t_ours), (theirs, t_theirs)) if r % 2 == 0 else \
                    ((theirs, t_theirs), (ours, t_ours))
                for fn, times in order:
                    seconds, out = time_call(fn, 1)
                    times.append(seconds)
                    if fn is ours:
                        x_ours = out
                    else:
                        x_theirs = out
            g, p = batch / statistics.median(t_ours), batch / statistics.median(t_theirs)
            task = f"{name.upper()}-{steps}" + ("*" if overhead else "")
            rows.append({"task": task, "precision": precision, "overhead_only": overhead,
                         "pipeline_bf16": args.pipeline_bf16 if precision == "bf16" else None,
                         "batch": batch, "genforge_img_s": g, "pipeline_img_s": p,
                         "ratio": g / p, "target_met": g / p >= TARGET,
                         "max_abs_diff": float((x_ours.float() - x_theirs.float()).abs().max()),
                         "genforge_s": t_ours, "pipeline_s": t_theirs})
            print(_row(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------------------------
# training: genforge's loop vs. a plain loop, each in a fresh process


def run_genforge(preset: str, channels: str | None, precision: str, batch: int, warmup: int,
                 steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    from genforge.api import train
    from genforge.registry import load_config

    extra = [f"model.channels=[{channels}]"] if channels else []
    cfg = load_config(preset, [*extra, f"train.max_steps={warmup + steps}",
                               f"train.batch_size={batch}", f"train.precision={precision}",
                               "train.device=cpu", "train.warmup_steps=0", f"log.every={warmup}",
                               "log.sample_every=0", "log.checkpoint_every=1000000000",
                               "log.tensorboard=false", "log.progress=false"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(cfg, out=Path(tmp) / "run", overwrite=True)
        wall = time.perf_counter() - start
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text()
                .splitlines()]
    timed = [r["images_per_s"] for r in rows if r["step"] > warmup]
    return {"images_per_s": statistics.median(timed), "wall_s": wall}


def run_plain(preset: str, channels: str | None, precision: str, batch: int, warmup: int,
              steps: int, threads: int) -> dict:
    """The same work written by hand: UNet, DDPMScheduler.add_noise, MSE, AdamW, clipping."""
    torch.set_num_threads(threads)
    import torch.nn.functional as F

    from genforge.config import DataConfig
    from genforge.families.diffusion.nets import build_scheduler, build_unet
    from genforge.modalities.images.data import load_images, to_model_range

    cfg = model_config(preset, channels)
    data = load_images(DataConfig(dataset="mnist"))
    torch.manual_seed(cfg.train.seed)
    unet = build_unet(cfg.model, 1, 28, 0)
    scheduler = build_scheduler(cfg.model)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.train.lr, betas=cfg.train.betas)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.train.seed))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        x0 = to_model_range(data.images[order[i * batch : (i + 1) * batch]])  # (B, 1, 28, 28)
        t = torch.randint(0, cfg.model.timesteps, (batch,))
        eps = torch.randn_like(x0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            pred = unet(scheduler.add_noise(x0, eps, t), t, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), eps)
        loss.backward()
        if cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"images_per_s": batch / statistics.median(times[warmup:]), "wall_s": sum(times)}


def bench_training(args) -> list[dict]:
    rows = []
    ctx = multiprocessing.get_context("spawn")
    for precision in args.precisions:
        results = {"genforge": [], "plain": []}
        for r in range(args.repeats):
            sides = ["genforge", "plain"] if r % 2 == 0 else ["plain", "genforge"]
            for side in sides:
                fn = run_genforge if side == "genforge" else run_plain
                with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    results[side].append(pool.submit(
                        fn, args.preset, args.channels, precision, args.batch,
                        args.train_warmup, args.train_steps, args.threads).result())
        g = statistics.median(x["images_per_s"] for x in results["genforge"])
        p = statistics.median(x["images_per_s"] for x in results["plain"])
        rows.append({"task": "train", "precision": precision, "batch": args.batch,
                     "genforge_img_s": g, "plain_img_s": p, "ratio": g / p, "raw": results})
        print(_row(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------------------------


def _row(r: dict) -> str:
    other = r.get("pipeline_img_s", r.get("plain_img_s"))
    diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "-"
    met = ("yes" if r["target_met"] else "MISSES") if "target_met" in r else "-"
    return (f"{r['task']:<10} {r['precision']:<5} {r['batch']:>5} {r['genforge_img_s']:>10.2f} "
            f"{other:>10.2f} {r['ratio']:>6.2f} {diff:>8} {met:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mnist-ddpm")
    parser.add_argument("--channels", default=None, help="UNet widths, e.g. 32,64,64")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--ddpm-steps", type=int, default=1000)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--pipeline-bf16", choices=["autocast", "weights"], default="autocast")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--train-warmup", type=int, default=5)
    parser.add_argument("--skip", default="", help="any of sampling, overhead, training")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/sampling_speed.json")
    args = parser.parse_args()
    args.precisions = args.precisions.split(",")
    torch.set_num_threads(args.threads)
    print(f"{'task':<10} {'prec':<5} {'batch':>5} {'genforge':>10} {'other':>10} {'ratio':>6} "
          f"{'max|d|':>8} {'>=1.2x':>7}   (images/s; other = diffusers pipeline / plain loop;"
          " * = a 4-channel UNet at batch 1: per-step overhead)")
    sampling = [] if "sampling" in args.skip else bench_sampling(args)
    if "overhead" not in args.skip:
        sampling += bench_sampling(args, overhead=True)
    training = [] if "training" in args.skip else bench_training(args)
    record = {"args": vars(args), "sampling": sampling, "training": training,
              "torch": torch.__version__, "threads": args.threads,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "target": TARGET}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
