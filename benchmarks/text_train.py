"""Char-level GPT on tiny Shakespeare, side by side: nanoGPT itself, genforge with nanoGPT's
recipe and genforge with its own recipe, in one harness with one wall-clock accounting.

    .venv/bin/python benchmarks/text_train.py                                   # full (minutes)
    .venv/bin/python benchmarks/text_train.py --iters 200 --eval-every 100 --out /tmp/tt.json

The recipe is nanoGPT's CPU one (its README, "I only have a macbook"): 4 layers, 4 heads, 128
wide, context 64, batch 12, 2000 iterations, dropout 0, AdamW lr 1e-3 with 100 warm-up steps and
cosine decay, betas (0.9, 0.99), weight decay 0.1, gradient clip 1, device cpu, no compile.
Recipe 'genforge' keeps the model, batch and iterations and changes only the optimisation (see
RECIPES), to get lower in the same time.

Every side is one fresh process (`python -u`), timed by this parent from launch to exit, with
the same torch threads. Each evaluates in its loop every --eval-every iterations with
--eval-iters random batches of each split (nanoGPT's estimate_loss; genforge's side does the
same with genforge's model), and prints nanoGPT's "step N: train loss X, val loss Y" line, which
the parent stamps on arrival: start-up, data loading, evaluation and checkpoints are counted in
the wall time the same way for both. ms/iteration counts training iterations only: those
without an evaluation, timed inside each process between consecutive iterations.
nanoGPT runs from a temporary copy of ../shared/peers/nanogpt (never imported) on genforge's
own token arrays, so both sides see the same split and the same vocabulary.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "peers" / "nanogpt"
RECIPES = {  # genforge overrides on top of the shakespeare-char preset and the sizes below
    "nanogpt": ["train.lr=1e-3"],
    "genforge": ["train.lr=3e-3"],
}
COMMON = ["model.arch=gpt2", "model.dropout=0.0", "data.tokenizer=char",
          "train.betas=[0.9, 0.99]", "train.weight_decay=0.1", "train.lr_schedule=cosine",
          "train.grad_clip=1.0", "train.device=cpu", "log.sample_every=0", "log.sample_n=0",
          "log.checkpoint_every=1000000000", "log.tensorboard=false", "log.progress=false"]
SIDES = {"peer": "nanoGPT", "nanogpt": "genforge, nanoGPT recipe",
         "genforge": "genforge, own recipe"}
EVAL_LINE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
ITER_LINE = re.compile(r"iter (\d+): loss [-\d.naninf]+, time ([\d.]+)ms")


def overrides(recipe: str, args: argparse.Namespace) -> list[str]:
    sizes = [f"model.n_layer={args.n_layer}", f"model.n_head={args.n_head}",
             f"model.n_embd={args.n_embd}", f"data.block_size={args.block_size}",
             f"train.batch_size={args.batch_size}", f"train.max_steps={args.iters}",
             f"log.every={args.log_every}", f"train.precision={args.precision}",
             f"train.warmup_steps={min(args.warmup, args.iters // 2)}"]
    return [*COMMON, *RECIPES[recipe], *sizes]


# --- the genforge side: runs in its own process (--child) -------------------------------------

class EvalStream:
    """genforge's TextStream, evaluating before step s when s % every == 0 (as nanoGPT's loop
    does) and stamping the start of every iteration."""

    def __init__(self, stream, evaluate, every: int, stamps: list[float]) -> None:
        self.stream, self.evaluate, self.every, self.stamps = stream, evaluate, every, stamps

    def next(self, micro: int):
        self.stamps.append(time.perf_counter())
        if self.stream.step % self.every == 0:
            self.evaluate(self.stream.step)
        return self.stream.next(micro)

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


def child(args: argparse.Namespace) -> None:
    """Train one genforge recipe like nanoGPT's train.py: print the same eval lines, then one
    JSON line with the iteration times."""
    import torch

    torch.set_num_threads(args.threads)
    import torch.nn.functional as F

    from genforge.registry import FAMILIES, get_modality, load_config
    from genforge.runs import check_model_memory
    from genforge.training.loop import train

    cfg = load_config("shakespeare-char", overrides(args.child, args))
    spec = FAMILIES[cfg.family]  # what genforge.api.train does, with the stream wrapped below
    data = get_modality(spec.modalities[0]).load(cfg.data)
    spec.check_data(cfg, data.info())
    check_model_memory(spec, cfg, data.info())
    built = {}
    g = torch.Generator().manual_seed(1337)
    T, B = args.block_size, args.batch_size

    @torch.no_grad()
    def evaluate(step: int) -> None:  # nanoGPT's estimate_loss, on genforge's model
        lm = built["objective"].nets["lm"]
        lm.eval()
        losses = {}
        for split, tokens in (("train", data.train), ("val", data.val)):
            total = 0.0
            for _ in range(args.eval_iters):
                starts = torch.randint(len(tokens) - T, (B,), generator=g).numpy()
                w = torch.from_numpy(tokens[starts[:, None] + np.arange(T + 1)].astype(np.int64))
                logits = lm(input_ids=w[:, :-1], use_cache=False).logits
                total += float(F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten()))
            losses[split] = total / args.eval_iters
        lm.train()
        print(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}",
              flush=True)

    def build(info: dict):
        built["objective"] = spec.build(cfg.model, info)
        return built["objective"]

    stamps: list[float] = []
    stream = data.stream
    data.stream = lambda **kw: EvalStream(stream(**kw), evaluate, args.eval_every, stamps)
    train(cfg, data=data, build_objective=build, out=args.run)
    evaluate(args.iters)  # nanoGPT evaluates at iteration max_iters too
    spans = np.diff(stamps) * 1000  # span i: iteration i (and its evaluation, if any)
    print("ITERATION_MS " + json.dumps([round(float(x), 3) for x in spans]), flush=True)


# --- the parent -------------------------------------------------------------------------------

def launch(command: list[str], cwd: Path, threads: int) -> dict:
    """Run one side; stamp each eval line on arrival; wall = launch to exit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    points, iteration_ms, lines = [], [], []
    for line in proc.stdout:
        now = time.perf_counter() - start
        lines.append(line)
        if m := EVAL_LINE.search(line):
            points.append({"step": int(m[1]), "wall_seconds": now,
                           "train_loss": float(m[2]), "val_loss": float(m[3])})
        elif m := ITER_LINE.match(line):
            iteration_ms.append((int(m[1]), float(m[2])))
        elif line.startswith("ITERATION_MS "):
            iteration_ms = [(i, x) for i, x in enumerate(json.loads(line.split(" ", 1)[1]))]
    code = proc.wait()
    wall = time.perf_counter() - start
    if code or not points:
        sys.exit("".join(lines[-30:]) + f"\n{' '.join(command[:3])}: exit code {code}")
    return {"points": points, "iteration_ms": iteration_ms, "wall_seconds": wall,
            "load_average_before": load, "load_average_after": os.getloadavg()[0]}


