"""A table's preprocessing under differential privacy: a public schema, or DP estimates.

A private run (privacy.epsilon) may learn nothing about the rows outside its accounted
mechanisms, and a schema inferred the usual way reads exact bounds, category lists, missing
rates and (for the statistics) quantiles and frequencies off the rows. So, one of:

    public   data.schema=FILE.yaml: the user's bounds (min, max), category lists and
             missing rates; the rows are only checked against them (a bound that excludes a
             value refuses, naming the column: a user's error, nothing is released)
    DP       without a schema, privacy.preprocessing_share of epsilon (and of delta) buys, per
             column, one OpenDP release (each row counts in one cell: L1 sensitivity 1 under
             adding or removing a row):
               numbers, dates   Laplace counts over a fixed public grid of buckets (quarter
                                octaves of |x|, or calendar years) and a 'missing' cell; the
                                bounds are the outermost buckets whose noisy count reaches
                                tau = scale ln(cells / 0.001) (no empty bucket passes with
                                99.9 %); values beyond are clipped, a missing value in a column
                                whose 'missing' cell did not pass becomes the lower bound
               categories       a stability histogram (Laplace noise, a threshold calibrated
                                to delta: OpenDP's make_laplace_threshold) releases the
                                categories; other values become missing, which is always a
                                category here (a column none of whose categories passes is
                                all missing: too few rows for the share)
             the shares compose by basic composition, each column an equal part.

Either way the statistics the synthesizers read (mean, spread, quantiles, frequencies) come
from the released schema alone (`public_stats`: the bounds' middle and half-width, uniform
quantiles, uniform frequencies). Column names and kinds, and the number of rows, are treated as
public, as in OpenDP's and smartnoise's practice. Every release is listed in `privacy_items`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from genforge.errors import ConfigError, DataError
from genforge.modalities.tables.schema import NUMERIC, QUANTILES, as_float, model_columns

MISSING_KEY = "\x00missing"
YEARS = range(1700, 2262)  # the calendar years a pandas timestamp (ns) can hold
BETA = 1e-3  # chance that some empty bucket's noise passes the bounds' threshold


def public_stats(schema: dict[str, Any]) -> dict[str, Any]:
    """Statistics from the schema alone: centre and half-width of the bounds, uniform quantiles
    over them, uniform category frequencies."""
    numeric, categorical = model_columns(schema)
    num_stats = []
    for col in numeric:
        lo, hi = _bounds(col)
        mean, std = (lo + hi) / 2, (hi - lo) / 2 or 1.0
        q = np.linspace((lo - mean) / std, (hi - mean) / std, QUANTILES)
        num_stats.append({"mean": mean, "std": std, "quantiles": [float(x) for x in q]})
    cat_stats = [{"freq": [1 / len(c["categories"])] * len(c["categories"])}
                 for c in categorical]
    return {"numeric": num_stats, "categorical": cat_stats}


def _bounds(col: dict[str, Any]) -> tuple[float, float]:
    if col["kind"] == "datetime":
        return tuple(pd.Timestamp(col[k]).value / 1e9 for k in ("min", "max"))
    return float(col["min"]), float(col["max"])


def check_public(schema: dict[str, Any], frame: pd.DataFrame, source: str) -> None:
    """The user's schema is complete, and its bounds hold every value (else one line)."""
    for col in schema["columns"]:
        name, kind = col["name"], col["kind"]
        need = ("min", "max") if kind in NUMERIC else ("categories",) if kind == "categorical" \
            else ()
        for key in (*need, "missing"):
            if key not in col:
                raise DataError(f"{source}: column {name!r} has no {key!r}; a public schema "
                                "for a private run states every bound, category list and "
                                "missing rate")
        if kind not in NUMERIC:
            continue
        lo, hi = _bounds(col)
        edges = col.get("bins")
        if edges is not None and (len(edges) < 2 or edges[0] > lo or edges[-1] < hi or any(
                b <= a for a, b in itertools.pairwise(edges))):
            raise DataError(f"{source}: column {name!r} bins: a rising list of edges from at "
                            f"most min={col['min']} to at least max={col['max']}")
        values = as_float(frame[name], kind)
        for side, bad in (("min", values < lo), ("max", values > hi)):
            if bad.any():
                raise DataError(f"{source}: column {name!r} {side}={col[side]} excludes data "
                                f"(row {int(np.flatnonzero(bad)[0]) + 1}); widen the bound")
        if col["missing"] == 0 and np.isnan(values).any():
            raise DataError(f"{source}: column {name!r} missing=0, but the table has missing "
                            "values there; set missing above 0")


# --------------------------------------------------------------------------------------------
# DP estimates


