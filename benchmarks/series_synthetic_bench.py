"""The synthetic-series part of benchmarks/series_forecast.py: 100 whole series per data set
from the seed-0 genforge model (trained on the rows before the first calibration origin),
measured against those real rows (ACF distance, marginal, discriminative score) and the rows
after them (train on synthetic, test on real). See genforge.eval.series.synthetic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_part(names: list[str], series: dict, args: Any, prepare, protocol_of,
                   folder: Path) -> dict[str, Any]:
    import genforge
    from genforge.eval.series.synthetic import compare
    from genforge.families.series.synthetic import synthesize

    out = {}
    for name in names:
        spec = series[name]
        run = Path(args.runs) / f"{name}-s0"
        if not (run / "model.safetensors").exists():
            out[name] = {"skipped": f"no trained run at {run}; run --parts forecast first"}
            continue
        values, _, _ = prepare(name, spec, folder)
        model = genforge.load(run)
        rows = model.data_info["train_rows"]
        length = max(120, 3 * spec["period"])
        t = time.perf_counter()
        synthetic = synthesize(model.objective, args.synthetic_n, seed=0,
                               length=length).double().numpy()
        seconds = time.perf_counter() - t
        measures = compare(values[:rows], values[rows:], synthetic, period=spec["period"],
                           transform=spec["transform"], difference=spec["difference"])
        out[name] = {**measures, "seconds_generate": round(seconds, 1),
                     "finite": bool(np.isfinite(synthetic).all())}
        print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in measures.items()
                                      if isinstance(v, float)), flush=True)
    return out
