"""Synthetic tables against real ones: fidelity, utility, privacy and fairness.

    evaluate_tables(real_train, real_test, synthetic, schema, target="income",
                    positive=">50K", protected="sex") -> dict
    report_section(result) -> an HTML fragment (plain tables)

fidelity  column shapes: 1 - KS statistic (numeric, datetime), 1 - TVD (categorical, missing
          as a category); column pairs, every pair: 1 - |corr_real - corr_syn| / 2 (Pearson,
          numeric pairs), 1 - TVD of the contingency table (categorical pairs, and mixed pairs
          with the number cut into 10 equal-width bins over the real range); quality = the
          mean of the two; detection: ROC AUC of a gradient-boosted classifier telling real
          from synthetic rows (3-fold, balanced; 0.5 = indistinguishable)
utility   TSTR: four classifiers (random_state=0) trained on synthetic rows, binary F1 of the
          positive class on the real test rows; the same trained on the real rows (TRTR)
privacy   exact copies of training rows; distance to the closest training record (DCR,
          numbers scaled to [0, 1] by the real range, a category mismatch counts 1) for
          synthetic rows and, as the yardstick, for real held-out rows; a membership attack
          that calls a real row a member when a synthetic row lies close to it (advantage =
          max TPR - FPR over thresholds, 0 = no better than chance); `copies_training` flags
          a median DCR of the synthetic rows below the held-out rows' (it copies)
fairness  for the protected column: demographic-parity gap (spread of P(yhat = 1) over its
          groups) and equal-opportunity gap (spread of the true-positive rates), per
          classifier, TSTR next to TRTR
"""

from __future__ import annotations

import html
import warnings
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = ("float", "int", "datetime")
BINS = 10
MAX_ROWS = 20000  # rows per side for detection and distances


def _kinds(schema: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: ("numeric" if c["kind"] in NUMERIC else "categorical")
            for c in schema["columns"] if c["kind"] != "id"}


def _numbers(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s.astype("int64").to_numpy(np.float64)
        return np.where(s.isna().to_numpy(), np.nan, out)
    return pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def _labels(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), "<missing>").astype(str)


# --------------------------------------------------------------------------------------------
# Fidelity


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    return 1.0 - float(ks_2samp(a, b).statistic) if len(a) and len(b) else 0.0


def _tvd(a: pd.Series, b: pd.Series) -> float:
    p, q = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return 0.5 * float(p.subtract(q, fill_value=0).abs().sum())


def _binned(real: pd.Series, syn: pd.Series) -> tuple[pd.Series, pd.Series]:
    r, s = _numbers(real), _numbers(syn)
    lo, hi = np.nanmin(r), np.nanmax(r)
    edges = np.linspace(lo, hi, BINS + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])

    def cut(v: np.ndarray) -> pd.Series:
        idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
        return pd.Series(np.where(np.isnan(v), "<missing>", idx.astype(str)))

    return cut(r), cut(s)


def column_shapes(real: pd.DataFrame, syn: pd.DataFrame, kinds: dict[str, str]
                  ) -> dict[str, float]:
    return {c: _ks(_numbers(real[c]), _numbers(syn[c])) if k == "numeric"
            else 1.0 - _tvd(_labels(real[c]), _labels(syn[c])) for c, k in kinds.items()}


def column_pairs(real: pd.DataFrame, syn: pd.DataFrame, kinds: dict[str, str]
                 ) -> dict[str, float]:
    cols = list(kinds)
    disc_r, disc_s = {}, {}
    for c in cols:
        if kinds[c] == "numeric":
            disc_r[c], disc_s[c] = _binned(real[c], syn[c])
        else:
            disc_r[c], disc_s[c] = _labels(real[c]).reset_index(drop=True), \
                _labels(syn[c]).reset_index(drop=True)
    num_r = pd.DataFrame({c: _numbers(real[c]) for c in cols if kinds[c] == "numeric"})
    num_s = pd.DataFrame({c: _numbers(syn[c]) for c in cols if kinds[c] == "numeric"})
    corr_r, corr_s = num_r.corr(), num_s.corr()
    out = {}
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            if kinds[a] == kinds[b] == "numeric":
                ra, sa = corr_r.loc[a, b], corr_s.loc[a, b]
                ra, sa = (0.0 if np.isnan(v) else v for v in (ra, sa))
                out[f"{a} | {b}"] = 1.0 - abs(ra - sa) / 2
            else:
                jr = disc_r[a] + "\x1f" + disc_r[b]
                js = disc_s[a] + "\x1f" + disc_s[b]
                out[f"{a} | {b}"] = 1.0 - _tvd(jr, js)
    return out


