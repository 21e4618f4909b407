"""Fit smartnoise-synth's MST or AIM on a CSV and write synthetic rows; runs in smartnoise's own
venv (benchmarks/peers/.venv-smartnoise, made by setup_venv.sh smartnoise), never in genforge's.

    .venv-smartnoise/bin/python smartnoise_fit.py --train fit.csv --synth mst --epsilon 1 \
        --delta 1e-5 --continuous age,fnlwgt --seed 0 --rows 20000 --out syn.csv

Used as smartnoise documents it: categorical columns as given (their category sets are read
from the rows, as smartnoise does without DP), continuous columns cut into smartnoise's
default 10 bins whose bounds are estimated with DP from `--preprocessor-share` of epsilon
(smartnoise subtracts it from the synthesizer's budget, so the total is `--epsilon`),
missing values kept (nullable). The noise comes from OpenDP's samplers, which take no seed:
`--seed` seeds numpy (selection, sampling) only, so seeds are repetitions, not replays.
Prints one JSON line: fit and sampling seconds, the epsilon each stage spent.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import pandas as pd
from snsynth import Synthesizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--synth", choices=("mst", "aim"), required=True)
    parser.add_argument("--epsilon", type=float, required=True)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--continuous", default="", help="comma-separated column names")
    parser.add_argument("--preprocessor-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    continuous = [c for c in args.continuous.split(",") if c]
    frame = pd.read_csv(args.train, dtype=str, keep_default_na=False, na_values=[""])
    for c in continuous:
        frame[c] = pd.to_numeric(frame[c])
    categorical = [c for c in frame.columns if c not in continuous]
    frame[categorical] = frame[categorical].astype(object).where(frame[categorical].notna(), None)
    synth = Synthesizer.create(args.synth, epsilon=args.epsilon, delta=args.delta)
    preprocessor_eps = args.preprocessor_share * args.epsilon if continuous else 0.0
    start = time.perf_counter()
    cpu0 = time.process_time()
    synth.fit(frame, categorical_columns=categorical, continuous_columns=continuous,
              preprocessor_eps=preprocessor_eps, nullable=True)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    start = time.perf_counter()
    rows = synth.sample(args.rows)
    sample_s = time.perf_counter() - start
    rows = pd.DataFrame(rows, columns=frame.columns) if not isinstance(rows, pd.DataFrame) \
        else rows
    rows.to_csv(args.out, index=False)
    print(json.dumps({"fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "sample_s": sample_s,
                      "epsilon_total": args.epsilon, "epsilon_preprocessing": preprocessor_eps,
                      "epsilon_synthesizer": synth.epsilon, "delta": args.delta,
                      "rows": len(rows)}))


if __name__ == "__main__":
    main()
