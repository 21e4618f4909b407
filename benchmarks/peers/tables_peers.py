"""smartnoise-synth's MST and AIM on Adult, scored exactly as benchmarks/tables_adult.py scores
genforge's synthesizers.

    bash benchmarks/peers/setup_venv.sh smartnoise  # once: smartnoise-synth in its own venv
    GENFORGE_DATA=../shared/data .venv/bin/python benchmarks/peers/tables_peers.py \
        --synths mst --epsilons 1 --seeds 0,1,2

The training rows are genforge's own training frame for `--split` (tables_adult.adult_split:
test = all of adult.data, scored on adult.test; validation = its 80 % cut), written to CSV.
Each (synthesizer, epsilon, seed) is fitted by smartnoise_fit.py in
benchmarks/peers/.venv-smartnoise (smartnoise pins opacus<0.15 and mbi<2: it cannot share
genforge's venv), with delta `--delta`; its fit is timed there. The synthetic CSV is read back
with genforge's schema and scored here by
genforge.eval.tables.evaluate.evaluate_tables: quality, the
same four TSTR classifiers, DCR, attack, fairness. A fit that runs past `--timeout` (AIM can
take long on a CPU) is killed and recorded as such. Runs are appended to the results file
(`--out`, default benchmarks/results/tables_peers.json), so the grid can be filled in pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from tables_adult import adult_split, row, summarise  # noqa: E402

from genforge.eval.tables.evaluate import _kinds, evaluate_tables, utility  # noqa: E402
from genforge.modalities.tables.data import load_tables, read_rows  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--synths", default="mst,aim")
    parser.add_argument("--epsilons", default="1,0.5,3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--rows", type=int, default=20000, help="synthetic rows to score")
    parser.add_argument("--preprocessor-share", type=float, default=0.1,
                        help="share of epsilon smartnoise spends on the numeric bounds")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="wall seconds a fit may take before it is killed")
    parser.add_argument("--work", default="/tmp/tables-peers")
    parser.add_argument("--venv", default=str(HERE / ".venv-smartnoise"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/tables_peers.json"))
    return parser.parse_args()


def fit_peer(args: argparse.Namespace, train_csv: Path, continuous: list[str], synth: str,
             eps: float, seed: int, out: Path) -> dict:
    """One smartnoise fit in its own venv; its JSON line, or the reason there is none."""
    command = [str(Path(args.venv) / "bin/python"), str(HERE / "smartnoise_fit.py"),
               "--train", str(train_csv), "--synth", synth, "--epsilon", str(eps),
               "--delta", str(args.delta), "--continuous", ",".join(continuous),
               "--preprocessor-share", str(args.preprocessor_share), "--seed", str(seed),
               "--rows", str(args.rows), "--out", str(out)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout: no fit within {args.timeout:.0f} wall seconds"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["wall_s_with_startup"] = time.perf_counter() - start
    return record


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _, cfg, protocol = adult_split(args.split, work)
    data = load_tables(cfg)
    info, schema = data.info(), data.schema
    kinds = _kinds(schema)
    continuous = [c for c, k in kinds.items() if k == "numeric"]
    train_csv = work / f"adult-{args.split}-fit.csv"
    data.train_frame.to_csv(train_csv, index=False)
    trtr = utility(data.train_frame, data.test_frame, kinds, info["target"], info["positive"],
                   "sex")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    if results.get("protocol", {}).get("split") not in (None, args.split):
        raise SystemExit(f"{out}: holds split {results['protocol']['split']!r}; use another "
                         "--out for --split " + args.split)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    results.update({
        "command": "benchmarks/peers/tables_peers.py (appended runs; see each run's args)",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "avx512_bf16": "avx512_bf16" in cpuinfo,
                    "load_average_at_start": os.getloadavg()},
        "protocol": protocol, "delta": args.delta, "rows_scored": args.rows,
        "peer": "smartnoise-synth 1.0.8 (mbi 1.1.0, opendp 0.14.2), its own venv",
        "preprocessing": f"numeric columns in smartnoise's 10 bins, bounds by DP from "
                         f"{args.preprocessor_share:.0%} of epsilon; category sets read "
                         "from the rows (smartnoise's default, not DP)",
        "train_on_real": {"tstr_f1": trtr["mean_f1"], "tstr_f1_each": trtr["f1"]}})
    results.setdefault("runs", [])
    for synth in args.synths.split(","):
        for eps in (float(e) for e in args.epsilons.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                name = f"smartnoise {synth} eps={eps:g}"
                csv = work / f"{synth}-e{eps:g}-s{seed}.csv"
                record = fit_peer(args, train_csv, continuous, synth, eps, seed, csv)
                entry: dict = {"synthesizer": name, "seed": seed}
                if "error" in record:
                    entry.update(record)
                else:
                    syn = read_rows(csv, {"schema": schema})
                    r = evaluate_tables(data.train_frame, data.test_frame, syn, schema,
                                        target=info["target"], positive=info["positive"],
                                        protected="sex", utility_real=trtr)
                    entry.update(row(name, (record["fit_s"], record["fit_cpu_s"], None), r))
                    entry["seed"], entry["smartnoise"] = seed, record
                    entry["synthetic_csv"] = f"(under --work) {csv.name}"
                entry["args"] = " ".join(a for a in sys.argv[1:] if not a.startswith("/"))
                results["runs"] = [e for e in results["runs"] if
                                   (e["synthesizer"], e["seed"]) != (name, seed)] + [entry]
                results["summary"] = summarise(results["runs"])
                out.write_text(json.dumps(results, indent=1, default=str))
                print(json.dumps({k: entry.get(k) for k in (
                    "synthesizer", "seed", "fit_s", "fit_cpu_s", "quality", "tstr_f1",
                    "detection_auc", "dcr_median", "copies_training", "error")}), flush=True)


if __name__ == "__main__":
    main()