def peer_folder(tmp: Path, data) -> Path:
    """A copy of nanoGPT whose data/shakespeare_char holds genforge's token arrays in its
    format (train.bin, val.bin uint16, meta.pkl): the same split and vocabulary on both sides."""
    folder = tmp / "nanogpt"
    shutil.copytree(PEER, folder)
    prepared = folder / "data" / "shakespeare_char"
    np.asarray(data.train, dtype=np.uint16).tofile(prepared / "train.bin")
    np.asarray(data.val, dtype=np.uint16).tofile(prepared / "val.bin")
    vocab = data.tokenizer.get_vocab()  # token 0 is <unk>, never in the text
    itos = {i: s for s, i in vocab.items()}
    with open(prepared / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(vocab), "itos": itos, "stoi": vocab}, f)
    return folder


def peer_command(args: argparse.Namespace) -> list[str]:
    warmup = min(args.warmup, args.iters // 2)
    return [sys.executable, "-u", "train.py", "config/train_shakespeare_char.py",
            "--device=cpu", "--compile=False", f"--eval_iters={args.eval_iters}",
            f"--eval_interval={args.eval_every}", "--log_interval=1",
            f"--block_size={args.block_size}", f"--batch_size={args.batch_size}",
            f"--n_layer={args.n_layer}", f"--n_head={args.n_head}", f"--n_embd={args.n_embd}",
            f"--max_iters={args.iters}", f"--lr_decay_iters={args.iters}",
            f"--warmup_iters={warmup}", "--learning_rate=1e-3", "--min_lr=0.0",
            "--dropout=0.0", "--wandb_log=False", "--out_dir=out"]


def child_command(recipe: str, run: Path, args: argparse.Namespace) -> list[str]:
    keys = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "iters", "warmup",
            "eval_every", "eval_iters", "log_every", "threads", "precision")
    flags = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]
    return [sys.executable, "-u", str(Path(__file__).resolve()), "--child", recipe,
            "--run", str(run), *flags]


def exact_val_loss(run: Path, data, block_size: int) -> float:
    """Over every validation token (non-overlapping windows), untimed, after the run."""
    import genforge
    from genforge.eval.text.evaluate import held_out_nll

    nats, tokens, _ = held_out_nll(genforge.load(run), data.val, block_size, batch_size=64)
    return nats / tokens


