"""Spoken digits (FSDD): each audio route's quality against CPU-minutes of training.

    .venv/bin/python benchmarks/audio_fsdd.py --data-root ../shared/data --budgets 3 8
    .venv/bin/python benchmarks/audio_fsdd.py --budgets 0.4 --n 20 --routes fsdd-cdcgan  # smoke
    .venv/bin/python benchmarks/audio_fsdd.py --collect --budgets 1   # gather evals in --runs

CPU-minutes are process CPU time, so a busy machine stretches the wall time by the share it
gives: the recorded run (benchmarks/results/audio_fsdd.json, budgets 3 and 8, both reached by
both routes) got 11-19 % of a core per process (8 CPU-minutes in 2495-2589 s of wall time,
`train_wall_s`), with load averages of 2-7 on 2 cores recorded before and after it.

Each route (a preset) trains with `genforge train` in its own process until the process has
used the first budget of CPU time (user + system, read from /proc, so a busy machine costs wall
time, not the measure); SIGTERM then stops it after the step in flight with a checkpoint. A copy
of that checkpoint is evaluated with `genforge eval` (in the background) while `genforge train
--resume` continues to the next budget, and so on. Evaluation: the cached FSDD audio classifier
hears n samples asked for digit i mod 10 (vocoder included) against the 300 test clips: Fréchet
distance of its features, CAS (heard as asked, per digit), inception-style score, samples/s;
beside them the real-vs-real floor and the test clips through the run's own log-mel and
vocoder (the ceiling for a spectrogram model). Routes run side by side, one thread each.
Writes benchmarks/results/audio_fsdd.json, a table, and a few WAVs and a spectrogram grid in
docs/results/.
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLOCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def train_until(cmd: list[str], budget_s: float, log: Path, env: dict, run: Path) -> dict:
    """Run a training command until it has used `budget_s` CPU seconds (start-up included),
    then SIGTERM it; never before its first metrics row, so that it has trained at all."""
    start = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        used = 0.0
        while proc.poll() is None:
            try:
                used = cpu_seconds(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            if used >= budget_s and (run / "metrics.jsonl").exists():
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(1.0)
        proc.wait()
    return {"cpu_s": used, "wall_s": time.perf_counter() - start, "returncode": proc.returncode}


def last_step(run: Path) -> int:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return max((r.get("step", 0) for r in rows), default=0)


def snapshot(run: Path, to: Path) -> Path:
    """The sampling weights and records of a run, so training can go on beside its eval."""
    if to.exists():
        shutil.rmtree(to)
    to.mkdir(parents=True)
    for name in ("model.safetensors", "config.yaml", "run.json", "metrics.jsonl"):
        if (run / name).exists():
            shutil.copy2(run / name, to / name)
    return to


def evaluate(run: Path, args: argparse.Namespace, env: dict, log: Path) -> dict:
    cmd = [sys.executable, "-m", "genforge", "eval", str(run), "--n", str(args.n),
           "--data-root", args.data_root, "--out", str(run / "eval")]
    with log.open("a") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, check=True)
    return json.loads((run / "eval" / "metrics.json").read_text())


def route(preset: str, args: argparse.Namespace, results: dict, env: dict) -> None:
    run = Path(args.runs) / preset
    log = Path(args.runs) / f"{preset}.log"
    base = [sys.executable, "-m", "genforge", "train"]
    overrides = ["train.max_steps=1000000", "log.sample_every=0", "log.progress=false",
                 "log.tensorboard=false", "log.checkpoint_every=1000000", "log.every=10"]
    used, evals, rows = 0.0, [], []
    for i, budget in enumerate(args.budgets):
        if i == 0:
            cmd = [*base, preset, *overrides, "--data-root", args.data_root, "--out", str(run),
                   "--overwrite"]
        else:
            cmd = [*base, "--resume", str(run), "--data-root", args.data_root]
        part = train_until(cmd, budget * 60 - used, log, env, run)
        used += part["cpu_s"]
        snap = snapshot(run, Path(args.runs) / f"{preset}-{budget:g}min")
        row = {"preset": preset, "budget_cpu_min": budget, "cpu_min": round(used / 60, 2),
               "step": last_step(run), "train_wall_s": round(part["wall_s"], 1)}
        (snap / "stage.json").write_text(json.dumps(row))
        rows.append(row)
        thread = threading.Thread(target=lambda r=row, s=snap: r.update(
            {"eval": evaluate(s, args, env, log), "run": str(s)}))
        thread.start()
        evals.append(thread)
    for thread in evals:
        thread.join()
    results[preset] = rows


def collect(args: argparse.Namespace) -> dict:
    """Rows from the evaluated snapshots already in --runs (after an interrupted run)."""
    results: dict = {}
    for preset in args.routes:
        for snap in sorted(Path(args.runs).glob(f"{preset}-*min"),
                           key=lambda p: float(p.name.rsplit("-", 1)[1][:-3])):
            if not (snap / "eval" / "metrics.json").exists():
                continue
            budget = float(snap.name.rsplit("-", 1)[1][:-3])
            row = {"preset": preset, "budget_cpu_min": budget, "cpu_min": budget,
                   "step": last_step(snap), "train_wall_s": None}
            if (snap / "stage.json").exists():
                row.update(json.loads((snap / "stage.json").read_text()))
            row["eval"] = json.loads((snap / "eval" / "metrics.json").read_text())
            row["run"] = str(snap)
            results.setdefault(preset, []).append(row)
    return results


def keep_examples(rows: dict, args: argparse.Namespace) -> list[str]:
    """A few WAVs and a spectrogram grid of the longest-trained runs, in docs/results/."""
    import numpy as np

    import genforge

    out = REPO / "docs" / "results"
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for preset, runs in rows.items():
        model = genforge.load(runs[-1]["run"])
        waves = model.sample(10, seed=0, label=list(range(10)))  # digits 0..9
        kept.append(model.write(waves, out / f"{preset}-digits-0-9.wav"))
        grid = model.sample(20, seed=1, label=np.arange(20) % 10)
        kept.append(model.write(grid, out / f"{preset}-grid.png", nrow=10))
        if preset == "fsdd-diffusion":
            sevens = model.sample(3, seed=2, label=7)
            kept.append(model.write(sevens, out / f"{preset}-sevens.wav"))
    return [str(Path(k).relative_to(REPO)) for k in kept]


def table(results: dict) -> str:
    lines = ["| route | CPU-min | steps | FD | CAS | IS | samples/s |",
             "|---|---|---|---|---|---|---|"]
    floor = None
    for rows in results.values():
        for r in rows:
            m = r["eval"]["metrics"]
            lines.append(f"| {r['preset']} | {r['cpu_min']:.2f} | {r['step']} | {m['fd']:.2f} | "
                         f"{m['accuracy']['accuracy']:.3f} | {m['inception_score']['mean']:.2f} "
                         f"| {m['samples_per_s']:.2f} |")
            floor = r["eval"]["baselines"]
    if floor:
        rr, voc = floor["real_vs_real"], floor["vocoded_real"]
        lines.append(f"| real vs real (floor) | | | {rr['fd']:.2f} | "
                     f"{rr['accuracy']['accuracy']:.3f} | {rr['inception_score']['mean']:.2f} | |")
        lines.append(f"| real through log-mel + vocoder | | | {voc['fd']:.2f} | "
                     f"{voc['accuracy']['accuracy']:.3f} | {voc['inception_score']['mean']:.2f} "
                     "| |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--routes", nargs="+", default=["fsdd-diffusion", "fsdd-cdcgan"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[1.5, 4.0],
                        help="cumulative CPU-minutes of training at which to evaluate")
    parser.add_argument("--n", type=int, default=200, help="samples per evaluation")
    parser.add_argument("--runs", default="/tmp/genforge-audio-bench")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "audio_fsdd.json"))
    parser.add_argument("--no-examples", action="store_true")
    parser.add_argument("--collect", action="store_true",
                        help="no training: gather the evaluations already in --runs")
    args = parser.parse_args()
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    results: dict = collect(args) if args.collect else {}
    threads = [] if args.collect else [threading.Thread(target=route, args=(p, args, results, env))
                                       for p in args.routes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    record = {
        "args": vars(args), "machine": {"platform": platform.platform(),
                                        "processor": platform.processor(),
                                        "cpus": os.cpu_count(), "loadavg_before": load_before,
                                        "loadavg_after": load_after},
        "wall_s": round(time.perf_counter() - start, 1),
        "results": {p: results[p] for p in args.routes if p in results},
    }
    if not args.no_examples:
        record["examples"] = keep_examples(record["results"], args)
    for rows in record["results"].values():  # metrics.json paths are in /tmp: keep the numbers
        for r in rows:
            r["run"] = Path(r["run"]).name
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(table(record["results"]))
    print(f"wrote {args.out} ({record['wall_s']:.0f} s wall, load {load_before} -> {load_after})")


if __name__ == "__main__":
    main()