def _design(frames: list[pd.DataFrame], kinds: dict[str, str], fit_on: int = 0) -> list[Any]:
    """One-hot categories (missing its own category), standardised numbers (missing -> the
    mean); fitted on frames[fit_on], applied to all."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = [c for c, k in kinds.items() if k == "numeric"]
    cat = [c for c, k in kinds.items() if k == "categorical"]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
        ("cat", OneHotEncoder(handle_unknown="ignore"), cat)], sparse_threshold=0)

    def view(f: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({**{c: _numbers(f[c]) for c in num},
                             **{c: _labels(f[c]).to_numpy() for c in cat}})

    prep.fit(view(frames[fit_on]))
    return [prep.transform(view(f)) for f in frames]


def detection_auc(real: pd.DataFrame, syn: pd.DataFrame, kinds: dict[str, str],
                  seed: int = 0) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    n = min(len(real), len(syn), MAX_ROWS)
    r = real.sample(n, random_state=seed) if len(real) > n else real
    s = syn.sample(n, random_state=seed) if len(syn) > n else syn
    X = _design([pd.concat([r, s], ignore_index=True)], kinds)[0]
    y = np.r_[np.zeros(len(r)), np.ones(len(s))]
    clf = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    p = cross_val_predict(clf, X, y, cv=3, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


# --------------------------------------------------------------------------------------------
# Utility and fairness


def classifiers() -> dict[str, Any]:
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    return {"decision_tree": DecisionTreeClassifier(max_depth=20, random_state=0),
            "adaboost": AdaBoostClassifier(random_state=0),
            "logistic_regression": LogisticRegression(solver="lbfgs", max_iter=1000,
                                                      random_state=0),
            "mlp": MLPClassifier((50,), max_iter=50, random_state=0)}


def utility(train: pd.DataFrame, test: pd.DataFrame, kinds: dict[str, str], target: str,
            positive: Any, protected: str | None = None) -> dict[str, Any]:
    """F1 of the positive class on `test` per classifier trained on `train` (+ fairness)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import f1_score

    features = {c: k for c, k in kinds.items() if c != target}
    X_train, X_test = _design([train, test], features)
    y_train = (_labels(train[target]) == str(positive)).to_numpy()
    y_test = (_labels(test[target]) == str(positive)).to_numpy()
    out: dict[str, Any] = {"f1": {}, "fairness": {}}
    for name, clf in classifiers().items():
        if len(np.unique(y_train)) < 2:  # a synthetic table with one class only
            pred = np.full(len(y_test), bool(y_train[0]) if len(y_train) else False)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                pred = clf.fit(X_train, y_train).predict(X_test).astype(bool)
        out["f1"][name] = float(f1_score(y_test, pred, zero_division=0))
        if protected:
            out["fairness"][name] = fairness_gaps(pred, y_test, test[protected])
    out["mean_f1"] = float(np.mean(list(out["f1"].values())))
    if protected:
        out["mean_parity_gap"] = float(np.mean([v["parity_gap"]
                                                for v in out["fairness"].values()]))
        out["mean_opportunity_gap"] = float(np.mean([v["opportunity_gap"]
                                                     for v in out["fairness"].values()]))
    return out


def fairness_gaps(pred: np.ndarray, truth: np.ndarray, group: pd.Series) -> dict[str, Any]:
    g = _labels(group).to_numpy()
    rates, tprs = {}, {}
    for value in np.unique(g):
        m = g == value
        rates[value] = float(pred[m].mean())
        if (truth & m).sum() >= 5:
            tprs[value] = float(pred[truth & m].mean())
    return {"positive_rate": rates, "true_positive_rate": tprs,
            "parity_gap": max(rates.values()) - min(rates.values()),
            "opportunity_gap": max(tprs.values()) - min(tprs.values()) if tprs else 0.0}


# --------------------------------------------------------------------------------------------
# Privacy


