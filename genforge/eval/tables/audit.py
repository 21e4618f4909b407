"""An empirical privacy audit of a table run: a lower bound on epsilon from one retraining.

    lines, paths = audit_run("runs/tvae1", AuditOptions(canaries=1000, confidence=0.95))

The one-run audit of Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run"
(NeurIPS 2023), black box (only the synthetic rows are looked at):
1. draw m canary rows, each distinct and unlike the data: every numeric column at one of its
   schema bounds, every category drawn uniformly (combinations the data hardly ever holds);
   the other columns copied from a random training row
2. include each canary independently with probability 1/2 (S_i = in or out) and retrain once
   from the run's own config.yaml on its training rows + the included canaries; a DP run keeps
   its privacy section, so the epsilon it claims is the one of this training
3. sample as many rows as it trained on; a canary's membership score is minus the distance to
   its closest synthetic row, in the space of the eval's distance to closest record (numbers
   scaled to [0, 1] by the training range, a category mismatch counts 1)
4. guess "in" for the k+ highest scores, "out" for the k- lowest, abstain on the rest: v of the
   r = k+ + k- guesses are right
5. an (epsilon, delta)-DP training makes v or more right guesses at most this likely (the
   paper's main theorem; for delta = 0 it is the tail of Binomial(r, e^eps / (e^eps + 1))):
       p(eps) = P[Binomial(r, q) >= v] + 2 m delta alpha,   q = e^eps / (e^eps + 1),
       alpha  = max over i = 1..v of P[v - i <= Binomial(r, q) < v] / i
   the bound is the largest eps with p(eps) < beta = 1 - confidence (found by bisection)
6. k+ and k- are swept over a fixed grid of K pairs, each tested at beta / K (Bonferroni), so
   the largest of the K bounds holds at the stated confidence
A bound above the claimed epsilon refutes the claim (at that confidence); a bound below it
does not prove the claim: the audit only sees what this attack sees.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genforge.errors import ConfigError
from genforge.eval.tables.audit_report import AUDIT_FILE, summary_lines
from genforge.modalities.tables.spec import MODALITY as TABLES

GRID_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # k+ and k- as shares of m
NON_DP_DELTA = 1e-5  # the delta a run without a DP claim is audited at (--delta changes it)


# --------------------------------------------------------------------------------------------
# The bound


def p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """How likely an (epsilon, delta)-DP training lets v or more of r guesses (about m
    canaries) be right; step 5 of the module docstring."""
    from scipy.stats import binom

    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # the accuracy of epsilon-randomised response
    tail = float(binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    if delta > 0 and v > 0:
        below = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[B = v-1], P[B = v-2], ...
        alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(1.0, tail + 2 * m * delta * alpha)


def epsilon_lower_bound(m: int, r: int, v: int, *, beta: float, delta: float = 0.0) -> float:
    """The largest epsilon that v right guesses of r reject at level beta (0 if none): no
    (epsilon', delta)-DP training with epsilon' below it makes v that likely."""
    from scipy.stats import beta as beta_dist

    if v == 0:
        return 0.0
    # delta = 0: P[Binomial(r, q) >= v] < beta  <=>  q below the Clopper-Pearson lower end
    q = float(beta_dist.ppf(beta, v, r - v + 1))
    pure = math.log(q / (1 - q)) if 0.5 < q < 1 else (0.0 if q <= 0.5 else math.inf)
    if delta == 0 or pure == 0.0:
        return pure
    if p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, pure  # p(lo) < beta <= p(hi): the delta term only adds to p
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(m, r, v, mid, delta) < beta else (lo, mid)
    return lo


def guess_grid(m: int) -> list[tuple[int, int]]:
    """The (k+, k-) pairs swept, fixed before any score is seen: shares of m, either side may
    abstain entirely but not both."""
    ks = sorted({max(1, round(share * m)) for share in GRID_SHARES})
    return [(kp, km) for kp in (0, *ks) for km in (0, *ks) if 0 < kp + km <= m]


def one_run_bound(scores: np.ndarray, included: np.ndarray, *, confidence: float,
                  delta: float = 0.0, seed: int = 0,
                  grid: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Guess from membership scores (higher = more likely in), count the right guesses and
    return the best bound over the grid of (k+, k-), each pair tested at beta / K."""
    m = len(scores)
    grid = grid or guess_grid(m)
    beta = (1.0 - confidence) / len(grid)
    # ties in the scores are broken at random, independently of who is in
    # (a stream of its own: one shared with the draw of who is in would leak it)
    tiebreak = np.random.default_rng((seed, 0x7E5)).random(m)
    order = np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))  # highest first
    ranked_in = np.asarray(included, dtype=bool)[order]
    best: dict[str, Any] = {}
    for kp, km in grid:
        right = int(ranked_in[:kp].sum()) + int((~ranked_in[m - km:]).sum() if km else 0)
        bound = epsilon_lower_bound(m, kp + km, right, beta=beta, delta=delta)
        if not best or bound > best["epsilon_lower_bound"]:
            best = {"k_plus": kp, "k_minus": km, "guesses": kp + km, "correct": right,
                    "epsilon_lower_bound": bound}
    return {**best, "m": m, "included": int(np.sum(included)), "confidence": confidence,
            "delta": delta, "pairs_tested": len(grid), "beta_per_pair": beta,
            "correction": "Bonferroni over the (k+, k-) grid"}


