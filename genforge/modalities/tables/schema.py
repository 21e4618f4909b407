"""The schema of a table and the codec between its rows and what a synthesizer sees.

    schema  {"version": 1, "target": "income", "columns": [{"name", "kind", ...}, ...]}
            kinds: float | int (min, max, decimals) | categorical (categories) | boolean |
            datetime (format, unit, min, max) | id (never learned; regenerated) ; every column
            has "missing" (its rate in the training rows)
    stats   fitted on the training rows: per model column mean/std and 256 quantiles (numeric,
            in standardised units) or category frequencies (categorical, missing last)
    encoded num (N, n_num) float32 standardised numbers (missing -> 0, see the indicator)
            cat (N, n_cat) int64 codes; a numeric column with missing values adds a categorical
            indicator column "<name>#missing" (0 present, 1 missing)

Inference reads every value as text (CSV) or its native type (Parquet); an override
`name:kind` or a whole schema JSON replaces what inference decides. Parsing a column that
is numeric (or a date) everywhere but a few rows names the first bad row.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from genforge.errors import DataError

KINDS = ("float", "int", "categorical", "boolean", "datetime", "id", "drop")
NUMERIC = ("float", "int", "datetime")
QUANTILES = 256
MISSING = "#missing"
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key)$|^id([_\W]|$)", re.IGNORECASE)
_TRUE, _FALSE = {"true", "t", "yes"}, {"false", "f", "no"}


@dataclass
class EncodedTable:
    """Rows as a synthesizer sees them; `start` numbers the first row (regenerated ids)."""

    num: torch.Tensor  # (N, n_num) float32
    cat: torch.Tensor  # (N, n_cat) int64
    start: int = 0

    def __len__(self) -> int:
        return self.num.shape[0]


# --------------------------------------------------------------------------------------------
# Inference


def infer_schema(df: pd.DataFrame, *, source: str, target: str | None,
                 overrides: dict[str, str] | None = None,
                 max_categories: int = 500) -> dict[str, Any]:
    """A schema for `df` (text or native columns); `overrides` maps a column to a kind spec."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(df.columns))
    if unknown:
        raise DataError(f"{source}: data.columns names {unknown[0]!r}, not a column; the "
                        f"columns are {', '.join(map(str, df.columns))}")
    columns = []
    for name in df.columns:
        spec = overrides.get(name)
        col = _infer_column(df[name], str(name), source, spec, is_target=name == target,
                            max_categories=max_categories)
        if col["kind"] != "drop":
            columns.append(col)
    return {"version": 1, "target": target, "columns": columns}


def _infer_column(s: pd.Series, name: str, source: str, spec: str | None, *, is_target: bool,
                  max_categories: int) -> dict[str, Any]:
    present = s.dropna()
    missing = float(1 - len(present) / max(len(s), 1))
    if len(present) == 0:
        raise DataError(f"{source}: column {name!r} is empty (every value missing); drop it "
                        f"with data.columns=[{name}:drop]")
    kind, option = [*spec.split(":", 1), None][:2] if spec else (None, None)
    if kind is not None and kind not in KINDS:
        raise DataError(f"{source}: data.columns={name}:{kind}: allowed kinds are "
                        f"{', '.join(KINDS)}")
    if kind == "drop":
        return {"name": name, "kind": "drop"}
    base = {"name": name, "missing": round(missing, 6)}
    text = present.astype(str).str.strip() if is_text(present) else None
    if kind is None:
        kind, option = _guess_kind(present, text, name, is_target, option)
    if kind in ("float", "int"):
        values = _to_numbers(s, name, source)
        return {**base, **_numeric_facts(values.dropna(), kind, text)}
    if kind == "datetime":
        fmt = option or _date_format(text if text is not None else present.astype(str))
        values = _to_dates(s, name, source, fmt).dropna()
        seconds = values.astype("int64") // 10**9
        unit = "D" if (seconds % 86400 == 0).all() else "s"
        return {**base, "kind": "datetime", "format": fmt, "unit": unit,
                "min": str(values.min()), "max": str(values.max())}
    if kind == "boolean":
        _to_bools(s, name, source)
        return {**base, "kind": "boolean"}
    if kind == "id":
        return {**base, **_id_facts(present, text)}
    values = text if text is not None else present
    if text is not None and pd.to_numeric(text, errors="coerce").notna().all():
        values = pd.to_numeric(text).map(lambda v: int(v) if v == int(v) else float(v))
    categories = sorted({_plain(v) for v in values}, key=lambda v: (str(type(v)), v))
    if len(categories) > max_categories:
        raise DataError(f"{source}: column {name!r} has {len(categories)} distinct values, more "
                        f"than {max_categories} categories; declare it data.columns=[{name}:id] "
                        f"or [{name}:drop]")
    return {**base, "kind": "categorical", "categories": categories}


