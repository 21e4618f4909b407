"""The `data:` section of a tables run (kept apart from genforge.modalities.tables.data so that
reading
configs does not import pandas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genforge.errors import ConfigError

NA_VALUES = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
BY_CATEGORY_UNDER_DP = (  # refused by the tabular family's check_run and by the stream itself
    "data.sampling=by-category with privacy: it draws rows of rare categories far more often "
    "than the rate q = batch / rows that the accountant assumes, so the epsilon would not "
    "hold; set data.sampling=rows (DP-SGD draws Poisson samples)")


@dataclass
class TablesDataConfig:
    """Which table to learn and how to read it (see the module docstring)."""

    dataset: str = "csv"  # adult | german-credit | csv | parquet | any name for the record
    path: str | None = None  # the training table (.csv/.parquet); adult/german-credit: none
    root: str | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str | None = None  # label column; adult: income, german-credit: credit
    positive: str | None = None  # the target's positive class (default: its rarest)
    protected: str | None = None  # a column whose fairness gaps `genforge eval` reports
    test_path: str | None = None  # held-out rows; adult: adult.test
    test_split: float = 0.0  # else this share of the rows is held out (german-credit: 0.3)
    split_seed: int = 0
    columns: tuple[str, ...] | None = None  # kind overrides "name:kind[:option]"
    schema: str | None = None  # a schema JSON file that replaces inference
    separator: str = ","
    header: bool = True
    na_values: tuple[str, ...] = NA_VALUES
    max_categories: int = 500
    limit: int | None = None  # only the first `limit` training rows
    sampling: Literal["rows", "by-category"] = "rows"  # by-category: CTGAN's training-by-sampling

    def __post_init__(self) -> None:
        if self.dataset == "adult":
            self.target = self.target or "income"
            self.positive = self.positive or ">50K"
            self.protected = self.protected or "sex"
        elif self.dataset == "german-credit":
            self.target = self.target or "credit"
            self.positive = self.positive or "bad"
            self.protected = self.protected or "personal-status-sex"
            if self.test_path is None and self.test_split == 0.0:
                self.test_split = 0.3
        elif not self.path:
            raise ConfigError(f"data.dataset={self.dataset!r} needs data.path (a .csv or "
                              ".parquet file); or use dataset adult / german-credit")
        if not 0.0 <= self.test_split < 1.0:
            raise ConfigError(f"data.test_split={self.test_split}: must be in [0, 1)")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"data.limit={self.limit}: must be a positive integer")
        for spec in self.columns or ():
            if ":" not in spec:
                raise ConfigError(f"data.columns entry {spec!r}: expected name:kind, e.g. "
                                  "customer:id")
