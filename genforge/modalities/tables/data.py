"""Tables: CSV and Parquet files (or Adult and German credit by name) as training data.

    data:
      dataset: adult            # adult | german-credit | csv | parquet (a name for the record)
      path: loans.csv           # absolute or under a data root; adult/german need none
      target: default           # the label column (utility and fairness evaluation)
      columns: [customer:id, opened:datetime, score:float]   # kind overrides; name:drop drops
      test_split: 0.3           # rows held out for evaluation when there is no test_path

The schema (genforge.modalities.tables.schema) is inferred from the training rows unless
`data.schema` names a JSON or YAML file (RUN/schema.json, or a public schema); it and the
fitted statistics travel in `info()` and so in the model file. Batches are encoded rows:
x = standardised numbers (B, n_num), y = category codes (B, n_cat).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genforge.data.batches import Batch, poisson_indices
from genforge.data.roots import check_root, find_in_roots
from genforge.errors import ConfigError, DataError
from genforge.modalities.tables.config import BY_CATEGORY_UNDER_DP, TablesDataConfig
from genforge.modalities.tables.schema import (
    EncodedTable,
    TableCodec,
    fit_stats,
    infer_schema,
    is_text,
    typed_frame,
)

__all__ = ["EncodedTable", "TableBatch", "TablesData", "TablesDataConfig", "TablesOutput",
           "load_tables", "parse_where", "read_rows", "read_table", "write_table"]

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                 "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                 "hours-per-week", "native-country", "income"]
GERMAN_COLUMNS = ["checking", "duration", "history", "purpose", "amount", "savings",
                  "employment", "installment-rate", "personal-status-sex", "debtors",
                  "residence-since", "property", "age", "installment-plans", "housing",
                  "existing-credits", "job", "dependents", "telephone", "foreign-worker", "credit"]


@dataclass
class TableBatch(Batch):
    """Encoded rows; `cond` (B, 2) = (categorical column, category) each row was drawn for."""

    cond: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------
# Reading


def read_table(path: Path, cfg: TablesDataConfig | None = None, *,
               names: list[str] | None = None, skiprows: int = 0) -> pd.DataFrame:
    """A CSV (every value as text, missing markers -> NaN) or a Parquet file (native types)."""
    cfg = cfg or TablesDataConfig(dataset="csv", path=str(path))
    fmt = cfg.format if cfg.format != "auto" else (
        "parquet" if path.suffix in (".parquet", ".pq") else "csv")
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
            df = df.replace({v: np.nan for v in cfg.na_values if v}) if len(df) else df
        else:
            df = pd.read_csv(path, sep=cfg.separator if cfg.separator != " " else r"\s+",
                             header=0 if cfg.header and names is None else None, names=names,
                             skiprows=skiprows, dtype=str, keep_default_na=False,
                             na_values=list(cfg.na_values), skipinitialspace=True,
                             engine="python" if cfg.separator == " " else "c")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable {fmt} table ({str(err).splitlines()[0]})") \
            from None
    if fmt == "csv" and not isinstance(df.index, pd.RangeIndex):  # pandas made extra cells
        raise DataError(f"{path}: rows have more cells than the header's {len(df.columns)} "
                        "columns; check data.separator and the header row")
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0 or len(df.columns) == 0:
        raise DataError(f"{path}: the table is empty (no rows); a table to learn needs rows")
    return df


def _read_named(cfg: TablesDataConfig, explicit: Any) -> tuple[pd.DataFrame, pd.DataFrame | None,
                                                                 str]:
    """(train, test or None, source) for adult, german-credit or a path."""
    if cfg.dataset == "adult" and not cfg.path:
        folder = find_in_roots("tabular/adult", explicit, "adult.data and adult.test")
        train = read_table(folder / "adult.data", cfg, names=ADULT_COLUMNS)
        test = read_table(folder / "adult.test", cfg, names=ADULT_COLUMNS, skiprows=1)
        test["income"] = test["income"].str.rstrip(".")  # the test labels end with '.'
        return train, test, str(folder / "adult.data")
    if cfg.dataset == "german-credit" and not cfg.path:
        folder = find_in_roots("tabular/german-credit", explicit, "german.data")
        space = TablesDataConfig(dataset="german-credit", separator=" ", header=False)
        df = read_table(folder / "german.data", space, names=GERMAN_COLUMNS)
        df["credit"] = df["credit"].map({"1": "good", "2": "bad"})
        return df, None, str(folder / "german.data")
    path = find_in_roots(str(cfg.path), explicit, "the table")
    test = None
    if cfg.test_path:
        test = read_table(find_in_roots(cfg.test_path, explicit, "the test table"), cfg)
    return read_table(path, cfg), test, str(path)


def _overrides(cfg: TablesDataConfig) -> dict[str, str]:
    return {spec.split(":", 1)[0]: spec.split(":", 1)[1] for spec in cfg.columns or ()}


def load_tables(cfg: TablesDataConfig, data_root: str | Path | None = None) -> TablesData:
    """Read, split, infer (or read) the schema, parse and encode; errors name file/column/row."""
    explicit = check_root(data_root or cfg.root)
    train, test, source = _read_named(cfg, explicit)
    for field in ("target", "protected"):
        column = getattr(cfg, field)
        if column is not None and column not in train.columns:
            raise DataError(f"{source}: data.{field}={column!r} is not a column; the columns "
                            f"are {', '.join(train.columns)}")
    if test is None and cfg.test_split > 0:
        order = np.random.default_rng(cfg.split_seed).permutation(len(train))
        cut = round(len(train) * cfg.test_split)
        train, test = train.iloc[np.sort(order[cut:])], train.iloc[np.sort(order[:cut])]
        train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    if cfg.limit is not None:
        train = train.iloc[: cfg.limit].reset_index(drop=True)
    if cfg.schema:
        schema = _read_schema(find_in_roots(cfg.schema, explicit, "the schema"))
    else:
        schema = infer_schema(train, source=source, target=cfg.target, overrides=_overrides(cfg),
                              max_categories=cfg.max_categories)
    frame = typed_frame(train, schema, source)
    test_frame = None
    if test is not None:
        test_source = cfg.test_path or f"{source} (held-out rows)"
        test_frame = _known_categories(typed_frame(test, schema, test_source), schema)
    return TablesData(cfg, schema, frame, test_frame, source)


def _read_schema(path: Path) -> dict[str, Any]:
    """A schema file: JSON (RUN/schema.json) or YAML (a public schema written by hand)."""
    import yaml

    try:
        schema = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (yaml.YAMLError, OSError) as err:
        raise DataError(f"data.schema={path}: not readable JSON or YAML "
                        f"({' '.join(str(err).split())[:120]})") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("columns"), list):
        raise DataError(f"data.schema={path}: expected a mapping with a 'columns' list")
    schema.setdefault("version", 1)
    schema.setdefault("target", None)
    return schema


def _known_categories(frame: pd.DataFrame, schema: dict[str, Any]) -> pd.DataFrame:
    """Test rows whose categories the training rows never had become missing there (a test
    split may hold a country no training row has)."""
    for col in schema["columns"]:
        if col["kind"] == "categorical":
            allowed = set(col["categories"])
            frame[col["name"]] = frame[col["name"]].where(frame[col["name"]].isin(allowed))
    return frame


# --------------------------------------------------------------------------------------------
# The training data


class TablesData:
    """The training rows in memory, typed and encoded; the held-out rows for evaluation."""

    def __init__(self, cfg: TablesDataConfig, schema: dict[str, Any], frame: pd.DataFrame,
                 test_frame: pd.DataFrame | None, source: str) -> None:
        self.cfg, self.schema, self.source = cfg, schema, source
        self.train_frame, self.test_frame = frame, test_frame
        self.privacy_items: list[dict[str, Any]] = []  # DP releases of the preprocessing
        self.private = False
        self.refit(fit_stats(frame, schema), [])

    def refit(self, stats: dict[str, Any], items: list[dict[str, Any]]) -> None:
        """Statistics (and the DP releases that paid for them) for the current schema."""
        self.stats, self.privacy_items = stats, items
        self.codec = TableCodec({"schema": self.schema, "stats": stats})
        self.encoded = self.codec.encode(self.train_frame)
        if self.test_frame is not None:
            self.test_frame = _known_categories(self.test_frame, self.schema)

    def privatise(self, privacy: Any) -> None:
        """Under privacy.epsilon: nothing learned from the rows outside accounted DP
        releases (genforge.modalities.tables.privacy): a public data.schema, or DP estimates."""
        from genforge.modalities.tables.privacy import private_preprocessing

        private_preprocessing(self, privacy, public=bool(self.cfg.schema))
        self.private = True

    def __len__(self) -> int:
        return len(self.train_frame)

    def privacy_records(self) -> tuple[int, str]:
        return len(self), "one table row"

    def info(self) -> dict[str, Any]:
        c = self.cfg
        positive = c.positive
        if positive is None and c.target is not None and self.private:  # no counting
            cats = next(col.get("categories", [None]) for col in self.schema["columns"]
                        if col["name"] == c.target)
            positive = cats[-1] if cats else None
        elif positive is None and c.target is not None:
            counts = self.train_frame[c.target].value_counts()
            positive = counts.index[-1] if len(counts) else None
        return {
            "kind": "tables", "dataset": c.dataset, "source": self.source,
            "target": c.target, "positive": _plain(positive), "rows": len(self),
            "test_rows": 0 if self.test_frame is None else len(self.test_frame),
            "schema": self.schema, "stats": self.stats,
            "cardinalities": self.codec.cardinalities,
            "leaks": self._leaks(),
        }

    def _leaks(self) -> str:
        if not self.private:
            return ("the schema (bounds, category lists) and stats (quantiles, frequencies) "
                    "are read from the training rows without differential privacy")
        if self.privacy_items:
            return ("the schema's bounds, categories and missing rates are DP releases "
                    "(privacy_items); the stats derive from the schema alone; column names, "
                    "kinds and the row count are treated as public")
        return ("the schema is the user's public one; the stats derive from it alone; "
                "column names, kinds and the row count are treated as public")

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu", sample_rate: float | None = None
               ) -> TableStream:
        return TableStream(self, batch_size=batch_size, seed=seed, rank=rank, world=world,
                           device=device, sample_rate=sample_rate)

    def preview_condition(self, n: int) -> None:
        return None

    def write_samples(self, samples: EncodedTable, stem: Path) -> Path:
        return write_table(self.codec.decode(samples), Path(stem).with_suffix(".csv"))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class TableStream:
    """Shuffled epochs of rows, or (by-category) CTGAN's training-by-sampling: per row a
    categorical column uniformly, a category with probability ~ log(1 + count), then a row
    that has it. Step s draws from a generator seeded by (seed, s); the state is two ints.
    With `sample_rate` q (DP-SGD) each row joins a step independently with probability q
    (Poisson sampling, batches.poisson_indices), the draw the accountant assumes; by-category
    sampling, which favours rows of rare categories, is refused then."""

    def __init__(self, data: TablesData, *, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, device: torch.device | str = "cpu",
                 sample_rate: float | None = None) -> None:
        if batch_size > len(data):
            raise DataError(f"train.batch_size={batch_size} exceeds the {len(data)} table rows")
        self.num, self.cat = data.encoded.num, data.encoded.cat
        self.by_category = data.cfg.sampling == "by-category" and self.cat.shape[1] > 0
        if sample_rate is not None and self.by_category:
            raise ConfigError(BY_CATEGORY_UNDER_DP)
        self.sample_rate = sample_rate
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.device = torch.device(device)
        self.epoch = self.position = 0
        if self.by_category:  # rows sorted by each column's code, and where each code starts
            self.sorted = torch.argsort(self.cat, dim=0, stable=True)  # (N, n_cat)
            counts = [torch.bincount(self.cat[:, j], minlength=k)
                      for j, k in enumerate(data.codec.cardinalities)]
            self.counts = torch.nn.utils.rnn.pad_sequence(counts, batch_first=True)  # (n_cat, K)
            self.offsets = self.counts.cumsum(1) - self.counts
            self.logp = torch.log1p(self.counts.double()).where(self.counts > 0,
                                                                torch.tensor(0.0).double())
        self._order = self._permutation()

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.num), generator=g)

    def next(self, micro: int) -> list[TableBatch]:
        cond = None
        if self.sample_rate is not None:
            index = poisson_indices(len(self.num), self.sample_rate, seed=self.seed,
                                    step=self.position)
        elif self.by_category:
            index, cond = self._by_category()
        else:
            if self.position >= len(self.num) // self.batch_size:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            start = self.position * self.batch_size
            index = self._order[start : start + self.batch_size]
        self.position += 1
        index = index[self.rank :: self.world]
        x, y = self.num[index].to(self.device), self.cat[index].to(self.device)
        conds = cond[self.rank :: self.world].to(self.device).chunk(micro) if cond is not None \
            else [None] * micro
        return [TableBatch(a, b, c) for a, b, c in zip(x.chunk(micro), y.chunk(micro), conds,
                                                       strict=True)]

    def _by_category(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7 * self.position + 1)
        b = self.batch_size
        column = torch.randint(0, self.cat.shape[1], (b,), generator=g)  # (B,)
        category = torch.multinomial(self.logp[column], 1, generator=g).squeeze(1)  # (B,)
        pick = (torch.rand(b, generator=g, dtype=torch.float64)
                * self.counts[column, category]).long()
        index = self.sorted[self.offsets[column, category] + pick, column]  # (B,)
        return index, torch.stack([column, category], 1)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation()


def read_rows(rows: pd.DataFrame | str | Path, info: dict[str, Any]) -> pd.DataFrame:
    """Rows to complete (a DataFrame, or a .csv/.parquet file whose empty cells are the gaps),
    parsed by the model's schema; a schema column the rows lack is added, all empty."""
    source = "the rows"
    if not isinstance(rows, pd.DataFrame):
        source = str(rows)
        path = Path(rows)
        if not path.exists():
            raise DataError(f"--input {rows}: no such file")
        rows = read_table(path)
    rows = rows.copy()
    names = [c["name"] for c in info["schema"]["columns"]]
    extra = [c for c in rows.columns if c not in names]
    if extra:
        raise DataError(f"{source}: column {extra[0]!r} is not in the model's schema; its "
                        f"columns are {', '.join(names)}")
    for name in names:
        if name not in rows.columns:
            rows[name] = np.nan
    return typed_frame(rows[names], info["schema"], source)


