"""Char-level GPT on tiny Shakespeare with nanoGPT's CPU recipe, trained by genforge's loop:
tokens/s and validation loss at the end and over training time, in fp32 and bf16.

    .venv/bin/python benchmarks/text_train.py                                   # full (minutes)
    .venv/bin/python benchmarks/text_train.py --iters 200 --eval-every 100 --out /tmp/tt.json

nanoGPT's CPU recipe (README, "I only have a macbook"): 4 layers, 4 heads, 128 wide, context
64, batch 12, 2000 iterations, dropout 0, lr 1e-3 with 100 warm-up steps and cosine decay (to
1e-4 there, to 0 here), AdamW betas (0.9, 0.99), weight decay 0.1, gradient clip 1. nanoGPT
reports a validation loss of about 1.88 (measured on these machines: 1.886 after 2000 iterations
in 78 s, about 34 ms an iteration). Recipe 'genforge' keeps the model, batch and iterations and
changes only the optimisation (a higher learning rate, see RECIPES), to get lower in the same
time. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

RECIPES = {  # overrides on top of the shakespeare-char preset and the sizes below
    "nanogpt": ["train.lr=1e-3"],
    "genforge": ["train.lr=3e-3"],
}
COMMON = ["model.arch=gpt2", "model.dropout=0.0", "data.tokenizer=char",
          "train.betas=[0.9, 0.99]", "train.weight_decay=0.1", "train.lr_schedule=cosine",
          "train.grad_clip=1.0", "train.device=cpu", "log.sample_every=0",
          "log.checkpoint_every=1000000000", "log.tensorboard=false", "log.progress=false"]


def overrides(recipe: str, precision: str, args: argparse.Namespace) -> list[str]:
    sizes = [f"model.n_layer={args.n_layer}", f"model.n_head={args.n_head}",
             f"model.n_embd={args.n_embd}", f"data.block_size={args.block_size}",
             f"train.batch_size={args.batch_size}", f"train.max_steps={args.iters}",
             f"log.every={args.log_every}", f"train.precision={precision}",
             f"train.warmup_steps={min(args.warmup, args.iters // 2)}"]
    return [*COMMON, *RECIPES[recipe], *sizes]


def step_seconds(run: Path, batch_size: int, every: int) -> float:
    """Time spent in training steps, from the loop's own throughput lines (each covers `every`
    steps; checkpoints, evaluation and start-up fall outside)."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return sum(every * batch_size / r["images_per_s"] for r in rows)


def run(recipe: str, precision: str, args: argparse.Namespace) -> dict:
    """One configuration in a fresh process: train in segments, evaluating between them."""
    torch.set_num_threads(args.threads)
    import genforge
    from genforge.api import resume_config, train
    from genforge.data.text import load_text
    from genforge.eval.text import held_out_nll
    from genforge.registry import load_config

    cfg = load_config("shakespeare-char", overrides(recipe, precision, args))
    data = load_text(cfg.data)  # tokenised (or read from the cache) before any timing
    points, wall = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        stops = [*range(args.eval_every, args.iters, args.eval_every), args.iters]
        for i, stop in enumerate(stops):
            extra = [f"train.stop_after={stop}"] if stop < args.iters else []
            tick = time.perf_counter()
            if i == 0:
                train(load_config("shakespeare-char", overrides(recipe, precision, args) + extra),
                      out=out)
            else:
                train(resume_config(out, extra), resume=out)
            wall += time.perf_counter() - tick
            model = genforge.load(out)
            nats, tokens, _ = held_out_nll(model.objective.nets["lm"], model.objective.tokenizer,
                                           data.val, args.block_size, batch_size=64)
            seconds = step_seconds(out, args.batch_size, args.log_every)
            last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
            points.append({"step": stop, "step_seconds": seconds, "wall_seconds": wall,
                           "val_loss": nats / tokens, "train_loss": last["loss/lm"]})
            print(f"    {recipe} {precision} step {stop:5d}: val {nats / tokens:.4f} "
                  f"after {seconds:6.1f} s of steps", flush=True)
    end = points[-1]
    return {"recipe": recipe, "precision": precision, "points": points,
            "val_loss": end["val_loss"], "step_seconds": end["step_seconds"],
            "ms_per_iteration": 1000 * end["step_seconds"] / args.iters,
            "tokens_per_s": args.iters * args.batch_size * args.block_size / end["step_seconds"],
            "val_tokens": tokens, "overrides": overrides(recipe, precision, args)}


def measure(recipe: str, precision: str, args: argparse.Namespace) -> dict:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(run, recipe, precision, args).result()


def print_table(rows: list[dict], iters: int) -> None:
    head = (f"{'recipe':9s} {'prec':5s} {'tokens/s':>9s} {'ms/iter':>8s} "
            f"{'steps s':>8s} {'val loss':>9s}   (nanoGPT: 1.886 in 78 s, 34 ms/iter)")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['recipe']:9s} {r['precision']:5s} {r['tokens_per_s']:9.0f} "
              f"{r['ms_per_iteration']:8.1f} {r['step_seconds']:8.1f} {r['val_loss']:9.4f}")
    print(f"({iters} iterations each; val loss over every validation token)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="nanogpt,genforge")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100, help="(at most half of --iters)")
    parser.add_argument("--eval-every", type=int, default=250,
                        help="iterations between validation points (the run resumes exactly)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/text_train.json"))
    args = parser.parse_args()
    recipes, precisions = args.recipes.split(","), args.precisions.split(",")
    for chosen, allowed in ((recipes, RECIPES), (precisions, ("fp32", "bf16"))):
        if unknown := set(chosen) - set(allowed):
            parser.error(f"unknown {sorted(unknown)}; allowed: {', '.join(allowed)}")
    if args.eval_every % args.log_every or args.iters % args.log_every:
        parser.error("--eval-every and --iters must be multiples of --log-every")
    if "GENFORGE_DATA" not in os.environ:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        os.environ["GENFORGE_DATA"] = str(shared)  # where text/tinyshakespeare.txt lives here

    print(f"{args.iters} iterations, batch {args.batch_size} x {args.block_size} tokens, "
          f"{args.n_layer} layers x {args.n_embd}, {args.threads} threads")
    rows = []
    for recipe in recipes:
        for precision in precisions:
            rows.append(measure(recipe, precision, args))
    print_table(rows, args.iters)
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
        "threads": args.threads, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "reference": {"nanogpt_val_loss": 1.886, "nanogpt_seconds": 78, "nanogpt_ms_per_iter": 34},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