def _row_keys(frame: pd.DataFrame, cols: list[str]) -> pd.Series:
    return pd.util.hash_pandas_object(frame[cols].astype(str), index=False)


def _nearest(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1).fit(reference)
    return nn.kneighbors(queries)[0][:, 0]


def privacy(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame,
            kinds: dict[str, str], seed: int = 0, n: int = 2000) -> dict[str, Any]:
    cols = list(kinds)
    copies = float(_row_keys(syn, cols).isin(set(_row_keys(train, cols))).mean())
    num = [c for c in cols if kinds[c] == "numeric"]
    lo = {c: np.nanmin(_numbers(train[c])) for c in num}
    span = {c: (np.nanmax(_numbers(train[c])) - lo[c]) or 1.0 for c in num}

    def space(f: pd.DataFrame) -> pd.DataFrame:
        out = {c: np.nan_to_num((_numbers(f[c]) - lo[c]) / span[c], nan=-1.0) for c in num}
        return pd.DataFrame({**out, **{c: _labels(f[c]).to_numpy() for c in cols
                                       if kinds[c] == "categorical"}})

    rng = np.random.default_rng(seed)

    def pick(f: pd.DataFrame, k: int) -> pd.DataFrame:
        return f.iloc[rng.choice(len(f), min(k, len(f)), replace=False)]

    ref = pick(train, MAX_ROWS)
    members, others = pick(train, n), pick(holdout, n)
    m = min(len(members), len(others))
    members, others = members.iloc[:m], others.iloc[:m]
    s = pick(syn, max(n, MAX_ROWS))
    frames = [space(f) for f in (ref, pick(syn, n), others, members, s)]
    cat = [c for c in cols if kinds[c] == "categorical"]
    from sklearn.preprocessing import OneHotEncoder

    enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(
        pd.concat([frames[0][cat], frames[4][cat]])) if cat else None

    def vec(f: pd.DataFrame) -> np.ndarray:
        parts = [f[num].to_numpy(np.float64)] if num else []
        if enc is not None:
            parts.append(enc.transform(f[cat]) / np.sqrt(2))  # a mismatch: distance 1
        return np.hstack(parts)

    ref_v, syn_v, hold_v, mem_v, all_syn = (vec(f) for f in frames)
    dcr_syn, dcr_hold = _nearest(syn_v, ref_v), _nearest(hold_v, ref_v)
    # membership attack: a row is called a member when some synthetic row lies close to it
    score = -np.r_[_nearest(mem_v, all_syn), _nearest(hold_v, all_syn)]
    truth = np.r_[np.ones(m), np.zeros(m)]
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(truth, score)
    syn_median, hold_median = float(np.median(dcr_syn)), float(np.median(dcr_hold))
    return {"exact_copy_rate": copies,
            "dcr_synthetic": {"median": syn_median, "p5": float(np.percentile(dcr_syn, 5))},
            "dcr_holdout": {"median": hold_median, "p5": float(np.percentile(dcr_hold, 5))},
            # closer to the training rows than unseen real rows are: it copies, not generalises
            "copies_training": syn_median < hold_median,
            "attack_advantage": float(np.max(tpr - fpr)), "attack_rows": int(2 * m)}


def copying_note(p: dict[str, Any]) -> str | None:
    """The one sentence that flags a synthesizer copying its training rows, or None."""
    if not p.get("copies_training"):
        return None
    return (f"Copies its training rows: the synthetic rows' median distance to the closest "
            f"training row ({p['dcr_synthetic']['median']:.4f}) is below that of real rows "
            f"it never saw ({p['dcr_holdout']['median']:.4f}).")


# --------------------------------------------------------------------------------------------
# All of it


