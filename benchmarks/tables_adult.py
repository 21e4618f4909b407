"""Every tabular synthesizer on Adult under one fit budget and several seeds, plus
train-on-real, DP runs and the German credit table.

    GENFORGE_DATA=../shared/data .venv/bin/python benchmarks/tables_adult.py --split validation
    GENFORGE_DATA=../shared/data .venv/bin/python benchmarks/tables_adult.py --split test

The protocol: presets and knobs (TabDDPM's temperature, step counts) are chosen with
`--split validation`: a stratified 20 % of adult.data (seed 0) is held out and scored, the
other 80 % is fitted; adult.test is not read. `--split test` fits all of adult.data and scores
adult.test, once, for the reported table. Every synthesizer runs with each of `--seeds`
(training and sampling seed) and is reported as mean and sample sd over the seeds.

Per synthesizer: its preset is trained by genforge.train with a budget of CPU seconds of
this process (a watcher sends SIGTERM; the loop stops after the step in flight and saves), so
the budget bounds the whole fit: data reading, mixture fitting and steps. CPU seconds bound
wall seconds on a dedicated machine, which a shared machine cannot give. Each preset runs as
shipped (its step count and learning-rate schedule are sized to end within the budget on the
slower, AVX2 machine type); a fit the budget cuts short shows fewer steps than its preset.
Then `--rows` rows are sampled (rows/s) and scored by genforge.eval.tables.evaluate: quality (column
shapes and all column pairs), detection AUC, TSTR mean F1 of four classifiers, DCR (and the
flag when it is below the hold-out's), membership-attack advantage, fairness gaps for `sex`.
Synthesizers are named by preset; a preset this checkout does not have is skipped with a
note. Writes benchmarks/results/tables_adult.json (`--split test`) or
tables_adult_validation.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import torch

import genforge
from genforge.data.roots import find_in_roots
from genforge.eval.tables.evaluate import evaluate_tables, utility
from genforge.modalities.tables.data import ADULT_COLUMNS, TablesDataConfig, load_tables, read_table
from genforge.registry import PRESETS, load_config

REPO = Path(__file__).resolve().parents[1]
QUIET = ["log.progress=false", "log.tensorboard=false", "log.sample_every=0",
         "log.checkpoint_every=1000000", "log.every=50"]
VALIDATION_SHARE, VALIDATION_SEED = 0.2, 0
MARGINAL = ("aim", "mst")  # DP by measurement, not DP-SGD: no step knobs


def adult_split(split: str, work: Path) -> tuple[list[str], TablesDataConfig, dict]:
    """(data overrides for genforge.train, the config that loads the same rows, a record).
    'test': adult.data to fit, adult.test to score (the preset's own data). 'validation':
    adult.data cut 80/20, stratified on income with a fixed seed, written as two CSVs under
    `work`; adult.test is not read."""
    if split == "test":
        return [], TablesDataConfig(dataset="adult"), {
            "split": "test", "fit": "adult.data (all rows)", "scored": "adult.test"}
    from sklearn.model_selection import train_test_split

    folder = find_in_roots("tabular/adult", None, "adult.data")
    rows = read_table(folder / "adult.data", TablesDataConfig(dataset="adult"),
                      names=ADULT_COLUMNS)
    fit_rows, held = train_test_split(rows, test_size=VALIDATION_SHARE,
                                      random_state=VALIDATION_SEED, stratify=rows["income"])
    work.mkdir(parents=True, exist_ok=True)
    paths = {"fit": work / "adult-fit.csv", "validation": work / "adult-validation.csv"}
    fit_rows.sort_index().to_csv(paths["fit"], index=False, na_rep="?")
    held.sort_index().to_csv(paths["validation"], index=False, na_rep="?")
    cfg = TablesDataConfig(dataset="adult", path=str(paths["fit"]),
                           test_path=str(paths["validation"]))
    return ([f"data.path={paths['fit']}", f"data.test_path={paths['validation']}"], cfg,
            {"split": "validation", "fit": f"adult.data minus the validation rows "
             f"({len(fit_rows)} rows)", "scored": f"{VALIDATION_SHARE:.0%} of adult.data, "
             f"stratified on income, seed {VALIDATION_SEED} ({len(held)} rows)"})


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


def score(run: Path, data, rows: int, trtr: dict, protected: str | None, seed: int = 0,
          **options: object) -> dict:
    model = genforge.load(run)
    start = time.perf_counter()
    synthetic = pd.concat(list(model.sample_chunks(rows, seed=seed, **options)),
                          ignore_index=True)
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
            "copies_training": p.get("copies_training"),
            "exact_copies": p.get("exact_copy_rate"), "attack_advantage": p.get("attack_advantage"),
            "parity_gap": tstr.get("mean_parity_gap"),
            "opportunity_gap": tstr.get("mean_opportunity_gap")}


SUMMARISED = ("fit_cpu_s", "quality", "detection_auc", "tstr_f1", "dcr_median",
              "attack_advantage", "parity_gap", "opportunity_gap")


def summarise(entries: list[dict]) -> list[dict]:
    """Mean and sample sd over the seeds of each synthesizer (sd 0 for one seed)."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        if "error" not in e:
            groups.setdefault(e["synthesizer"], []).append(e)
    out = []
    for name, runs in groups.items():
        entry: dict = {"synthesizer": name, "seeds": [r["seed"] for r in runs]}
        for key in SUMMARISED:
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                entry[key] = {"mean": statistics.fmean(values),
                              "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
        entry["copies_training"] = [bool(r.get("copies_training")) for r in runs]
        out.append(entry)
    return out


def known_presets(names: list[str]) -> list[str]:
    """The names this checkout has; the others are skipped with a printed note."""
    for name in names:
        if name not in PRESETS:
            print(f"note: preset {name!r} is not in this checkout; skipped", flush=True)
    return [n for n in names if n in PRESETS]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="validation: fit 80 %% of adult.data, score the other 20 %% (for "
                             "choosing presets and knobs); test: fit adult.data, score "
                             "adult.test (the reported table, run once)")
    parser.add_argument("--seeds", default="0,1,2", help="training and sampling seeds")
    parser.add_argument("--budget", type=float, default=150.0, help="fit CPU seconds a model")
    parser.add_argument("--work", default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--rows", type=int, default=20000, help="synthetic rows to score")
    parser.add_argument("--synthesizers",
                        default="adult-copula,adult-tvae,adult-ctgan,adult-tabddpm,adult-aim,"
                                "adult-mst", help="presets of the non-private runs")
    parser.add_argument("--dp", default="1,3,10", help="epsilons of the DP runs ('' none)")
    parser.add_argument("--dp-synthesizers", default="adult-tabddpm,adult-aim,adult-mst",
                        help="presets of the DP runs, each at each epsilon")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--dp-overrides", default="",
                        help="extra key=value overrides of the DP runs, comma-separated (e.g. "
                             "data.schema=null: preprocessing released with DP, no public "
                             "schema); they are added to the row's name")
    parser.add_argument("--dp-steps", type=int, default=160,
                        help="steps of each DP-SGD run; the noise is solved for them, so they "
                             "must fit the budget: a DP-SGD step (per-row gradients of a "
                             "512-row batch) cost ~0.8 CPU-s on one AVX2 thread, ~15x a plain "
                             "one")
    parser.add_argument("--temperature", type=float, default=None,
                        help="TabDDPM's sampling temperature of the categorical columns (the "
                             "plain sampler when not given); choose it with --split validation")
    parser.add_argument("--german", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; with 1, a budget of B CPU seconds is B wall seconds "
                             "on a dedicated machine, and a busy machine cannot inflate it "
                             "with threads spinning at barriers")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/"
                        "tables_adult.json (test) or tables_adult_validation.json")
    return parser.parse_args()