def parse_where(text: str) -> dict[str, str]:
    """'sex=Female,income=>50K' -> {'sex': 'Female', 'income': '>50K'} (split at the first '='
    of each comma-separated part; a numeric range is LOW..HIGH)."""
    out = {}
    for part in (p for p in text.split(",") if p.strip()):
        if "=" not in part:
            raise ConfigError(f"--where {text!r}: {part!r} is not column=value")
        name, value = part.split("=", 1)
        out[name.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------------------------
# Output: model rows -> DataFrame -> .csv / .parquet, in chunks


class TablesOutput:
    """The tables modality's output adapter (see genforge.modalities.base.Output)."""

    default_out = "samples.csv"
    default_n = 1000
    suffixes = (".csv", ".parquet")

    def decode(self, samples: Any, info: dict[str, Any]) -> pd.DataFrame:
        if isinstance(samples, pd.DataFrame):
            return samples
        return TableCodec(info).decode(samples)

    def write(self, values: Any, path: Path, info: dict[str, Any], *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None) -> Path:
        """A DataFrame, or an iterable of DataFrames / EncodedTables (streamed, chunk by
        chunk), to `path` (.csv or .parquet)."""
        if isinstance(values, pd.DataFrame | EncodedTable):
            values = [values]
        chunks = (self.decode(v, info) for v in values)
        return write_table(chunks, Path(path), info.get("schema"), provenance=provenance)


def write_table(frames: pd.DataFrame | Iterable[pd.DataFrame], path: Path,
                schema: dict[str, Any] | None = None, *,
                provenance: dict[str, Any] | None = None) -> Path:
    """Write one frame or a stream of frames; only one chunk is in memory at a time. The file
    appears complete or not at all (written under a temporary name, then renamed)."""
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out {path}: tables go to a .csv or .parquet file")
    frames = [frames] if isinstance(frames, pd.DataFrame) else frames
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:  # the frames may be generated while they are written, and fail (a bad --where)
        if path.suffix == ".csv":
            _write_csv(frames, tmp, schema)
        else:
            _write_parquet(frames, tmp, None)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    if provenance is not None:  # CSV: a sidecar; Parquet: its key-value metadata
        from genforge.labelling import embed_provenance

        embed_provenance(path, provenance)
    return path


def _write_csv(frames: Iterable[pd.DataFrame], tmp: Path, schema: dict[str, Any] | None) -> None:
    formats = {c["name"]: c.get("format") for c in (schema or {}).get("columns", [])
               if c["kind"] == "datetime"}
    with tmp.open("w", newline="", encoding="utf-8") as f:
        for i, frame in enumerate(frames):
            frame = frame.copy()
            for name, fmt in formats.items():
                if name in frame and fmt:
                    frame[name] = frame[name].dt.strftime(fmt)
            frame.to_csv(f, header=i == 0, index=False)


def _write_parquet(frames: Iterable[pd.DataFrame], tmp: Path,
                   provenance: dict[str, Any] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for frame in _non_empty(frames):
            if writer is None:  # the first chunk fixes the file's schema for all
                schema = _arrow_schema(frame)
                if provenance is not None:
                    schema = schema.with_metadata({**(schema.metadata or {}),
                                                   b"genforge.provenance":
                                                   json.dumps(provenance, default=str).encode()})
                writer = pq.ParquetWriter(str(tmp), schema)
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
    finally:
        if writer is not None:
            writer.close()


def _non_empty(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield from (f for f in frames if len(f))


def _arrow_schema(frame: pd.DataFrame) -> Any:
    """Types from the first chunk, with object columns typed by their first non-missing value
    (a chunk whose column is all missing must not make it a null column)."""
    import pyarrow as pa

    fields = []
    for name in frame.columns:
        s = frame[name]
        if is_text(s):
            first = s.dropna()
            value = first.iloc[0] if len(first) else ""
            kind = pa.bool_() if isinstance(value, bool) else pa.int64() if isinstance(
                value, int) else pa.float64() if isinstance(value, float) else pa.string()
        else:
            kind = pa.from_numpy_dtype(s.dtype.numpy_dtype if hasattr(s.dtype, "numpy_dtype")
                                       else s.dtype)
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)