def evaluate_tables(real_train: pd.DataFrame, real_test: pd.DataFrame | None,
                    synthetic: pd.DataFrame, schema: dict[str, Any], *,
                    target: str | None = None, positive: Any = None,
                    protected: str | None = None, seed: int = 0,
                    utility_real: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every table metric; `utility_real` reuses an earlier train-on-real result."""
    kinds = _kinds(schema)
    target = target or schema.get("target")
    shapes = column_shapes(real_train, synthetic, kinds)
    pairs = column_pairs(real_train, synthetic, kinds)
    shape_mean, pair_mean = float(np.mean(list(shapes.values()))), \
        float(np.mean(list(pairs.values()))) if pairs else 1.0
    out: dict[str, Any] = {
        "rows": {"train": len(real_train), "test": 0 if real_test is None else len(real_test),
                 "synthetic": len(synthetic)},
        "fidelity": {"column_shapes": shape_mean, "column_pairs": pair_mean,
                     "quality": (shape_mean + pair_mean) / 2,
                     "detection_auc": detection_auc(real_train, synthetic, kinds, seed),
                     "per_column": shapes},
    }
    if target and real_test is not None and kinds.get(target) == "categorical":
        if positive is None:
            positive = real_train[target].value_counts().index[-1]
        out["utility"] = {"target": target, "positive": str(positive),
                          "tstr": utility(synthetic, real_test, kinds, target, positive,
                                          protected),
                          "trtr": utility_real or utility(real_train, real_test, kinds, target,
                                                          positive, protected)}
    if real_test is not None:
        out["privacy"] = privacy(real_train, real_test, synthetic, kinds, seed)
    if protected:
        out["fairness"] = {"protected": protected}
    return out


def report_section(result: dict[str, Any]) -> str:
    """The table part of an eval report: plain HTML tables, no scripts."""
    def row(cells: list[Any], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(_fmt(c))}</{tag}>" for c in cells) + \
            "</tr>"

    f = result["fidelity"]
    parts = ["<section class='tables'><h2>Table fidelity</h2><table>",
             row(["column shapes", "column pairs", "quality", "detection AUC"], "th"),
             row([f["column_shapes"], f["column_pairs"], f["quality"], f["detection_auc"]]),
             "</table><h3>Per column</h3><table>", row(["column", "shape score"], "th"),
             *(row([c, v]) for c, v in f["per_column"].items()), "</table>"]
    if "utility" in result:
        u = result["utility"]
        parts += [f"<h2>Utility: F1 of {html.escape(u['target'])} = "
                  f"{html.escape(u['positive'])} on the real test rows</h2><table>",
                  row(["classifier", "train synthetic (TSTR)", "train real (TRTR)"], "th"),
                  *(row([c, u["tstr"]["f1"][c], u["trtr"]["f1"][c]]) for c in u["tstr"]["f1"]),
                  row(["mean", u["tstr"]["mean_f1"], u["trtr"]["mean_f1"]]), "</table>"]
        if u["tstr"]["fairness"]:
            parts += [f"<h2>Fairness ({html.escape(result['fairness']['protected'])})</h2>"
                      "<table>", row(["classifier", "parity gap TSTR", "parity gap TRTR",
                                      "opportunity gap TSTR", "opportunity gap TRTR"], "th")]
            for c, v in u["tstr"]["fairness"].items():
                r = u["trtr"]["fairness"][c]
                parts.append(row([c, v["parity_gap"], r["parity_gap"], v["opportunity_gap"],
                                  r["opportunity_gap"]]))
            parts.append("</table>")
    if "privacy" in result:
        p = result["privacy"]
        parts += ["<h2>Privacy</h2><table>", row(["measure", "synthetic", "real holdout"], "th"),
                  row(["exact copies of training rows", p["exact_copy_rate"], ""]),
                  row(["DCR median", p["dcr_synthetic"]["median"], p["dcr_holdout"]["median"]]),
                  row(["DCR 5th percentile", p["dcr_synthetic"]["p5"], p["dcr_holdout"]["p5"]]),
                  row(["membership attack advantage", p["attack_advantage"], ""]), "</table>"]
        note = copying_note(p)
        if note:
            parts.append(f"<p class='flag'><b>{html.escape(note)}</b></p>")
    parts.append("</section>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def evaluate_tables_run(model: Any, options: Any, out: str, n_given: bool = True
                        ) -> tuple[list[str], dict[str, Any]]:
    """The tables modality's evaluator (genforge.eval.runs): sample the run (options.n rows,
    or as many as its training rows), score against its own data's train and test rows,
    write metrics.json and report.html into `out`; (summary lines, written paths). The
    protected column for the fairness gaps is options.protected, else the run's
    data.protected."""
    import json
    import time
    from pathlib import Path

    from genforge.eval.images.report import PAGE, losses_section, prepare_out_dir
    from genforge.eval.tables.audit_report import audit_html
    from genforge.modalities.tables.data import load_tables
    from genforge.version import __version__

    data = load_tables(model.config.data, getattr(options, "data_root", None))
    info = model.data_info
    n = options.n if n_given else info["rows"]
    synthetic = pd.concat(list(model.sample_chunks(n, seed=options.seed)), ignore_index=True)
    protected = getattr(options, "protected", None) or getattr(model.config.data,
                                                               "protected", None)
    result = evaluate_tables(data.train_frame, data.test_frame, synthetic, info["schema"],
                             target=info.get("target"), positive=info.get("positive"),
                             protected=protected, seed=options.seed)
    result["run"] = {"path": str(model.path), "step": model.step,
                     "synthesizer": model.config.model.kind, "rows_sampled": n,
                     "seed": options.seed, "genforge": __version__,
                     "precision": getattr(options, "precision", "auto"),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    folder = Path(out)
    moved = prepare_out_dir(folder)
    if moved is not None:
        result["previous_eval"] = str(moved)
    paths = {"metrics": folder / "metrics.json", "report": folder / "report.html"}
    paths["metrics"].write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    title = f"genforge eval: {model.path}"
    run = result["run"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{run['created']} · genforge {run['genforge']} · {run['synthesizer']} at step "
             f"{run['step']} · {n} rows sampled with seed {options.seed}</p>",
             "<h2>Sample rows</h2><div style='overflow-x:auto; font-size:0.85em'>",
             synthetic.head(8).to_html(index=False, na_rep="(missing)", border=0), "</div>",
             report_section(result), _privacy_note(model), audit_html(model.path)]
    parts.append(losses_section(Path(model.path)))
    paths["report"].write_text(PAGE.format(title=html.escape(title), body="\n".join(parts)),
                               encoding="utf-8")
    f = result["fidelity"]
    lines = [f"quality {f['quality']:.4f} (shapes {f['column_shapes']:.4f}, pairs "
             f"{f['column_pairs']:.4f}), detection AUC {f['detection_auc']:.3f}"]
    if "utility" in result:
        u = result["utility"]
        lines.append(f"TSTR mean F1 {u['tstr']['mean_f1']:.4f} (train on real "
                     f"{u['trtr']['mean_f1']:.4f})")
        if u["tstr"].get("fairness"):
            lines.append(f"fairness ({protected}): parity gap {u['tstr']['mean_parity_gap']:.3f} "
                         f"(real {u['trtr']['mean_parity_gap']:.3f}), opportunity gap "
                         f"{u['tstr']['mean_opportunity_gap']:.3f} (real "
                         f"{u['trtr']['mean_opportunity_gap']:.3f})")
    if "privacy" in result:
        p = result["privacy"]
        lines.append(f"DCR median {p['dcr_synthetic']['median']:.4f} (holdout "
                     f"{p['dcr_holdout']['median']:.4f}), attack advantage "
                     f"{p['attack_advantage']:.3f}, exact copies {p['exact_copy_rate']:.4f}")
        note = copying_note(p)
        if note:
            lines.append(note)
    return lines, paths


def _privacy_note(model: Any) -> str:
    """What the privacy section does not say by itself: a run without DP-SGD carries no
    guarantee (the measures above are empirical), and a DP run's guarantee covers the
    gradient steps, and the preprocessing only where it came from a public schema or DP
    releases (genforge.modalities.tables.privacy; genforge.eval.privacy adds the DP record
    itself)."""
    dp = getattr(model.config, "privacy", None)
    if dp is None or not dp.enabled:
        return ("<p><b>No differential-privacy guarantee</b>: this run was trained without "
                "privacy.epsilon; the distances and the attack above are empirical checks "
                "only.</p>")
    leaks = model.data_info.get("leaks", "")
    if "DP releases" in leaks or "public one" in leaks:  # a private run's preprocessing
        return f"<p class=note>Preprocessing: {html.escape(leaks)}.</p>"
    return ("<p class=note>Not covered by the DP guarantee: the schema (category lists, "
            "numeric bounds, missing rates) and the per-column normalisers (quantiles, "
            "mixture models) are fitted on the training rows without a DP mechanism; a rare "
            "category or an extreme value can show through them.</p>")