def dp_overrides(preset: str, eps: float, delta: float, steps: int) -> list[str]:
    """The privacy knobs; DP-SGD presets also get a step count the noise is solved for."""
    privacy = [f"privacy.epsilon={eps}", f"privacy.delta={delta}"]
    if load_config(preset).model.kind in MARGINAL:
        return privacy
    return [f"train.max_steps={steps}", "train.warmup_steps=10", "train.ema_decay=null",
            *privacy]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tables-bench-"))
    out = Path(args.out or REPO / "benchmarks/results" / (
        "tables_adult.json" if args.split == "test" else "tables_adult_validation.json"))
    adult_overrides, adult_cfg, protocol = adult_split(args.split, work / "split")
    results: dict = {"command": "benchmarks/tables_adult.py " + " ".join(
                         "PATH" if a.startswith("/") else a for a in sys.argv[1:]),
                     "date": time.strftime("%Y-%m-%d"),
                     "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "avx512_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text(),
                                 "load_average_at_start": os.getloadavg(),
                                 "torch_threads": args.threads},
                     "protocol": protocol, "seeds": seeds, "delta": args.delta,
                     "budget_s": args.budget, "rows_scored": args.rows,
                     "tabddpm_temperature": args.temperature, "tables": {}}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=str))

    runs = [(p, p, []) for p in known_presets(args.synthesizers.split(","))]
    if args.dp:
        for preset in known_presets(args.dp_synthesizers.split(",")):
            for eps in (float(e) for e in args.dp.split(",")):
                extra = [o for o in args.dp_overrides.split(",") if o]
                runs.append((" ".join([f"{preset} eps={eps:g}", *extra]), preset,
                             [*dp_overrides(preset, eps, args.delta, args.dp_steps), *extra]))
    plan = [("adult", "sex", adult_cfg, adult_overrides, runs)]
    if args.german:  # its own 30 % hold-out of german.data, whatever --split says
        copula = ["model.kind=copula", "train.ema_decay=null", "train.max_steps=4",
                  "train.batch_size=500", "train.warmup_steps=0"]
        plan.append(("german-credit", "personal-status-sex",
                     TablesDataConfig(dataset="german-credit"), [],
                     [("copula", "german-credit-tabddpm", copula),
                      ("tabddpm", "german-credit-tabddpm", [])]))
    for dataset, protected, cfg, data_overrides, runs in plan:
        table = results["tables"][dataset] = run_table(
            dataset, protected, cfg, data_overrides, runs, seeds, args, work, save, results)
        table["summary"] = summarise(table["synthesizers"])
        save()
    print_table(results)