def dp_schema(schema: dict[str, Any], frame: pd.DataFrame, *, epsilon: float, delta: float
              ) -> tuple[dict[str, Any], pd.DataFrame, list[dict]]:
    """(released schema, the rows fitted to it, privacy items) from `epsilon`, `delta`."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    columns = [c for c in schema["columns"] if c["kind"] not in ("id",)]
    eps_col = epsilon / max(len(columns), 1)
    n_cat = sum(c["kind"] == "categorical" for c in columns)
    delta_col = delta / max(n_cat, 1)
    out, items, frame = [], [], frame.copy()
    for col in schema["columns"]:
        name, kind = col["name"], col["kind"]
        if kind in NUMERIC:
            new, frame[name], item = _numeric(dp, col, frame[name], eps_col)
        elif kind == "categorical":
            new, frame[name], item = _categorical(dp, col, frame[name], eps_col, delta_col)
        elif kind == "boolean":
            new, frame[name], item = _boolean(dp, col, frame[name], eps_col)
        else:
            out.append(col)
            continue
        out.append(new)
        items.append(item)
    return {**schema, "columns": out}, frame, items


def _laplace_counts(dp: Any, keys: list[str], cells: list[str], eps: float) -> np.ndarray:
    """OpenDP: counts of `keys` over the public `cells` (+ one for anything else), discrete
    Laplace noise of scale 1 / eps (each row moves one count by one)."""
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
    meas = space >> dp.t.then_count_by_categories(categories=cells) >> \
        dp.m.then_laplace(scale=1 / eps)
    return np.asarray(meas(keys), np.float64)[: len(cells)]


def _item(name: str, mechanism: str, eps: float, delta: float, **detail: Any) -> dict:
    return {"step": "preprocessing", "mechanism": mechanism, "epsilon": eps, "delta": delta,
            "detail": {"column": name, **detail}}


def _numeric(dp: Any, col: dict, s: pd.Series, eps: float) -> tuple[dict, pd.Series, dict]:
    """Bounds from noisy bucket counts; values clipped into them."""
    kind, name = col["kind"], col["name"]
    v = as_float(s, kind)
    if kind == "datetime":
        years = pd.to_datetime(pd.Series(v), unit="s").dt.year
        cells = [str(y) for y in YEARS]
        keys = [MISSING_KEY if np.isnan(x) else str(int(y)) for x, y in
                zip(v, years.fillna(0), strict=True)]
        edges = [(pd.Timestamp(year=y, month=1, day=1).value / 1e9,
                  pd.Timestamp(year=y, month=12, day=31).value / 1e9) for y in YEARS]
    else:
        grid = np.arange(-80, 241)  # quarter octaves: |x| in [2^(k/4), 2^((k+1)/4))
        cells = [*(f"-{k}" for k in grid[::-1]), "0", *(f"+{k}" for k in grid)]
        edges = [*((-2 ** ((k + 1) / 4), -2 ** (k / 4)) for k in grid[::-1]), (0.0, 0.0),
                 *((2 ** (k / 4), 2 ** ((k + 1) / 4)) for k in grid)]
        keys = [_bucket(x) for x in v]
    counts = _laplace_counts(dp, keys, [*cells, MISSING_KEY], eps)
    tau = (1 / eps) * math.log((len(cells) + 1) / BETA)
    passed = np.flatnonzero(counts[:-1] >= tau)
    first, last = (passed[0], passed[-1]) if len(passed) else (np.argmax(counts[:-1]),) * 2
    lo, hi = edges[first][0], edges[last][1]
    missing = bool(counts[-1] >= tau)
    new = {**col, "missing": round(max(counts[-1], 1.0) / len(s), 6) if missing else 0.0}
    if kind == "datetime":
        new["min"], new["max"] = (str(pd.Timestamp(x, unit="s")) for x in (lo, hi))
    elif kind == "int":
        new["min"], new["max"] = math.floor(lo), math.ceil(hi)
        lo, hi = new["min"], new["max"]
    else:
        new["min"], new["max"], new["decimals"] = float(lo), float(hi), 6
    fill = np.where(np.isnan(v), np.nan if missing else lo, v)
    clipped = np.clip(fill, lo, hi)
    if kind == "datetime":
        values = pd.Series(pd.to_datetime(clipped, unit="s"), index=s.index)
    elif kind == "int":
        r = pd.Series(np.round(clipped), index=s.index)
        values = r.astype("Int64") if r.isna().any() else r.astype(np.int64)
    else:
        values = pd.Series(clipped, index=s.index)
    return new, values, _item(name, "OpenDP Laplace counts over public buckets (bounds)",
                              eps, 0.0, threshold=tau, bounds=[new["min"], new["max"]],
                              missing_released=missing)


def _bucket(x: float) -> str:
    if np.isnan(x):
        return MISSING_KEY
    if x == 0:
        return "0"
    k = int(np.clip(math.floor(4 * math.log2(abs(x))), -80, 240))
    return f"{'+' if x > 0 else '-'}{k}"


def _categorical(dp: Any, col: dict, s: pd.Series, eps: float,
                 delta: float) -> tuple[dict, pd.Series, dict]:
    """Stability histogram: categories whose noisy count passes the delta threshold."""
    name = col["name"]
    text = {str(c): c for c in col["categories"]}
    keys = [MISSING_KEY if pd.isna(v) else str(v) for v in s]
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
    count = space >> dp.t.then_count_by()

    def release(threshold: int) -> Any:
        return count >> dp.m.then_laplace_threshold(scale=1 / eps, threshold=threshold)

    threshold = _smallest_threshold(release, eps, delta)
    released = release(threshold)(keys)
    kept = sorted((text[k] for k in released if k != MISSING_KEY and k in text),
                  key=lambda v: (str(type(v)), v))
    allowed = set(kept)
    values = s.where(s.isin(allowed)).astype(object)
    new = {**col, "categories": kept, "missing": max(released.get(MISSING_KEY, 0), 1) / len(s)}
    return new, values, _item(name, "OpenDP stability histogram (Laplace, threshold)", eps,
                              delta, threshold=threshold, categories=len(kept),
                              note="" if kept else "no category passed: the column is all missing")


def _smallest_threshold(release: Any, eps: float, delta: float) -> int:
    """The smallest threshold whose release is (eps, delta)-DP for one added or removed row.
    Searched by hand over the map's (epsilon, delta), not by OpenDP's binary_search_param:
    that one compares (epsilon, delta) pairs, which are only partially ordered, and raises
    where one is smaller and the other larger. Epsilon does not depend on the threshold; a
    relative slack of 1e-9 absorbs its rounding."""
    def fits(threshold: int) -> bool:
        map_eps, map_delta = release(threshold).map(1)
        return map_eps <= eps * (1 + 1e-9) and map_delta <= delta

    low, high = 1, 1  # a threshold below the sensitivity (1) is refused by OpenDP
    while not fits(high):
        low, high = high + 1, high * 2
        if high > 2**30:
            raise ConfigError(f"no threshold gives epsilon {eps:.3g}, delta {delta:.3g} for the "
                              "category release: raise privacy.preprocessing_share")
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid + 1, high)
    return low


def _boolean(dp: Any, col: dict, s: pd.Series, eps: float) -> tuple[dict, pd.Series, dict]:
    keys = [MISSING_KEY if pd.isna(v) else "present" for v in s]
    counts = _laplace_counts(dp, keys, ["present", MISSING_KEY], eps)
    tau = (1 / eps) * math.log(2 / BETA)
    missing = bool(counts[1] >= tau)
    values = s if missing else s.where(s.notna(), False)
    new = {**col, "missing": max(counts[1], 1.0) / len(s) if missing else 0.0}
    return new, values, _item(col["name"], "OpenDP Laplace count (missing)", eps, 0.0,
                              threshold=tau, missing_released=missing)


def private_preprocessing(data: Any, privacy: Any, *, public: bool) -> None:
    """Make `data` (genforge.modalities.tables.data.TablesData) private: check the public schema, or
    release a DP one; refit its statistics from the schema alone."""
    share = getattr(privacy, "preprocessing_share", 0.0)
    if privacy.delta >= 1 / len(data):
        raise ConfigError(f"privacy.delta={privacy.delta}: must be below 1 / records = "
                          f"{1 / len(data):.3g} ({len(data)} rows); 1e-5 or 1/(10 n) is usual")
    if public:
        check_public(data.schema, data.train_frame, f"data.schema={data.cfg.schema}")
        items: list[dict] = []
    elif not share > 0:
        raise ConfigError("privacy.preprocessing_share=0 and no data.schema: the schema step "
                          "(bounds, categories, missing rates) would read the rows without "
                          "DP; pass a public schema (data.schema=FILE.yaml) or a share > 0")
    elif privacy.epsilon is None:
        raise ConfigError("privacy.noise_multiplier without privacy.epsilon and no data.schema: "
                          "the DP schema step takes privacy.preprocessing_share of an epsilon; "
                          "set privacy.epsilon, or pass a public schema (data.schema=FILE.yaml)")
    else:  # OpenDP draws its noise from the operating system's secure source
        schema, frame, items = dp_schema(data.schema, data.train_frame,
                                         epsilon=share * privacy.epsilon,
                                         delta=share * privacy.delta)
        data.schema, data.train_frame = schema, frame
    data.refit(public_stats(data.schema), items)
