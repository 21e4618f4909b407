"""What the four tabular synthesizers share: chunked sampling, conditions, imputation.

    sample(n, seed=0, where={"sex": "Female", "income": ">50K"})  -> EncodedTable
    iter_sample(n, seed=0, chunk=20000)                           -> EncodedTable chunks
    complete(frame, seed=0)  -> the frame with its empty cells filled, given cells untouched

A synthesizer implements `_generate(m, cond)`: m encoded rows, where `cond` (categorical
column -> code, the where-condition) may steer its own conditioning (CTGAN's condition
vector, TabDDPM's inpainting) or be ignored; rows that do not obey the whole condition are
rejected afterwards, so samples obey it exactly. A synthesizer whose steering is not learned
(`learned_conditioning = False`: TabDDPM's inpainting fixes the columns but the others do not
follow them: 32 % "Husband" among rows fixed to sex=Female on Adult) samples freely and rejects
while at least MIN_REJECTION_RATE of its rows obey, and steers only for rarer conditions;
`steers(cond)` may say so per condition (a TabDDPM told its target class steers for a condition
on the target alone).
Chunk i of a sample is seeded by (seed, i), so a long sample streams in bounded memory and
its first chunk equals a short sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

from genforge.errors import ConfigError
from genforge.modalities.tables.schema import MISSING, EncodedTable, TableCodec, _decode_numeric

MIN_REJECTION_RATE = 0.005  # below this share of obeying rows, steer (see the docstring)


class TabularObjective:
    """Base class; subclasses set `nets`, `sampling_nets` and implement `_generate`."""

    learned_conditioning = True  # `_generate(m, cond)` samples from p(rows | cond) itself
    # the family's sample options this kind takes (the spec's options_by_kind): every kind
    # declares them; TabDDPM takes a temperature too
    sample_options: tuple[str, ...] = ("where",)
    # what sampling offers (genforge.inference.sampler): rows chunk by chunk, imputation
    capabilities = frozenset({"sample", "chunks", "complete_rows"})
    sample_keywords = ()
    complete_keywords = ()

    default_out = "samples.csv"
    default_n = 1000
    num_classes = 0

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        self.cfg, self.info = cfg, data_info
        self.codec = TableCodec(data_info)
        self.n_num = len(self.codec.numeric)
        self.cards = self.codec.cardinalities

    @property
    def device(self) -> torch.device:
        net = self.nets[self.sampling_nets[0]]
        return next(iter([*net.parameters(), *net.buffers()])).device

    # --- sampling --------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               where: dict[str, Any] | str | None = None,
               temperature: float | None = None) -> EncodedTable:
        """n encoded rows (decode with genforge.modalities.tables.data.TablesOutput); `where` fixes
        columns: {"sex": "Female"}, a number, or a (low, high) pair for a numeric column;
        `temperature` (TabDDPM) below 1 sharpens the categorical columns."""
        chunks = list(self.iter_sample(n, seed=seed, where=where, temperature=temperature))
        return EncodedTable(torch.cat([c.num for c in chunks]), torch.cat([c.cat for c in chunks]))

    @torch.no_grad()
    def iter_sample(self, n: int, *, seed: int, where: dict[str, Any] | str | None = None,
                    chunk: int | None = None, temperature: float | None = None
                    ) -> Iterator[EncodedTable]:
        chunk = chunk or self.cfg.sample_chunk
        cond = self.encode_where(where)
        knobs = {}  # options of the synthesizer's own `_generate`
        if temperature is not None:
            if "temperature" not in self.sample_options:
                raise ConfigError(f"--temperature applies to the tables diffusion model "
                                  f"(model.kind=tabddpm), not to model.kind={self.cfg.kind}")
            if not temperature > 0:
                raise ConfigError(f"--temperature={temperature}: a tables model takes a "
                                  "temperature > 0 (below 1: sharper categories)")
            knobs["temperature"] = temperature
        for i, start in enumerate(range(0, n, chunk)):
            m = min(chunk, n - start)
            with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else
                                       [self.device]):
                # within torch's seed range for any seed (the server draws 63-bit ones);
                # the same as seed * 1_000_003 + i for every seed below ~9e12
                torch.manual_seed((seed * 1_000_003 + i) % 2**63)
                rows = self._obeying(m, cond, where, knobs)
            rows.start = start
            yield rows

    def _obeying(self, m: int, cond: dict[str, Any], where: Any,
                 knobs: dict[str, Any]) -> EncodedTable:
        if not cond["cat"] and not cond["num"]:
            return self._generate(m, cond["cat"], **knobs)
        kept_num, kept_cat, have, asked = [], [], 0, 0
        steer = self.steers(cond)
        for _ in range(self.cfg.max_rejection_rounds):
            rate = have / asked if asked else 1.0
            want = int(min(max((m - have) / max(rate, 1e-3) * 1.2, 64), 20 * self.cfg.sample_chunk))
            rows = self._generate(want, cond["cat"] if steer else {}, **knobs)
            ok = self._obeys(rows, cond)
            kept_num.append(rows.num[ok])
            kept_cat.append(rows.cat[ok])
            have, asked = have + int(ok.sum()), asked + want
            if not steer and asked >= 1000 and have < MIN_REJECTION_RATE * asked:
                steer, have, asked, kept_num, kept_cat = True, 0, 0, [], []  # too rare
            if have >= m:
                return EncodedTable(torch.cat(kept_num)[:m], torch.cat(kept_cat)[:m])
        raise ConfigError(f"where={where}: only {have} of {asked} generated rows obey it; too "
                          f"rare for this model to sample {m} rows (loosen the condition)")

    def steers(self, cond: dict[str, Any]) -> bool:
        """Whether `_generate` samples from p(rows | cond) itself for this condition."""
        return self.learned_conditioning

    def _obeys(self, rows: EncodedTable, cond: dict[str, Any]) -> torch.Tensor:
        ok = torch.ones(len(rows), dtype=torch.bool, device=rows.cat.device)
        for j, code in cond["cat"].items():
            ok &= rows.cat[:, j] == code
        for j, (lo, hi) in cond["num"].items():
            col = self.codec.numeric[j]
            v = rows.num[:, j].double().cpu().numpy() * self.codec.std[j] + self.codec.mean[j]
            values = _decode_numeric(v, col, None).to_numpy(np.float64)
            ok &= torch.from_numpy((values >= lo) & (values <= hi)).to(ok.device)
            if col["missing"] > 0:
                ok &= rows.cat[:, self.codec.index[col["name"] + MISSING]] == 0
        return ok

    def encode_where(self, where: dict[str, Any] | str | None) -> dict[str, Any]:
        """{"cat": {column index: code}, "num": {column index: (low, high)}} in model terms."""
        from genforge.modalities.tables.data import parse_where

        if isinstance(where, str):
            where = parse_where(where)
        out: dict[str, Any] = {"cat": {}, "num": {}}
        columns = {c["name"]: c for c in self.codec.schema["columns"]}
        for name, value in (where or {}).items():
            if name not in columns or columns[name]["kind"] == "id":
                raise ConfigError(f"--where {name}=...: {name!r} is not a generated column; "
                                  f"columns: {', '.join(c for c in columns)}")
            if name in self.codec.index:
                out["cat"][self.codec.index[name]] = self._category_code(name, value)
            else:
                out["num"][self.codec.num_index[name]] = _numeric_range(name, value)
        return out

    def _category_code(self, name: str, value: Any) -> int:
        cats = self.codec.categorical[self.codec.index[name]]["categories"]
        for k, c in enumerate(cats):
            if c == value or (c is not None and str(c) == str(value)) or (
                    c is None and value in (None, "", "missing")):
                return k
        shown = ", ".join(str(c) for c in cats[:20] if c is not None)
        raise ConfigError(f"--where {name}={value}: not a category of {name!r}; it has {shown}")

    def _generate(self, m: int, cond: dict[int, int]) -> EncodedTable:
        raise NotImplementedError

    # --- imputation ------------------------------------------------------------------------

    @torch.no_grad()
    def complete(self, frame: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
        """`frame` (typed rows, schema columns) with every empty cell filled; given cells are
        copied from `frame` itself, so they stay exactly as given."""
        gaps = frame.isna()
        enc, known_num, known_cat = self._known(frame, gaps)
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
            torch.manual_seed(seed)
            filled = self._fill(enc, known_num, known_cat)
        decoded = self.codec.decode(filled)
        out = frame.copy()
        for name in out.columns:
            if name in decoded and gaps[name].any():
                fill = decoded[name].where(gaps[name].to_numpy(), None)
                out[name] = out[name].astype(object).where(~gaps[name], fill.astype(object))
        return out.astype({c: decoded[c].dtype for c in out.columns if c in decoded and
                           not out[c].isna().any() and decoded[c].dtype != object},
                          errors="ignore")

    def _known(self, frame: pd.DataFrame, gaps: pd.DataFrame
               ) -> tuple[EncodedTable, torch.Tensor, torch.Tensor]:
        """Encoded rows and which model cells are given. An empty numeric cell is to be filled
        with a number: its missing-indicator is given as 0 (present)."""
        frame = frame.copy()
        for col in self.codec.categorical:  # a placeholder where a gap has no 'missing' code
            if "indicator_of" not in col and col["categories"][-1] is not None:
                frame[col["name"]] = frame[col["name"]].where(frame[col["name"]].notna(),
                                                              col["categories"][0])
        enc = self.codec.encode(frame)
        known_num = torch.tensor(~gaps[[c["name"] for c in self.codec.numeric]].to_numpy()
                                 ).reshape(len(frame), self.n_num)
        known_cat = torch.ones_like(enc.cat, dtype=torch.bool)
        for j, col in enumerate(self.codec.categorical):
            if "indicator_of" in col:
                enc.cat[:, j] = 0
            else:
                known_cat[:, j] = torch.from_numpy(~gaps[col["name"]].to_numpy())
        return enc, known_num, known_cat

    def _fill(self, enc: EncodedTable, known_num: torch.Tensor, known_cat: torch.Tensor,
              candidates: int = 64, max_pool: int = 20000) -> EncodedTable:
        """Generic imputation from synthetic donors: one pool of free samples (`candidates`
        per row, 2048 to `max_pool` rows), and for each row the donor closest on its given
        cells (standardised distance + category mismatches) fills its gaps. A free sample
        carries the model's whole joint, which inpainting's fixed cells do not pass on."""
        n = len(enc)
        pool = self._generate(int(min(max(candidates * n, 2048), max_pool)), {})
        forbid = self._missing_codes()
        num, cat = enc.num.clone(), enc.cat.clone()
        for a in range(0, n, 256):  # (256, pool) distance blocks
            b = min(a + 256, n)
            d = ((pool.num[None] - enc.num[a:b, None]).abs() * known_num[a:b, None]).sum(2)
            d = d + ((pool.cat[None] != enc.cat[a:b, None]) & known_cat[a:b, None]).sum(2)
            bad = ((pool.cat[None] == forbid) & ~known_cat[a:b, None]).any(2)
            best = (d + bad.float() * 1e6).argmin(1)  # (b - a,)
            num[a:b] = torch.where(known_num[a:b], num[a:b], pool.num[best])
            cat[a:b] = torch.where(known_cat[a:b], cat[a:b], pool.cat[best])
        return EncodedTable(num, cat)

    def _missing_codes(self) -> torch.Tensor:
        """Per categorical column the code of 'missing' (-1 where it has none)."""
        return torch.tensor([len(c["categories"]) - 1 if c["categories"][-1] is None else -1
                             for c in self.codec.categorical], dtype=torch.long)


def _numeric_range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return float(value[0]), float(value[1])
    if isinstance(value, str) and ".." in value:
        lo, hi = value.split("..", 1)
        try:
            return float(lo), float(hi)
        except ValueError:
            pass
    try:
        return float(value), float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--where {name}={value}: a numeric column takes a number or a "
                          "range LOW..HIGH") from None
