"""The same measurements on two checkouts, side by side on one machine: what a refactor must
not change (issue 31: "same speed, the throughput and sampling benchmarks within noise").

    GENFORGE_DATA=../shared/data .venv/bin/python benchmarks/before_after.py \
        --before ../before-checkout --rounds 3

Each measurement runs in a fresh process whose PYTHONPATH is one checkout; the checkouts
alternate round by round, so a machine that slows down (other jobs) slows both alike. Measured:
- training: benchmarks/train_throughput.py of each checkout (genforge's loop and the plain
  PyTorch loop, MNIST DCGAN fp32, one thread): images/s of both, and their ratio, which a
  shared machine's load moves less than either;
- sampling through the public API: genforge.load of the run folders kept in
  tests/legacy_runs (written before the redesign) and the median seconds of `model.sample`
  calls (GAN and diffusion images, text, a table), fp32, one thread.
Prints a table; writes JSON (default benchmarks/results/before_after.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# run folder under tests/legacy_runs -> the sample call timed (n, keyword options)
SAMPLE_CALLS = {
    "gan-images": (1024, {}),
    "diffusion-images": (8, {"steps": 20, "scheduler": "ddim"}),
    "ar-text": (4, {"max_new_tokens": 64, "temperature": 0.0}),
    "tabular-tvae": (20000, {}),
}
SAMPLE_SCRIPT = """
import json, statistics, sys, time
import torch
torch.set_num_threads(1)
import genforge
out = {}
for name, (n, options) in json.loads(sys.argv[1]).items():
    model = genforge.load(sys.argv[2] + "/" + name)
    model.sample(n, seed=0, precision="fp32", **options)  # warm-up
    times = []
    for seed in range(int(sys.argv[3])):
        start = time.perf_counter()
        model.sample(n, seed=seed, precision="fp32", **options)
        times.append(time.perf_counter() - start)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def run(tree: Path, args: list[str], env_extra: dict[str, str] | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "GENFORGE_AUTO_PRECISION": "fp32", **(env_extra or {})}
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{tree}: {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def training(tree: Path, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        run(tree, ["benchmarks/train_throughput.py", "--models", "dcgan", "--precisions", "fp32",
                   "--steps", str(steps), "--warmup", "10", "--repeats", "1", "--threads", "1",
                   "--out", str(out)])
        row = json.loads(out.read_text())["summary"][0]
    return {"genforge_images_per_s": row["genforge_images_per_s"],
            "plain_images_per_s": row["plain_images_per_s"], "ratio": row["ratio"]}


def sampling(tree: Path, calls: int) -> dict:
    return json.loads(run(tree, ["-c", SAMPLE_SCRIPT, json.dumps(SAMPLE_CALLS),
                                 str(REPO / "tests" / "legacy_runs"), str(calls)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the other checkout (e.g. a worktree "
                        "of the commit before the change)")
    parser.add_argument("--after", default=str(REPO))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="timed training steps")
    parser.add_argument("--calls", type=int, default=5, help="timed sample calls a model")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/before_after.json"))
    args = parser.parse_args()
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    commits = {side: subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                                    capture_output=True, text=True).stdout.strip()
               for side, tree in trees.items()}
    rounds: list[dict] = []
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for side in order:
            rounds.append({"round": r, "side": side,
                           "training": training(trees[side], args.steps),
                           "sampling_s": sampling(trees[side], args.calls)})
            print(json.dumps(rounds[-1]), flush=True)
    summary: dict = {}
    for side in trees:
        mine = [x for x in rounds if x["side"] == side]
        summary[side] = {
            "training": {k: statistics.median(x["training"][k] for x in mine)
                         for k in mine[0]["training"]},
            "sampling_s": {k: statistics.median(x["sampling_s"][k] for x in mine)
                           for k in mine[0]["sampling_s"]}}
    after_over_before = {
        "training_ratio": summary["after"]["training"]["ratio"] /
        summary["before"]["training"]["ratio"],
        **{f"sampling_time_{k}": summary["after"]["sampling_s"][k] /
           summary["before"]["sampling_s"][k] for k in SAMPLE_CALLS}}
    result = {"command": "benchmarks/before_after.py " + " ".join(
                  "PATH" if a.startswith("/") else a for a in sys.argv[1:]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commits": commits,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "avx512_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(),
                          "load_average_at_end": os.getloadavg(), "threads": 1},
              "settings": {"rounds": args.rounds, "steps": args.steps, "calls": args.calls,
                           "sample_calls": SAMPLE_CALLS},
              "summary": summary, "after_over_before": after_over_before, "rounds": rounds}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'':24} {'before':>10} {'after':>10} {'after/before':>13}")
    tr = summary
    for key in ("genforge_images_per_s", "plain_images_per_s", "ratio"):
        b, a = tr["before"]["training"][key], tr["after"]["training"][key]
        print(f"train {key:18} {b:10.4g} {a:10.4g} {a / b:13.3f}")
    for key in SAMPLE_CALLS:
        b, a = tr["before"]["sampling_s"][key], tr["after"]["sampling_s"][key]
        print(f"sample s {key:15} {b:10.4g} {a:10.4g} {a / b:13.3f}")


if __name__ == "__main__":
    main()
