"""Series over HTTP: sample paths as CSV (sample, step, one column a dimension) or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

from genforge.modalities.base import Labeller


def series_body(paths: Any, fmt: str, meta: dict[str, Any],
                label: Labeller) -> tuple[bytes, str]:
    array = np.asarray(paths.cpu() if hasattr(paths, "cpu") else paths, np.float64)
    array = array.reshape(array.shape[0], array.shape[1], -1)  # (n, horizon, D)
    if fmt == "json":
        return label(".json", json.dumps({**meta, "paths": array.tolist()}).encode()), \
            "application/json"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample", "step", *[f"y{d}" for d in range(array.shape[2])]])
    for i, path in enumerate(array):
        for t, row in enumerate(path):
            writer.writerow([i, t + 1, *[f"{v:.6g}" for v in row]])
    return label(".csv", buf.getvalue().encode()), "text/csv"
