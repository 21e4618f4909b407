"""Every tabular synthesizer on Adult (adult.data to fit, adult.test to test) under one fit
budget, plus train-on-real, DP-SGD runs and the German credit table.

    GENFORGE_DATA=../shared/data .venv/bin/python benchmarks/tables_adult.py --budget 150

Per synthesizer: its preset is trained by genforge.train with a budget of CPU seconds of
this process (a watcher sends SIGTERM; the loop stops after the step in flight and saves), so
the budget bounds the whole fit: data reading, mixture fitting and steps. CPU seconds bound
wall seconds on a dedicated machine, which a shared machine cannot give. Each preset runs as
shipped (its step count and learning-rate schedule are sized to end within the budget on the
slower, AVX2 machine type); a fit the budget cuts short shows fewer steps than its preset.
Then `--rows` rows are sampled (rows/s) and scored by genforge.eval.tables: quality (column
shapes and all column pairs), detection AUC, TSTR mean F1 of four classifiers, DCR,
membership-attack advantage, fairness gaps for `sex`. Writes
benchmarks/results/tables_adult.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import torch

import genforge
from genforge.data.tables import TablesDataConfig, load_tables
from genforge.eval.tables import evaluate_tables, utility
from genforge.registry import load_config

REPO = Path(__file__).resolve().parents[1]
QUIET = ["log.progress=false", "log.tensorboard=false", "log.sample_every=0",
         "log.checkpoint_every=1000000", "log.every=50"]


def fit(preset: str, overrides: list[str], budget: float, out: Path
        ) -> tuple[Path, float, float, int]:
    """Train until done or until this process has used `budget` CPU seconds (all threads);
    (run folder, wall seconds, CPU seconds, steps). CPU time, not wall time, because the
    benchmark machine is shared: a budget of B CPU seconds is at most B wall seconds on a
    dedicated machine."""
    cfg = load_config(preset, [*QUIET, *overrides])
    done = threading.Event()
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def watch() -> None:
        while not done.wait(0.5):
            if time.process_time() - cpu0 >= budget:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, daemon=True).start()
    try:
        result = genforge.train(cfg, out=out, overwrite=True)
    finally:
        done.set()
    return (result.run_dir, time.perf_counter() - wall0, time.process_time() - cpu0,
            result.step)


def score(run: Path, data, rows: int, trtr: dict, protected: str | None,
          **options: object) -> dict:
    model = genforge.load(run)
    start = time.perf_counter()
    synthetic = pd.concat(list(model.sample_chunks(rows, seed=0, **options)), ignore_index=True)
    seconds = time.perf_counter() - start
    info = model.data_info
    result = evaluate_tables(data.train_frame, data.test_frame, synthetic, info["schema"],
                             target=info["target"], positive=info["positive"],
                             protected=protected, utility_real=trtr)
    result["sampling_rows_per_s"] = rows / seconds
    return result


def row(name: str, fit: tuple, r: dict) -> dict:
    fit_s, cpu_s, steps = fit
    u, p, f = r.get("utility", {}), r.get("privacy", {}), r["fidelity"]
    tstr = u.get("tstr", {})
    return {"synthesizer": name, "fit_s": fit_s, "fit_cpu_s": cpu_s, "steps": steps,
            "rows_per_s": r.get("sampling_rows_per_s"), "quality": f["quality"],
            "shapes": f["column_shapes"], "pairs": f["column_pairs"],
            "detection_auc": f["detection_auc"], "tstr_f1": tstr.get("mean_f1"),
            "tstr_f1_each": tstr.get("f1"), "dcr_median": p.get("dcr_synthetic", {}).get("median"),
            "dcr_p5": p.get("dcr_synthetic", {}).get("p5"),
            "holdout_dcr_median": p.get("dcr_holdout", {}).get("median"),
            "exact_copies": p.get("exact_copy_rate"), "attack_advantage": p.get("attack_advantage"),
            "parity_gap": tstr.get("mean_parity_gap"),
            "opportunity_gap": tstr.get("mean_opportunity_gap")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=150.0, help="fit CPU seconds a model")
    parser.add_argument("--work", default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--rows", type=int, default=20000, help="synthetic rows to score")
    parser.add_argument("--kinds", default="copula,tvae,ctgan,tabddpm")
    parser.add_argument("--dp", default="1,3,10", help="epsilons of the DP-SGD runs ('' none)")
    parser.add_argument("--dp-kind", default="tabddpm")
    parser.add_argument("--dp-steps", type=int, default=160,
                        help="steps of each DP run; the noise is solved for them, so they must "
                             "fit the budget: a DP-SGD step (per-row gradients of a 512-row "
                             "batch) cost ~0.8 CPU-s on one AVX2 thread, ~15x a plain one")
    parser.add_argument("--temperature", type=float, default=None,
                        help="TabDDPM's sampling temperature of the categorical columns (the "
                             "plain sampler when not given)")
    parser.add_argument("--german", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; with 1, a budget of B CPU seconds is B wall seconds "
                             "on a dedicated machine, and a busy machine cannot inflate it "
                             "with threads spinning at barriers")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/tables_adult.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tables-bench-"))
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "avx512_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(),
                                 "load_average_at_start": os.getloadavg(),
                                 "torch_threads": args.threads},
                     "budget_s": args.budget, "rows_scored": args.rows,
                     "tabddpm_temperature": args.temperature, "tables": {}}

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    plan = [("adult", "sex", {k: f"adult-{k}" for k in args.kinds.split(",") if k})]
    if args.german:
        plan.append(("german-credit", "personal-status-sex",
                     {"copula": "german-credit-tabddpm", "tabddpm": "german-credit-tabddpm"}))
    for dataset, protected, presets in plan:
        data = load_tables(TablesDataConfig(dataset=dataset))
        info = data.info()
        kinds = {c["name"]: ("numeric" if c["kind"] in ("float", "int", "datetime")
                             else "categorical") for c in info["schema"]["columns"]}
        trtr = utility(data.train_frame, data.test_frame, kinds, info["target"],
                       info["positive"], protected)
        rows_n = min(args.rows, len(data)) if dataset != "adult" else args.rows
        table = results["tables"][dataset] = {"train_on_real": {
            "tstr_f1": trtr["mean_f1"], "tstr_f1_each": trtr["f1"],
            "parity_gap": trtr.get("mean_parity_gap"),
            "opportunity_gap": trtr.get("mean_opportunity_gap")}, "synthesizers": []}
        steps_seen = {}
        for kind, preset in presets.items():
            extra = []
            if kind == "copula" and not preset.endswith("copula"):
                extra = ["model.kind=copula", "train.ema_decay=null", "train.max_steps=4",
                         "train.batch_size=500", "train.warmup_steps=0"]
            run, seconds, cpu, steps = fit(preset, extra, args.budget,
                                           work / f"{dataset}-{kind}")
            steps_seen[kind] = steps
            knobs = {"temperature": args.temperature} \
                if kind == "tabddpm" and args.temperature is not None else {}
            r = score(run, data, rows_n, trtr, protected, **knobs)
            table["synthesizers"].append(row(kind, (seconds, cpu, steps), r))
            table["synthesizers"][-1]["run"] = run.name  # the folder under --work
            print(json.dumps(table["synthesizers"][-1], default=str), flush=True)
            save()
        if dataset == "adult" and args.dp:
            steps = args.dp_steps
            for eps in (float(e) for e in args.dp.split(",")):
                name = f"{args.dp_kind} DP eps={eps:g}"
                try:
                    run, seconds, cpu, done = fit(f"adult-{args.dp_kind}",
                                                  [f"train.max_steps={steps}",
                                                   "train.warmup_steps=10",
                                                   "train.ema_decay=null",
                                                   f"privacy.epsilon={eps}",
                                                   "privacy.delta=1e-5"],
                                                  args.budget, work / f"dp-{eps:g}")
                    r = score(run, data, rows_n, trtr, protected)
                    entry = row(name, (seconds, cpu, done), r)
                    record = json.loads((run / "run.json").read_text())
                    entry["privacy"] = record.get("privacy")
                except Exception as err:  # a failed DP run is a result too
                    entry = {"synthesizer": name, "error": f"{type(err).__name__}: {err}"}
                table["synthesizers"].append(entry)
                print(json.dumps(entry, default=str), flush=True)
                save()
    save()
    print_table(results)


def print_table(results: dict) -> None:
    cols = ["synthesizer", "fit_s", "fit_cpu_s", "steps", "rows_per_s", "quality", "detection_auc",
            "tstr_f1", "dcr_median", "dcr_p5", "attack_advantage", "parity_gap",
            "opportunity_gap"]
    for dataset, table in results["tables"].items():
        print(f"\n{dataset}  (train on real: mean F1 {table['train_on_real']['tstr_f1']:.3f}, "
              f"parity gap {table['train_on_real']['parity_gap']:.3f}, opportunity gap "
              f"{table['train_on_real']['opportunity_gap']:.3f})")
        print(" | ".join(cols))
        for r in table["synthesizers"]:
            print(" | ".join(_cell(r.get(c)) for c in cols))


def _cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)


if __name__ == "__main__":
    main()
