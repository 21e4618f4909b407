"""One seed of MST and AIM on Adult at epsilon 1, delta 1e-5: fit time and the eval's scores.

    nice -n 10 python benchmarks/marginal_adult_smoke.py --data-root ../shared/data [mst aim]

Protocol: adult.data only. genforge's own split (data.test_split=0.2, split_seed=0) holds out
20 % of adult.data as the validation split the scores use; adult.test is not touched. The
presets' public schema (data/tabular/adult.schema.yaml) fixes bounds and categories. Fit time
is the wall and CPU time (all threads of this process) of genforge.train; the scores are
genforge.eval.tables.evaluate.evaluate_tables on as many synthetic rows as training rows.
Writes benchmarks/results/marginal_adult_smoke.json (merging runs of other kinds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "marginal_adult_smoke.json"


def adult_with_header(data_root: Path, folder: Path) -> Path:
    from genforge.modalities.tables.data import ADULT_COLUMNS

    frame = pd.read_csv(data_root / "tabular" / "adult" / "adult.data", header=None,
                        names=ADULT_COLUMNS, dtype=str, skipinitialspace=True)
    path = folder / "adult_data.csv"
    frame.to_csv(path, index=False)
    return path


def run(kind: str, csv: Path, seed: int, folder: Path, extra: list[str]) -> dict:
    import genforge
    from genforge.eval.tables.evaluate import evaluate_tables
    from genforge.modalities.tables.data import load_tables
    from genforge.registry import load_config

    overrides = [f"data.path={csv}", "data.test_split=0.2", "data.split_seed=0",
                 f"train.seed={seed}", "log.progress=false", "log.tensorboard=false", *extra]
    cfg = load_config(f"adult-{kind}", overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    result = genforge.train(cfg, out=folder / kind)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model = genforge.load(result.run_dir)
    data = load_tables(cfg.data)  # the same rows, read as eval reads them
    synthetic = model.sample(len(data), seed=seed)
    scores = evaluate_tables(data.train_frame, data.test_frame, synthetic,
                             model.data_info["schema"], target="income", positive=">50K",
                             seed=seed)
    record = json.loads((result.run_dir / "run.json").read_text())["privacy"]
    return {"synthesizer": kind, "preset": f"adult-{kind}", "seed": seed, "fit_wall_s": wall,
            "fit_cpu_s": cpu, "quality": scores["fidelity"]["quality"],
            "shapes": scores["fidelity"]["column_shapes"],
            "pairs": scores["fidelity"]["column_pairs"],
            "per_column_shapes": scores["fidelity"]["per_column"],
            "detection_auc": scores["fidelity"]["detection_auc"],
            "tstr_f1": scores["utility"]["tstr"]["mean_f1"],
            "tstr_f1_each": scores["utility"]["tstr"]["f1"],
            "trtr_f1": scores["utility"]["trtr"]["mean_f1"],
            "dcr_median": scores.get("privacy", {}).get("dcr_median"),
            "holdout_dcr_median": scores.get("privacy", {}).get("holdout_dcr_median"),
            "epsilon": record["epsilon"], "delta": record["delta"], "privacy_items": [
                {k: v for k, v in item.items() if k != "detail"} for item in record["items"]],
            "marginals_measured": record["items"][-1]["detail"]["marginals"],
            "config": {"bins": cfg.model.bins, "rounds": cfg.model.rounds,
                       "max_model_size": cfg.model.max_model_size},
            "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kinds", nargs="*", default=["mst", "aim"])
    parser.add_argument("--data-root", default=os.environ.get("GENFORGE_DATA", "data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--set", action="append", default=[], help="a config override")
    args = parser.parse_args()
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        csv = adult_with_header(Path(args.data_root), Path(tmp))
        for kind in args.kinds:
            previous["runs"][kind] = run(kind, csv, args.seed, Path(tmp), args.set)
            previous["runs"][kind]["overrides"] = args.set
            previous["runs"][kind]["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    previous.update({
        "command": "nice -n 10 python benchmarks/marginal_adult_smoke.py --data-root "
                   "../shared/data " + " ".join([*args.kinds, *(f"--set {s}" for s in args.set)]),
        "split": "adult.data: 80 % fit, 20 % validation (data.test_split=0.2, split_seed=0); "
                 "adult.test untouched",
        "schema": "data/tabular/adult.schema.yaml (public)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "avx512_bf16": "avx512_bf16" in cpu, "load_average_at_end": os.getloadavg(),
                    "python": sys.version.split()[0]},
        "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip(),
        "note": "one seed; the machine was shared (see load average): CPU seconds are the "
                "fit's cost, wall seconds depend on the load"})
    args.out.write_text(json.dumps(previous, indent=1) + "\n")
    print(json.dumps({k: {m: v[m] for m in ("fit_cpu_s", "tstr_f1", "quality")}
                      for k, v in previous["runs"].items()}, indent=1))


if __name__ == "__main__":
    main()