# --------------------------------------------------------------------------------------------
# Canaries and scores


def draw_canaries(train: pd.DataFrame, schema: dict[str, Any], m: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """m distinct canary rows (step 1 of the module docstring), none equal to a training row;
    ConfigError (naming --canaries) when the schema's bounds and categories hold fewer."""
    learned = [c for c in schema["columns"] if c["kind"] in ("int", "float", "categorical")]
    if not learned:
        raise ConfigError("audit: the schema has no numeric or categorical column to make "
                          "canaries of")
    names = [c["name"] for c in learned]
    seen = set(map(tuple, train[names].astype(str).to_numpy()))
    rows: list[pd.DataFrame] = []
    keys: set[tuple[str, ...]] = set()
    for _ in range(20):  # draw, drop repeats, draw again for the missing ones
        need = m - len(keys)
        if need == 0:
            break
        batch = train.iloc[rng.integers(0, len(train), need)].reset_index(drop=True).copy()
        for col in learned:
            if col["kind"] == "categorical":
                batch[col["name"]] = pd.Series(rng.choice(np.array(col["categories"], dtype=object),
                                                          need), dtype=object)
            else:
                bounds = np.array([col["min"], col["max"]])[rng.integers(0, 2, need)]
                batch[col["name"]] = pd.Series(bounds).astype(train[col["name"]].dtype)
        for i, key in enumerate(map(tuple, batch[names].astype(str).to_numpy())):
            if key not in keys and key not in seen:
                keys.add(key)
                rows.append(batch.iloc[[i]])
    if len(keys) < m:
        raise ConfigError(f"--canaries {m}: this schema's bounds and categories make only "
                          f"{len(keys)} distinct canary rows; use fewer")
    return pd.concat(rows, ignore_index=True)[list(train.columns)]


def membership_scores(canaries: pd.DataFrame, synthetic: pd.DataFrame, train: pd.DataFrame,
                      schema: dict[str, Any]) -> np.ndarray:
    """Minus each canary's distance to its closest synthetic row, in the space of
    genforge.eval.tables.evaluate.privacy (numbers scaled by the training range, missing -> -1;
    one-hot categories / sqrt 2, so a mismatch counts 1)."""
    from sklearn.preprocessing import OneHotEncoder

    from genforge.eval.tables.evaluate import _kinds, _labels, _nearest, _numbers

    kinds = _kinds(schema)
    num = [c for c, k in kinds.items() if k == "numeric"]
    cat = [c for c, k in kinds.items() if k == "categorical"]
    lo = {c: np.nanmin(_numbers(train[c])) for c in num}
    span = {c: (np.nanmax(_numbers(train[c])) - lo[c]) or 1.0 for c in num}
    enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(
        pd.DataFrame({c: _labels(pd.concat([train[c], canaries[c]])).to_numpy() for c in cat})
    ) if cat else None

    def vec(f: pd.DataFrame) -> np.ndarray:
        parts = [np.column_stack([np.nan_to_num((_numbers(f[c]) - lo[c]) / span[c], nan=-1.0)
                                  for c in num])] if num else []
        if enc is not None:
            parts.append(enc.transform(pd.DataFrame({c: _labels(f[c]).to_numpy()
                                                     for c in cat})) / np.sqrt(2))
        return np.hstack(parts)

    return -_nearest(vec(canaries), vec(synthetic))


# --------------------------------------------------------------------------------------------
# A run


@dataclass
class AuditOptions:
    """canaries: m (>= 2); confidence: 1 - beta, in (0, 1); seed: canaries, inclusion and
    sampling; steps: train.max_steps of the retraining (default: the run's own); delta: the
    delta of the bound (default: the run's privacy.delta, else 1e-5); data_root: where the
    data set lives."""

    canaries: int = 1000
    confidence: float = 0.95
    seed: int = 0
    steps: int | None = None
    delta: float | None = None
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.canaries < 2:
            raise ConfigError(f"--canaries {self.canaries}: an audit needs at least 2 canaries")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"--confidence {self.confidence}: must be in (0, 1), e.g. 0.95")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps {self.steps}: must be a positive number of steps")
        if self.delta is not None and not 0.0 <= self.delta < 1.0:
            raise ConfigError(f"--delta {self.delta}: must be in [0, 1)")