def is_text(s: pd.Series) -> bool:
    """Whether a column holds text to parse: object columns (pandas 2 reads CSV text so) and
    string columns (pandas 3 reads CSV text and Parquet strings as its `str` dtype)."""
    return s.dtype == object or isinstance(s.dtype, pd.StringDtype)


def _guess_kind(present: pd.Series, text: pd.Series | None, name: str, is_target: bool,
                option: str | None) -> tuple[str, str | None]:
    if present.dtype == bool:
        return "boolean", None
    if pd.api.types.is_datetime64_any_dtype(present):
        return "datetime", "%Y-%m-%d %H:%M:%S"
    numbers = pd.to_numeric(text, errors="coerce") if text is not None else present
    parsed = numbers.notna().mean() if text is not None else 1.0
    if parsed >= (1.0 if len(present) < 10 else 0.9) and pd.api.types.is_numeric_dtype(numbers):
        distinct = numbers.nunique()
        if distinct <= 2 or (is_target and distinct <= 20):
            return "categorical", None
        integral = bool(np.all(np.mod(numbers.dropna(), 1) == 0))
        if integral and distinct == len(present) >= 20 and _ID_NAME.search(name):
            return "id", None
        float_text = text is not None and text.str.contains(r"[.eE]", regex=True).any()
        native_float = text is None and pd.api.types.is_float_dtype(present)
        return ("int" if integral and not float_text and not native_float else "float"), None
    if text is not None:
        lowered = set(text.str.lower().unique())
        if lowered <= _TRUE | _FALSE and len(lowered) == 2:
            return "boolean", None
        fmt = _date_format(text)
        if fmt is not None and not is_target:
            dates = pd.to_datetime(text, format=fmt, errors="coerce")
            if dates.notna().mean() >= 0.9:
                return "datetime", fmt
        if text.nunique() == len(text) >= 20 and not is_target:
            return "id", None
    return "categorical", option


def _date_format(text: pd.Series) -> str | None:
    from pandas.tseries.api import guess_datetime_format

    first = str(text.iloc[0])
    if not re.search(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}", first):
        return None  # plain numbers or words are never dates
    return guess_datetime_format(first)


def _numeric_facts(values: pd.Series, kind: str, text: pd.Series | None) -> dict[str, Any]:
    v = values.to_numpy(np.float64)
    if kind == "int":
        return {"kind": "int", "min": int(v.min()), "max": int(v.max()), "decimals": 0}
    decimals = 6
    for d in range(7):
        if np.allclose(np.round(v, d), v, rtol=0, atol=1e-9 * max(1.0, np.abs(v).max())):
            decimals = d
            break
    return {"kind": "float", "min": float(v.min()), "max": float(v.max()), "decimals": decimals}


def _id_facts(present: pd.Series, text: pd.Series | None) -> dict[str, Any]:
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        return {"kind": "id", "style": "int", "start": int(numbers.min())}
    sample = str((text if text is not None else present.astype(str)).iloc[0])
    prefix = re.match(r"^\D*", sample).group(0)
    width = max(len(sample) - len(prefix), 1)
    return {"kind": "id", "style": "str", "prefix": prefix, "width": width, "start": 1}


def _plain(value: Any) -> Any:
    """A JSON-able category: numpy scalars become Python ones; text is stripped."""
    if isinstance(value, np.generic):
        value = value.item()
    return value.strip() if isinstance(value, str) else value


# --------------------------------------------------------------------------------------------
# Parsing values by the schema (one line naming the first bad row)


def _first_bad(raw: pd.Series, parsed: pd.Series, name: str, source: str, what: str) -> None:
    bad = raw.notna() & parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: column {name!r} row {row + 1}: {raw.iloc[row]!r} is not "
                        f"{what}; fix the value, mark it missing, or declare data.columns="
                        f"[{name}:categorical]")


