"""sdmetrics' QualityReport of synthetic tables against a real one; runs in sdmetrics' own venv
(benchmarks/peers/.venv-sdmetrics, made by setup_venv.sh sdmetrics), never in genforge's.

    .venv-sdmetrics/bin/python sdmetrics_quality.py --real real.csv --metadata meta.json \
        --out scores.json name=syn1.csv name2=syn2.csv

Each table is scored twice: with QualityReport's default pair thresholds (a pair counts only
when its real |Pearson| > 0.5 or real Cramer's V > 0.3) and with both thresholds 0 (every pair
counts, as genforge's quality does). Writes the scores, the two property scores and the
per-column and per-pair details.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import sdmetrics
from sdmetrics.reports.single_table import QualityReport

THRESHOLDS = {"default": None, "all_pairs": (0.0, 0.0)}


def read(path: str, metadata: dict) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    for name, meta in metadata["columns"].items():
        if meta["sdtype"] == "numerical":
            frame[name] = pd.to_numeric(frame[name])
    return frame[list(metadata["columns"])]


def report(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict,
           thresholds: tuple[float, float] | None) -> dict:
    quality = QualityReport()
    if thresholds is not None:
        quality.real_correlation_threshold, quality.real_association_threshold = thresholds
    quality.generate(real, synthetic, metadata, verbose=False)
    props = dict(zip(quality.get_properties()["Property"], quality.get_properties()["Score"],
                     strict=True))
    shapes = quality.get_details("Column Shapes")
    pairs = quality.get_details("Column Pair Trends")
    counted = pairs["Meets Threshold?"].astype("boolean").fillna(False)  # as sdmetrics averages
    return {"real_correlation_threshold": quality.real_correlation_threshold,
            "real_association_threshold": quality.real_association_threshold,
            "score": float(quality.get_score()),
            "column_shapes": float(props["Column Shapes"]),
            "column_pairs": float(props["Column Pair Trends"]),
            "pairs_counted": int(counted.sum()),
            "pairs_total": len(pairs),
            "per_column": dict(zip(shapes["Column"], shapes["Score"].astype(float), strict=True)),
            "per_pair": {f"{a} | {b}": (float(s), m, bool(t)) for a, b, s, m, t in zip(
                pairs["Column 1"], pairs["Column 2"], pairs["Score"], pairs["Metric"],
                counted, strict=True)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", required=True)
    parser.add_argument("--metadata", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("tables", nargs="+", help="NAME=CSV")
    args = parser.parse_args()
    with open(args.metadata) as f:
        metadata = json.load(f)
    real = read(args.real, metadata)
    out = {"sdmetrics": sdmetrics.__version__, "tables": {}}
    for spec in args.tables:
        name, path = spec.split("=", 1)
        synthetic = read(path, metadata)
        out["tables"][name] = {k: report(real, synthetic, metadata, t)
                               for k, t in THRESHOLDS.items()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