def measure(side: str, tmp: Path, data, args: argparse.Namespace) -> dict:
    if side == "peer":
        result = launch(peer_command(args), peer_folder(tmp, data), args.threads)
        result["command"] = "python " + " ".join(peer_command(args)[2:])
        shutil.rmtree(tmp / "nanogpt")
    else:
        run = tmp / f"run-{side}"
        result = launch(child_command(side, run, args), REPO, args.threads)
        result["exact_val_loss"] = exact_val_loss(run, data, args.block_size)
        result["overrides"] = overrides(side, args)
        shutil.rmtree(run)
    ms = [x for i, x in result.pop("iteration_ms") if i % args.eval_every]  # no eval inside
    end = result["points"][-1]
    result.update(side=side, name=SIDES[side], val_loss=end["val_loss"],
                  ms_per_iteration=float(np.mean(ms)), ms_per_iteration_median=float(
                      np.median(ms)), iterations_timed=len(ms))
    print(f"  {result['name']:26s} {result['ms_per_iteration']:6.1f} ms/iter, "
          f"{result['wall_seconds']:6.1f} s wall, val {result['val_loss']:.4f} "
          f"(load {result['load_average_before']:.2f})", flush=True)
    return result


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    head = (f"{'side':26s} {'ms/iter':>8s} {'median':>7s} {'wall s':>7s} {'val':>7s} "
            f"{'exact val':>9s} {'load':>5s}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        exact = f"{r['exact_val_loss']:9.4f}" if "exact_val_loss" in r else f"{'-':>9s}"
        print(f"{r['name']:26s} {r['ms_per_iteration']:8.1f} {r['ms_per_iteration_median']:7.1f} "
              f"{r['wall_seconds']:7.1f} {r['val_loss']:7.4f} {exact} "
              f"{r['load_average_before']:5.2f}")
    print(f"\nval loss over wall time (estimate from {args.eval_iters} batches; s = seconds "
          "since launch)")
    print(f"{'step':>5s}  " + "  ".join(f"{r['name']:>26s}" for r in rows))
    for i, p in enumerate(rows[0]["points"]):
        cells = [f"{r['points'][i]['wall_seconds']:8.1f} s {r['points'][i]['val_loss']:.4f}"
                 if i < len(r["points"]) else "" for r in rows]
        print(f"{p['step']:5d}  " + "  ".join(f"{c:>26s}" for c in cells))
    if rows[0]["side"] == "peer":
        budget = rows[0]["wall_seconds"]
        for r in rows[1:]:
            inside = [p["val_loss"] for p in r["points"] if p["wall_seconds"] <= budget]
            best = f"{min(inside):.4f}" if inside else "none"
            print(f"{r['name']}: best val within nanoGPT's wall ({budget:.1f} s): {best}")


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", info)
    return {"cpu": model[1] if model else platform.processor(), "cpu_count": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in info, "avx512f": "avx512f" in info,
            "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="peer,nanogpt,genforge",
                        help="peer = nanoGPT itself; nanogpt, genforge = genforge's recipes")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100, help="(at most half of --iters)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-iters", type=int, default=20,
                        help="batches of each split per evaluation (nanoGPT's eval_iters)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="genforge's sides (nanoGPT on a CPU is always fp32)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/text_train.json"))
    parser.add_argument("--child", choices=tuple(RECIPES), help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "GENFORGE_DATA" not in os.environ:  # where text/tinyshakespeare.txt lives here
        os.environ["GENFORGE_DATA"] = str(REPO.parent / "shared" / "data")
    if args.child:
        return child(args)
    sides = args.sides.split(",")
    if unknown := set(sides) - set(SIDES):
        parser.error(f"unknown sides {sorted(unknown)}; allowed: {', '.join(SIDES)}")
    if "peer" in sides and not (PEER / "train.py").exists():
        print(f"note: {PEER} not found; nanoGPT is skipped")
        sides.remove("peer")

    from genforge.modalities.text.data import load_text
    from genforge.registry import load_config

    # tokenised once (or read from genforge's cache) before anything is timed
    data = load_text(load_config("shakespeare-char", overrides("nanogpt", args)).data)
    print(f"{args.iters} iterations, batch {args.batch_size} x {args.block_size} tokens, "
          f"{args.n_layer} layers x {args.n_embd}, {args.threads} threads, eval every "
          f"{args.eval_every} with {args.eval_iters} batches")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(side, Path(tmp), data, args) for side in sides]
    print_table(rows, args)
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": __import__("torch").__version__,
        "machine": machine(), "threads": args.threads,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "child", "run")},
        "data": {"corpus": "text/tinyshakespeare.txt (GENFORGE_DATA)", **data.record["split"],
                 "vocab_size": data.tokenizer.get_vocab_size(),
                 "note": "nanoGPT reads the same train/val token arrays as genforge"},
        "peer": "../shared/peers/nanogpt (nanoGPT 3adf61e, MIT), run from a temporary copy",
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
