"""The one-run privacy audit (`genforge audit`) on Adult: non-private runs against DP runs.

    GENFORGE_DATA=../shared/data OMP_NUM_THREADS=1 nice -n 10 \\
        .venv/bin/python benchmarks/audit_adult.py tabddpm-small tabddpm-small-dp3

Each case names a preset and overrides. A base run of a few steps is trained only to hold the
config (the audit retrains from its config.yaml); the audit then retrains that config for
`steps` steps on the training rows plus the included canaries, samples as many rows and
bounds epsilon (genforge.eval.tables.audit). A DP case keeps its privacy section in the retraining:
the claimed epsilon is the retraining's own. Results are merged into
benchmarks/results/audit_adult.json by case name (cases can be run one at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import genforge
from genforge.eval.tables.audit import AuditOptions, audit_run
from genforge.registry import load_config

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "audit_adult.json"
QUIET = ["log.progress=false", "log.tensorboard=false", "log.sample_every=0",
         "log.checkpoint_every=1000000"]
DP = ["train.precision=fp32", "privacy.delta=1e-5"]
# name -> (preset, overrides, audited steps, canaries)
CASES: dict[str, tuple[str, list[str], int, int]] = {
    "tvae": ("adult-tvae", [], 3000, 1000),
    "tvae-small": ("adult-tvae", ["data.limit=1000"], 2000, 200),
    "tvae-500": ("adult-tvae", ["data.limit=500", "train.batch_size=250"], 4000, 200),
    "tvae-500-dp3": ("adult-tvae", ["data.limit=500", "train.batch_size=250",
                                    "privacy.epsilon=3", *DP], 600, 200),
    "tabddpm": ("adult-tabddpm", [], 3000, 1000),
    "tabddpm-small": ("adult-tabddpm", ["data.limit=1000"], 3000, 200),
    "tabddpm-500": ("adult-tabddpm", ["data.limit=500", "train.batch_size=250"], 4000, 200),
    "tabddpm-500-dp3": ("adult-tabddpm", ["data.limit=500", "train.batch_size=250",
                                          "privacy.epsilon=3", *DP], 600, 200),
    "tabddpm-small-dp3": ("adult-tabddpm", ["data.limit=1000", "privacy.epsilon=3", *DP],
                          1000, 200),
    "tabddpm-dp3": ("adult-tabddpm", ["privacy.epsilon=3", *DP], 1000, 1000),
    # marginal-based: fitted in one pass, so "steps" is the preset's single pass
    "aim-dp1": ("adult-aim", ["privacy.epsilon=1", "privacy.delta=1e-5"], 1, 1000),
    "mst-dp1": ("adult-mst", ["privacy.epsilon=1", "privacy.delta=1e-5"], 1, 1000),
    "aim-dp3": ("adult-aim", ["privacy.epsilon=3", "privacy.delta=1e-5"], 1, 1000),
    "mst-dp3": ("adult-mst", ["privacy.epsilon=3", "privacy.delta=1e-5"], 1, 1000),
    "aim-dp05": ("adult-aim", ["privacy.epsilon=0.5", "privacy.delta=1e-5"], 1, 1000),
}


def run_case(name: str, seed: int, confidence: float) -> dict:
    preset, overrides, steps, canaries = CASES[name]
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        cfg = load_config(preset, [*QUIET, *overrides, "train.max_steps=101"])
        base = genforge.train(cfg, out=Path(tmp) / name).run_dir
        start = time.perf_counter()
        _, paths = audit_run(base, AuditOptions(canaries=canaries, confidence=confidence,
                                                seed=seed, steps=steps))
        wall = time.perf_counter() - start
        result = json.loads(paths["audit"].read_text())
    result.pop("run", None)  # a temporary folder: not a path worth keeping
    result.pop("previous_audit", None)
    result.pop("run_claimed_epsilon", None)  # the config-holding base run's: not audited
    return {"preset": preset, "overrides": overrides, "audited_steps": steps,
            "audit_wall_seconds": round(wall, 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", choices=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args()
    for name in args.cases:
        case = run_case(name, args.seed, args.confidence)
        case.update(command=f"benchmarks/audit_adult.py {name} --seed {args.seed} "
                            f"--confidence {args.confidence}",
                    machine={"platform": platform.platform(), "cpus": os.cpu_count(),
                             "avx512_bf16": "avx512_bf16" in
                             Path("/proc/cpuinfo").read_text(),
                             "threads": os.environ.get("OMP_NUM_THREADS"),
                             "shared": "2 cores shared with other jobs; wall times inflated"},
                    date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seed=args.seed,
                    data="Adult adult.data (data/tabular/adult in GENFORGE_DATA)")
        # read again just before writing: other cases may have been run meanwhile
        results = json.loads(OUT.read_text()) if OUT.exists() else {"cases": {}}
        results["cases"][name] = case
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        bound, claim = case["epsilon_lower_bound"], case["claimed_epsilon"]
        print(f"{name}: epsilon >= {bound:.3f} (claimed {claim}), {case['correct']} of "
              f"{case['guesses']} right, audit {case['audit_wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