def audit_run(run: str | Path, options: AuditOptions) -> tuple[list[str], dict[str, Path]]:
    """Audit the table run folder `run`; RUN/audit/{audit.json, canaries.csv} (an older audit
    is moved to audit-<timestamp>/); (summary lines, written paths)."""
    from genforge.api import load
    from genforge.eval.privacy import privacy_record
    from genforge.modalities.tables.data import load_tables

    run = Path(run)
    model = load(run)
    if model.modality != TABLES.name:
        raise ConfigError(f"{run}: an audit needs a table run; this one is a {model.modality} "
                          "run")
    claim = privacy_record(run)
    delta = options.delta if options.delta is not None else (
        claim["delta"] if claim else NON_DP_DELTA)
    # the rows and the retraining both come from config.yaml: what the run says it learned
    data = load_tables(_run_config(run).data, options.data_root)
    schema = model.data_info["schema"]
    rng = np.random.default_rng(options.seed)
    canaries = draw_canaries(data.train_frame, schema, options.canaries, rng)
    included = rng.random(options.canaries) < 0.5
    with tempfile.TemporaryDirectory(prefix="genforge-audit-") as tmp:
        trained = _retrain(run, Path(tmp), data.train_frame, canaries[included], schema,
                           options)
        scores = membership_scores(canaries, trained.pop("synthetic"), data.train_frame, schema)
    result = one_run_bound(scores, included, confidence=options.confidence, delta=delta,
                           seed=options.seed)
    audited = trained.pop("privacy")
    claimed = audited["epsilon"] if audited else None
    result.update({
        "claimed_epsilon": claimed,
        "claimed_delta": audited["delta"] if audited else None,
        "bound_within_claim": None if claimed is None else
        bool(result["epsilon_lower_bound"] <= claimed),
        "run": str(run), "run_claimed_epsilon": claim["epsilon"] if claim else None,
        "seed": options.seed, "canary_design": "numeric columns at a schema bound, categories "
        "uniform, other columns from a random training row; each distinct",
        "score": "minus the distance to the closest synthetic row (eval DCR space)",
        "method": "one-run audit (Steinke, Nasr, Jagielski, NeurIPS 2023), black box",
        "retraining": trained,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    paths = _write(run / "audit", result, canaries, included, scores)
    return summary_lines(result), paths


def _run_config(run: Path, raw: dict[str, Any] | None = None) -> Any:
    from genforge.config import read_yaml
    from genforge.registry import build_run_config

    if not (run / "config.yaml").exists():
        raise ConfigError(f"{run}: no config.yaml; an audit retrains from the run's config")
    return build_run_config(raw or read_yaml(run / "config.yaml"),
                            source=f"{run / 'config.yaml'}" + (" (audit retraining)" if raw
                                                               else ""))


def _retrain(run: Path, tmp: Path, train: pd.DataFrame, extra: pd.DataFrame,
             schema: dict[str, Any], options: AuditOptions) -> dict[str, Any]:
    """Train the run's config on train + extra (the run's schema kept, so the canaries change
    no bound or category list); sample as many rows as it trained on."""
    from genforge.api import load
    from genforge.api import train as train_run
    from genforge.config import read_yaml
    from genforge.eval.privacy import privacy_record

    table, schema_file = tmp / "train.parquet", tmp / "schema.json"
    pd.concat([train, extra], ignore_index=True).to_parquet(table, index=False)
    schema_file.write_text(json.dumps(schema), encoding="utf-8")
    raw = read_yaml(run / "config.yaml")
    raw["data"].update(path=str(table), format="parquet", schema=str(schema_file),
                       test_path=None, test_split=0.0, limit=None)
    raw["log"].update(progress=False, tensorboard=False, sample_every=0)
    run_steps = raw["train"]["max_steps"]
    if options.steps is not None:  # a shorter schedule: its warm-up must fit inside it
        raw["train"]["max_steps"] = options.steps
        if "warmup_steps" in raw["train"]:
            raw["train"]["warmup_steps"] = min(raw["train"]["warmup_steps"], options.steps - 1)
    cfg = _run_config(run, raw)
    start = time.perf_counter()
    run_dir = train_run(cfg, out=tmp / "run", data_root=options.data_root).run_dir
    seconds = time.perf_counter() - start
    model, rows = load(run_dir), len(train) + len(extra)
    synthetic = pd.concat(list(model.sample_chunks(rows, seed=options.seed)), ignore_index=True)
    return {"synthetic": synthetic, "privacy": privacy_record(run_dir),
            "steps": model.step, "run_steps": run_steps, "rows": rows,
            "train_seconds": round(seconds, 1), "rows_sampled": rows,
            "privacy_config_kept": cfg.privacy is not None and cfg.privacy.enabled}


def _write(folder: Path, result: dict[str, Any], canaries: pd.DataFrame, included: np.ndarray,
           scores: np.ndarray) -> dict[str, Path]:
    """audit.json and canaries.csv (each canary, in or out, its score), written under temporary
    names and renamed; an older audit folder is moved aside first."""
    if folder.exists() and any(folder.iterdir()):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(folder.stat().st_mtime))
        moved, i = folder.with_name(f"{folder.name}-{stamp}"), 1
        while moved.exists():
            moved, i = folder.with_name(f"{folder.name}-{stamp}-{i}"), i + 1
        shutil.move(folder, moved)
        result["previous_audit"] = str(moved)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"audit": folder / AUDIT_FILE, "canaries": folder / "canaries.csv"}
    table = canaries.assign(included=included, score=scores)
    table.to_csv(folder / "canaries.csv.tmp", index=False)
    (folder / "audit.json.tmp").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for path in paths.values():
        path.with_name(path.name + ".tmp").replace(path)
    return paths


# --------------------------------------------------------------------------------------------
# What the CLI and the eval report show
