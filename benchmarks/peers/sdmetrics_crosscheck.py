"""genforge's table quality score next to sdmetrics' QualityReport on the same tables.

    bash benchmarks/peers/setup_venv.sh sdmetrics   # once: sdmetrics in its own venv
    GENFORGE_DATA=../shared/data .venv/bin/python benchmarks/peers/sdmetrics_crosscheck.py

A few genforge presets (adult-copula as shipped, adult-tvae and adult-tabddpm with short
training) are fitted on adult.data and sampled to CSV; the real adult.test rows and the
training rows themselves are scored too. genforge.eval.tables.evaluate computes its quality
(column shapes and every column pair) here; sdmetrics' QualityReport runs on the very same
CSVs in benchmarks/peers/.venv-sdmetrics (sdmetrics pulls in BUSL copulas, so it is never a
genforge dependency). Per table: both scores, sdmetrics with its default pair thresholds and
with every pair counted, the per-column and per-pair differences grouped by pair type.
Writes benchmarks/results/sdmetrics_crosscheck.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import genforge

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from tables_adult import adult_split, fit  # noqa: E402

from genforge.eval.tables.evaluate import _kinds, column_pairs, column_shapes  # noqa: E402
from genforge.modalities.tables.data import load_tables, read_rows  # noqa: E402

SHORT = {"adult-copula": [], "adult-tvae": ["train.max_steps=600"],
         "adult-tabddpm": ["train.max_steps=600", "train.ema_decay=null"]}


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    return {"cpus": os.cpu_count(), "avx512_bf16": "avx512_bf16" in cpuinfo,
            "type": "avx512_bf16" if "avx512_bf16" in cpuinfo else "no avx512_bf16"}


def sdmetrics_metadata(schema: dict) -> dict:
    kinds = _kinds(schema)
    return {"columns": {c: {"sdtype": "numerical" if k == "numeric" else "categorical"}
                        for c, k in kinds.items()}}


def genforge_quality(real: pd.DataFrame, syn: pd.DataFrame, schema: dict) -> dict:
    kinds = _kinds(schema)
    shapes, pairs = column_shapes(real, syn, kinds), column_pairs(real, syn, kinds)
    s, p = float(np.mean(list(shapes.values()))), float(np.mean(list(pairs.values())))
    return {"score": (s + p) / 2, "column_shapes": s, "column_pairs": p,
            "per_column": shapes, "per_pair": pairs}


def sdmetrics_conventions(real: pd.DataFrame, syn: pd.DataFrame, kinds: dict[str, str]
                          ) -> dict:
    """genforge's formulas with sdmetrics 0.32's two conventions swapped in, to show that they
    account for the whole difference at thresholds 0: (1) a categorical column's shape drops
    missing values (TVComplement) where genforge counts them as a category; (2) in a
    numeric-categorical pair each table's number is cut into 10 equal-width bins over its
    own range (np.histogram_bin_edges, then np.digitize: the maximum gets a bin of its own),
    where genforge cuts both by the real range; (3) a numeric pair whose correlation is
    undefined (a constant column) is left out of the mean, where genforge counts it as
    correlation 0."""
    from genforge.eval.tables.evaluate import _ks, _labels, _numbers, _tvd

    shapes = {c: _ks(_numbers(real[c]), _numbers(syn[c])) if k == "numeric" else
              1.0 - _tvd(real[c].dropna().astype(str), syn[c].dropna().astype(str))
              for c, k in kinds.items()}

    def own_bins(frame: pd.DataFrame, c: str) -> pd.Series:
        v = _numbers(frame[c])
        edges = np.histogram_bin_edges(v[~np.isnan(v)])
        return pd.Series(np.digitize(v, edges).astype(str))

    ours = column_pairs(real, syn, kinds)
    pairs = {}
    for pair, value in ours.items():
        a, b = pair.split(" | ")
        if kinds[a] == kinds[b] == "numeric" and any(
                np.nanstd(_numbers(f[c])) == 0 for f in (real, syn) for c in (a, b)):
            continue  # sdmetrics: NaN score, not averaged
        if {kinds[a], kinds[b]} != {"numeric", "categorical"}:
            pairs[pair] = value
            continue
        r = [own_bins(real, c) if kinds[c] == "numeric" else _labels(real[c]).reset_index(
            drop=True) for c in (a, b)]
        f = [own_bins(syn, c) if kinds[c] == "numeric" else _labels(syn[c]).reset_index(
            drop=True) for c in (a, b)]
        pairs[pair] = 1.0 - _tvd(r[0] + "\x1f" + r[1], f[0] + "\x1f" + f[1])
    sh, pa = float(np.mean(list(shapes.values()))), float(np.mean(list(pairs.values())))
    return {"score": (sh + pa) / 2, "column_shapes": sh, "column_pairs": pa}


def compare(ours: dict, theirs: dict, kinds: dict[str, str]) -> dict:
    """Where the two differ: per column (with its missing share) and per pair type."""
    columns = {c: theirs["per_column"][c] - ours["per_column"][c] for c in ours["per_column"]}
    groups: dict[str, list[float]] = {}
    for pair, value in ours["per_pair"].items():
        a, b = pair.split(" | ")
        kind = "-".join(sorted((kinds[a], kinds[b])))
        groups.setdefault(kind, []).append(theirs["per_pair"][pair][0] - value)
    return {"score": theirs["score"] - ours["score"],
            "column_shapes": theirs["column_shapes"] - ours["column_shapes"],
            "column_pairs": theirs["column_pairs"] - ours["column_pairs"],
            "per_column": {c: d for c, d in columns.items() if abs(d) > 1e-9},
            "pairs_by_type": {k: {"pairs": len(v),
                                  "sdmetrics_nan_pairs": int(np.isnan(v).sum()),
                                  "mean_difference": float(np.nanmean(v)),
                                  "max_abs_difference": float(np.nanmax(np.abs(v)))}
                              for k, v in groups.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="adult-copula,adult-tvae,adult-tabddpm")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--budget", type=float, default=150.0)
    parser.add_argument("--work", default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="score the synthetic CSVs an earlier run left in --work")
    parser.add_argument("--venv", default=str(HERE / ".venv-sdmetrics"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/sdmetrics_crosscheck.json"))
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sdm-cross-"))
    work.mkdir(parents=True, exist_ok=True)
    _, cfg, protocol = adult_split("test", work)
    data = load_tables(cfg)
    schema, kinds = data.schema, _kinds(data.schema)
    info = {"schema": schema}
    real_csv = work / "real-train.csv"
    data.train_frame.to_csv(real_csv, index=False)
    tables = {"real adult.test rows": work / "real-test.csv",
              "real training rows (itself)": real_csv}
    data.test_frame.to_csv(tables["real adult.test rows"], index=False)
    fits_path = work / "fits.json"
    fits = json.loads(fits_path.read_text()) if args.reuse and fits_path.exists() else {}
    for name, entry in fits.items():
        tables[name] = work / f"{entry['preset']}.csv"
    for preset in [] if fits else args.presets.split(","):
        run, _, cpu, steps = fit(preset, SHORT.get(preset, []), args.budget, work / preset)
        model = genforge.load(run)
        syn = pd.concat(list(model.sample_chunks(args.rows, seed=0)), ignore_index=True)
        path = work / f"{preset}.csv"
        syn.to_csv(path, index=False)
        name = f"{preset} ({steps} steps)"
        tables[name], fits[name] = path, {"preset": preset, "fit_cpu_s": cpu, "steps": steps,
                                          "overrides": SHORT.get(preset, [])}
        fits_path.write_text(json.dumps(fits))
        print(f"{name}: fitted in {cpu:.0f} CPU-s", flush=True)
    meta = work / "metadata.json"
    meta.write_text(json.dumps(sdmetrics_metadata(schema)))
    theirs_path = work / "sdmetrics.json"
    start = time.perf_counter()
    subprocess.run([str(Path(args.venv) / "bin/python"), str(HERE / "sdmetrics_quality.py"),
                    "--real", str(real_csv), "--metadata", str(meta), "--out", str(theirs_path),
                    *(f"{n}={p}" for n, p in tables.items())], check=True)
    sdm_seconds = time.perf_counter() - start
    theirs = json.loads(theirs_path.read_text())
    missing = {c: float(data.train_frame[c].isna().mean()) for c in kinds
               if data.train_frame[c].isna().any()}
    results = {"command": "benchmarks/peers/sdmetrics_crosscheck.py " + " ".join(
                   "PATH" if a.startswith("/") else a for a in sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "machine": machine(), "seeds": [0],
               "sdmetrics": theirs["sdmetrics"], "protocol": protocol,
               "real": "adult.data rows (genforge's training frame, written to CSV)",
               "rows_sampled": args.rows, "missing_share_in_real": missing,
               "sdmetrics_wall_s": sdm_seconds, "fits": fits, "tables": {}}
    for name, path in tables.items():
        syn = read_rows(path, info)  # the CSV sdmetrics read, parsed by genforge's schema
        ours = genforge_quality(data.train_frame, syn, schema)
        entry = {"genforge": {k: ours[k] for k in ("score", "column_shapes", "column_pairs")},
                 "genforge_with_sdmetrics_conventions": sdmetrics_conventions(
                     data.train_frame, syn, kinds)}
        for variant, report in theirs["tables"][name].items():
            entry[f"sdmetrics_{variant}"] = {k: v for k, v in report.items()
                                             if not k.startswith("per_")}
            entry[f"difference_{variant}"] = compare(ours, report, kinds)
        results["tables"][name] = entry
        d, a = entry["difference_default"], entry["difference_all_pairs"]
        print(f"{name}: genforge {ours['score']:.4f}  sdmetrics default "
              f"{entry['sdmetrics_default']['score']:.4f} ({d['score']:+.4f})  all pairs "
              f"{entry['sdmetrics_all_pairs']['score']:.4f} ({a['score']:+.4f})  genforge with "
              f"sdmetrics' conventions "
              f"{entry['genforge_with_sdmetrics_conventions']['score']:.4f}", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