def run_table(dataset: str, protected: str, cfg: TablesDataConfig, data_overrides: list[str],
              runs: list[tuple[str, str, list[str]]], seeds: list[int],
              args: argparse.Namespace, work: Path, save, results: dict) -> dict:
    """Every (name, preset, overrides) of `runs` with every seed on one data set."""
    data = load_tables(cfg)
    info = data.info()
    kinds = {c["name"]: ("numeric" if c["kind"] in ("float", "int", "datetime")
                         else "categorical") for c in info["schema"]["columns"]}
    trtr = utility(data.train_frame, data.test_frame, kinds, info["target"],
                   info["positive"], protected)
    rows_n = min(args.rows, len(data)) if dataset != "adult" else args.rows
    table = results["tables"][dataset] = {
        "rows": {"fit": len(data), "scored": len(data.test_frame)},
        "train_on_real": {"tstr_f1": trtr["mean_f1"], "tstr_f1_each": trtr["f1"],
                          "parity_gap": trtr.get("mean_parity_gap"),
                          "opportunity_gap": trtr.get("mean_opportunity_gap")},
        "synthesizers": []}
    for name, preset, overrides in runs:
        for seed in seeds:
            folder = work / dataset / f"{name.replace(' ', '-')}-s{seed}"
            try:
                run, seconds, cpu, steps = fit(
                    preset, [*data_overrides, *overrides, f"train.seed={seed}"], args.budget,
                    folder)
                kind = genforge.load(run).config.model.kind
                knobs = {"temperature": args.temperature} \
                    if kind == "tabddpm" and args.temperature is not None else {}
                r = score(run, data, rows_n, trtr, protected, seed=seed, **knobs)
                entry = row(name, (seconds, cpu, steps), r)
                record = json.loads((run / "run.json").read_text())
                if record.get("privacy"):
                    entry["privacy"] = record["privacy"]
                entry["run"] = f"{dataset}/{run.name}"  # the folder under --work
            except Exception as err:  # a failed run is a result too
                entry = {"synthesizer": name, "error": f"{type(err).__name__}: {err}"}
            entry["seed"] = seed
            table["synthesizers"].append(entry)
            print(json.dumps(entry, default=str), flush=True)
            save()
    return table


def print_table(results: dict) -> None:
    cols = ["synthesizer", "fit_cpu_s", "quality", "detection_auc", "tstr_f1", "dcr_median",
            "attack_advantage", "parity_gap", "opportunity_gap"]
    print(f"\nsplit: {results['protocol']['split']} (scored on "
          f"{results['protocol']['scored']}); mean ± sd over seeds {results['seeds']}")
    for dataset, table in results["tables"].items():
        real = table["train_on_real"]
        print(f"\n{dataset}  (train on real: mean F1 {real['tstr_f1']:.3f}, parity gap "
              f"{real['parity_gap']:.3f}, opportunity gap {real['opportunity_gap']:.3f})")
        print(" | ".join([*cols, "copies"]))
        for r in table.get("summary", []):
            print(" | ".join([r["synthesizer"], *(_cell(r.get(c)) for c in cols[1:]),
                              "yes" if any(r["copies_training"]) else "no"]))


def _cell(v) -> str:
    if isinstance(v, dict):
        return f"{v['mean']:.3f} ± {v['sd']:.3f}"
    return f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)


if __name__ == "__main__":
    main()
