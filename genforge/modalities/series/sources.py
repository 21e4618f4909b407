"""Series CSVs that are not one row per time step with every value present.

    layout "long": the first column is the time, one row per step (the usual case)
    layout "wide": one row per year, one column per season (JAN..DEC): read row by row into
                   one series, times "<year>-<season>" (statsmodels' El Niño table)
    fill "interpolate": blank or non-numeric cells are filled linearly between their
                   neighbours (the weekly CO2 record has 59 gaps); "none" refuses them

    from genforge.modalities.series.sources import read_series
    times, columns, values = read_series(path, layout="wide")   # values (N, D) float64
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from genforge.errors import DataError


def csv_rows(path: Path, *, strict: bool = True) -> tuple[list[str], list[list[str]]]:
    """The header and the non-blank rows of a UTF-8 CSV; `strict`: every row as wide as the
    header (else short rows are gaps that a fill may take)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); convert it, e.g. "
                        "iconv -f LATIN1 -t UTF-8") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None
    if not rows:
        raise DataError(f"{path}: an empty file; a series CSV needs a header row and values")
    for i, row in enumerate(rows[1:], 2):
        if strict and len(row) != len(rows[0]):
            raise DataError(f"{path}: row {i} has {len(row)} cells, the header {len(rows[0])}; "
                            "every row needs a value (or an empty cell) for each column")
    return rows[0], rows[1:]


def read_series(path: str | Path, columns: str | None = None, *, layout: str = "long",
                fill: str = "none") -> tuple[list[str], list[str], np.ndarray]:
    """(time labels, value column names, values (N, D)) from a CSV with a header row."""
    path = Path(path)
    header, body = csv_rows(path, strict=False)
    if layout == "wide":
        return _wide(path, header, body)
    if layout != "long":
        raise DataError(f"{path}: layout={layout!r}; allowed: long, wide")
    if fill not in ("none", "interpolate"):
        raise DataError(f"{path}: fill={fill!r}; allowed: none, interpolate")
    if columns:
        wanted = [c.strip() for c in columns.split(",")]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DataError(f"{path}: no column(s) {missing}; the columns are {header}")
        keep = [header.index(c) for c in wanted]
    else:  # numeric columns: most cells parse (gaps are allowed when filling)
        need = 0.5 if fill == "interpolate" else 1.0
        keep = [j for j in range(1, len(header))
                if np.mean([j < len(r) and _number(r[j]) is not None for r in body]) >= need]
        if not keep:
            raise DataError(f"{path}: no numeric column besides the first (the time)")
    values = np.array([[_number(r[j]) if j < len(r) else None for j in keep] for r in body],
                      dtype=np.float64)  # None -> nan
    gaps = np.isnan(values)
    if gaps.any():
        if fill == "none":
            row = int(np.argwhere(gaps)[0][0])
            raise DataError(f"{path}: row {row + 2} has a blank or non-numeric value; "
                            "use fill=interpolate or clean the file")
        values = _interpolate(path, values)
    names = [header[j] or f"value{j}" for j in keep]
    return [r[0] for r in body], names, values


def _wide(path: Path, header: list[str], body: list[list[str]]
          ) -> tuple[list[str], list[str], np.ndarray]:
    seasons = header[1:]
    times, values = [], []
    for r in body:
        year = r[0].removesuffix(".0")
        for name, cell in zip(seasons, r[1:], strict=False):
            value = _number(cell)
            if value is None:
                raise DataError(f"{path}: year {year}, {name}: {cell!r} is not a number")
            times.append(f"{year}-{name}")
            values.append(value)
    return times, [path.stem], np.asarray(values, np.float64)[:, None]


def _interpolate(path: Path, values: np.ndarray) -> np.ndarray:
    out = values.copy()
    steps = np.arange(len(values))
    for j in range(values.shape[1]):
        ok = ~np.isnan(values[:, j])
        if ok.sum() < 2:
            raise DataError(f"{path}: column {j + 1} has fewer than two numbers to interpolate")
        out[:, j] = np.interp(steps, steps[ok], values[ok, j])
    return out


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