def _to_numbers(s: pd.Series, name: str, source: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and s.dtype != bool:
        return s.astype(np.float64)
    parsed = pd.to_numeric(s.astype(str).str.strip().where(s.notna()), errors="coerce")
    _first_bad(s, parsed, name, source, "a number")
    return parsed.astype(np.float64)


def _to_dates(s: pd.Series, name: str, source: str, fmt: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("datetime64[ns]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(s.where(s.notna()), format=fmt, errors="coerce")
    _first_bad(s, parsed, name, source, f"a date ({fmt})")
    return parsed.astype("datetime64[ns]")


def _to_bools(s: pd.Series, name: str, source: str) -> pd.Series:
    if s.dtype == bool:
        return s.astype(object)
    lowered = s.astype(str).str.strip().str.lower().where(s.notna())
    parsed = lowered.map(lambda v: True if v in _TRUE else False if v in _FALSE else None)
    _first_bad(s, parsed, name, source, "true or false")
    return parsed.astype(object)


def typed_frame(df: pd.DataFrame, schema: dict[str, Any], source: str) -> pd.DataFrame:
    """`df` with each schema column parsed to its kind (other columns dropped)."""
    out = {}
    for col in schema["columns"]:
        name, kind = col["name"], col["kind"]
        if name not in df.columns:
            raise DataError(f"{source}: the schema names column {name!r}, which the table "
                            f"lacks; the columns are {', '.join(map(str, df.columns))}")
        s = df[name]
        if kind in ("float", "int"):
            out[name] = _to_numbers(s, name, source)
            if kind == "int":
                v = out[name].round()
                out[name] = v.astype("Int64") if v.isna().any() else v.astype(np.int64)
        elif kind == "datetime":
            out[name] = _to_dates(s, name, source, col.get("format"))
        elif kind == "boolean":
            out[name] = _to_bools(s, name, source)
        elif kind == "categorical":
            out[name] = _categorical(s, col, name, source)
        else:
            out[name] = s
    return pd.DataFrame(out, index=df.index)


def _categorical(s: pd.Series, col: dict[str, Any], name: str, source: str) -> pd.Series:
    allowed = col["categories"]
    kinds = {type(c) for c in allowed}
    if kinds <= {int, float} and not pd.api.types.is_numeric_dtype(s):
        values = pd.to_numeric(s.astype(str).str.strip().where(s.notna()), errors="coerce")
        values = values.map(lambda v: v if pd.isna(v) else (int(v) if v == int(v) else v))
    elif kinds <= {str}:
        values = s.map(lambda v: v if pd.isna(v) else str(v).strip())
    else:
        values = s.map(lambda v: v if pd.isna(v) else _plain(v))
    return values.astype(object)


# --------------------------------------------------------------------------------------------
# Fitted statistics and the codec


def model_columns(schema: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(numeric columns, categorical columns) as the model sees them, indicators included."""
    numeric, categorical = [], []
    for col in schema["columns"]:
        kind = col["kind"]
        if kind in NUMERIC:
            numeric.append(col)
            if col["missing"] > 0:
                categorical.append({"name": col["name"] + MISSING, "categories": [0, 1],
                                    "indicator_of": col["name"]})
        elif kind in ("categorical", "boolean"):
            cats = col["categories"] if kind == "categorical" else [False, True]
            if col["missing"] > 0:
                cats = [*cats, None]  # missing is a category of its own, the last
            categorical.append({"name": col["name"], "categories": cats})
    return numeric, categorical


def as_float(s: pd.Series, kind: str) -> np.ndarray:
    """A numeric or datetime column as float64 (dates in seconds since 1970), NaN where missing."""
    if kind == "datetime":
        out = np.full(len(s), np.nan)
        ok = s.notna().to_numpy()
        out[ok] = s[ok].astype("datetime64[ns]").astype("int64").to_numpy() / 1e9
        return out
    return s.to_numpy(np.float64, na_value=np.nan)


def fit_stats(frame: pd.DataFrame, schema: dict[str, Any]) -> dict[str, Any]:
    """Means, spreads, quantiles and category frequencies of the (typed) training rows."""
    numeric, categorical = model_columns(schema)
    num_stats = []
    for col in numeric:
        v = as_float(frame[col["name"]], col["kind"])
        v = v[~np.isnan(v)]
        mean, std = float(v.mean()), float(v.std()) or 1.0
        q = np.quantile((v - mean) / std, np.linspace(0, 1, QUANTILES))
        num_stats.append({"mean": mean, "std": std, "quantiles": [float(x) for x in q]})
    codec = TableCodec({"schema": schema, "stats": {"numeric": num_stats, "categorical": []}})
    cats = codec.encode(frame).cat.numpy()
    cat_stats = [{"freq": (np.bincount(cats[:, j], minlength=len(c["categories"])) /
                           max(len(cats), 1)).tolist()} for j, c in enumerate(categorical)]
    return {"numeric": num_stats, "categorical": cat_stats}


class TableCodec:
    """Typed DataFrame <-> EncodedTable, by the schema and fitted stats in a data info."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.schema, self.stats = info["schema"], info["stats"]
        self.numeric, self.categorical = model_columns(self.schema)
        self.mean = np.array([s["mean"] for s in self.stats["numeric"]], np.float64)
        self.std = np.array([s["std"] for s in self.stats["numeric"]], np.float64)
        self.index = {c["name"]: j for j, c in enumerate(self.categorical)}
        self.num_index = {c["name"]: j for j, c in enumerate(self.numeric)}

    @property
    def cardinalities(self) -> list[int]:
        return [len(c["categories"]) for c in self.categorical]

    def encode(self, frame: pd.DataFrame) -> EncodedTable:
        n = len(frame)
        num = np.zeros((n, len(self.numeric)), np.float32)
        cat = np.zeros((n, len(self.categorical)), np.int64)
        for j, col in enumerate(self.numeric):
            v = (as_float(frame[col["name"]], col["kind"]) - self.mean[j]) / self.std[j]
            num[:, j] = np.nan_to_num(v, nan=0.0)
        for j, col in enumerate(self.categorical):
            if "indicator_of" in col:
                cat[:, j] = frame[col["indicator_of"]].isna().to_numpy()
                continue
            lookup = {c: k for k, c in enumerate(col["categories"]) if c is not None}
            missing = len(col["categories"]) - 1 if col["categories"][-1] is None else -1
            codes = frame[col["name"]].map(lambda v, lk=lookup, m=missing:
                                           m if _isna(v) else lk.get(v, -2))
            bad = np.flatnonzero(codes.to_numpy() < 0)
            if len(bad):
                row = int(bad[0])
                value = frame[col["name"]].iloc[row]
                known = [c for c in col["categories"] if c is not None]
                what = "missing, which the training rows never were" if _isna(value) else \
                    f"{value!r}, not one of its {len(known)} categories"
                raise DataError(f"column {col['name']!r} row {row + 1}: {what}")
            cat[:, j] = codes.to_numpy()
        return EncodedTable(torch.from_numpy(num), torch.from_numpy(cat))

    def decode(self, table: EncodedTable) -> pd.DataFrame:
        """Model rows -> a DataFrame obeying the schema: kinds, bounds, rounding, missing."""
        num = table.num.detach().double().cpu().numpy() * self.std + self.mean
        cat = table.cat.detach().cpu().numpy()
        n, out = len(num), {}
        for col in self.schema["columns"]:
            name, kind = col["name"], col["kind"]
            if kind in NUMERIC:
                j = self.num_index[name]
                values = num[:, j]
                miss = cat[:, self.index[name + MISSING]] == 1 if col["missing"] > 0 else None
                out[name] = _decode_numeric(values, col, miss)
            elif kind in ("categorical", "boolean"):
                j = self.index[name]
                cats = np.array([np.nan if c is None else c
                                 for c in self.categorical[j]["categories"]], dtype=object)
                out[name] = pd.Series(cats[cat[:, j]], dtype=object)
                if kind == "boolean" and col["missing"] == 0:
                    out[name] = out[name].astype(bool)
            elif kind == "id":
                out[name] = _regenerate_ids(col, table.start, n)
        return pd.DataFrame(out)


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def _decode_numeric(values: np.ndarray, col: dict[str, Any], miss: np.ndarray | None) -> Any:
    kind = col["kind"]
    if kind == "datetime":
        lo, hi = (pd.Timestamp(col[k]).value / 1e9 for k in ("min", "max"))
        step = 86400 if col.get("unit") == "D" else 1
        seconds = np.round(np.clip(values, lo, hi) / step) * step
        dates = pd.to_datetime(seconds.astype(np.int64), unit="s")
        if miss is not None:
            dates = dates.where(~miss)
        return pd.Series(dates)
    v = np.round(np.clip(values, col["min"], col["max"]), col["decimals"])
    if kind == "int":
        s = pd.Series(v.astype(np.int64))
        return s.astype("Int64").mask(miss) if miss is not None else s
    return pd.Series(np.where(miss, np.nan, v) if miss is not None else v)


def _regenerate_ids(col: dict[str, Any], start: int, n: int) -> pd.Series:
    ids = np.arange(start, start + n, dtype=np.int64) + col.get("start", 0)
    if col.get("style") == "str":
        return pd.Series([f"{col['prefix']}{i:0{col['width']}d}" for i in ids], dtype=object)
    return pd.Series(ids)
