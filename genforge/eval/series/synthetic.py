"""How close synthetic series are to the real one: marginal distribution, autocorrelation and
season, a discriminative score and train-on-synthetic / test-on-real forecasting.

Everything is measured on the model's stationary view of the values (log if the model logs,
then differenced if it differences): a trending level has an autocorrelation near 1 at
every lag whatever made it, while the changes show the dynamics and the season.

    acf_distance   mean over lags 1..K and columns of |ACF_real - ACF_synthetic|; each ACF is
                   the mean over windows of the synthetic length (real) or over series
                   (synthetic); K = 2 seasons (at least 10). Reference: the same distance
                   for an i.i.d. resample of the real values (no dynamics, same marginal)
    marginal       Wasserstein-1 distance between the real and synthetic values, over the
                   real std; and the Kolmogorov-Smirnov statistic
    discriminative a random forest tells real windows from synthetic ones (window = 2
                   seasons, at least 12 steps); its cross-validated accuracy over blocked
                   folds (0.5: indistinguishable; Yoon et al. 2019 report |accuracy - 0.5|).
                   Reference: the same for i.i.d. resamples of the real values
    tstr           a ridge regression on lags 1..p (and the seasonal lag) predicts the next
                   step; trained on the synthetic series (TSTR) or on the real training rows
                   (TRTR), tested on the real held-out rows: MAE and TSTR / TRTR (Esteban
                   et al. 2017)

    from genforge.eval.series.synthetic import compare
    measures = compare(real_train, real_test, synthetic, period=12, transform="log",
                       difference=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genforge.modalities.series.data import transformed


def stationary(values: np.ndarray, transform: str, difference: bool) -> np.ndarray:
    """values (..., T, D) -> the model's view (..., T or T - 1, D)."""
    z = transformed(values, transform)
    return np.diff(z, axis=-2) if difference else z


def acf(series: np.ndarray, lags: int) -> np.ndarray:
    """series (n, L, D) -> mean autocorrelation over the n series, (lags, D)."""
    x = series - series.mean(1, keepdims=True)
    denom = (x**2).sum(1) + 1e-12  # (n, D)
    out = [np.ones_like(denom) if k == 0 else (x[:, k:] * x[:, :-k]).sum(1) / denom
           for k in range(lags + 1)]
    return np.stack(out, 1)[:, 1:].mean(0)  # (lags, D)


def windows(series: np.ndarray, length: int, stride: int = 1) -> np.ndarray:
    """(T, D) -> (n, length, D) windows."""
    starts = np.arange(0, len(series) - length + 1, stride)
    return series[starts[:, None] + np.arange(length)]


def acf_distance(real: np.ndarray, synthetic: np.ndarray, lags: int) -> float:
    """real (T, D), synthetic (n, L, D), both in the stationary view."""
    length = synthetic.shape[1]
    real_w = windows(real, min(length, len(real)), max(1, length // 8))
    return float(np.abs(acf(real_w, lags) - acf(synthetic, lags)).mean())


def discriminative_accuracy(real: np.ndarray, synthetic: np.ndarray, length: int, *,
                            seed: int = 0, folds: int = 5, trees: int = 100) -> float:
    """Cross-validated accuracy of a classifier telling real windows from synthetic ones.

    The real rows are cut into blocks of 2 * length; a window lies inside one block, and the
    blocks take turns across the folds, so test windows share no step with training windows
    and every fold sees every era (a split by time would let the classifier learn the era).
    Synthetic series are split across the folds; each fold has as many of each kind."""
    from sklearn.ensemble import RandomForestClassifier

    g = np.random.default_rng(seed)
    block = 2 * length
    starts = np.array([s for s in range(len(real) - length + 1) if s % block <= length])
    fold_of = (starts // block) % folds
    k = len(np.unique(fold_of))
    if k < 2:
        return float("nan")
    mean, std = real.mean(0), real.std(0) + 1e-12
    series_fold = g.permutation(len(synthetic)) % k
    accuracies = []
    for f in range(k):
        parts = {}
        for name, mask in (("train", fold_of != f), ("test", fold_of == f)):
            real_w = real[starts[mask][:, None] + np.arange(length)]  # (n, length, D)
            pool = synthetic[series_fold != f] if name == "train" else \
                synthetic[series_fold == f]
            synth_w = _sample_windows(pool, length, len(real_w), g)
            x = (np.concatenate([real_w, synth_w]) - mean) / std
            parts[name] = (x.reshape(len(x), -1), np.r_[np.ones(len(real_w)),
                                                         np.zeros(len(synth_w))])
        forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2,
                                        random_state=seed, n_jobs=1).fit(*parts["train"])
        accuracies.append((forest.predict(parts["test"][0]) == parts["test"][1]).mean())
    return float(np.mean(accuracies))


def _sample_windows(series: np.ndarray, length: int, count: int,
                    g: np.random.Generator) -> np.ndarray:
    """count windows (count, length, D) at random series and offsets."""
    which = g.integers(0, len(series), count)
    start = g.integers(0, series.shape[1] - length + 1, count)
    return np.stack([series[i, s : s + length] for i, s in zip(which, start, strict=True)])


def lag_features(series: np.ndarray, lags: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) -> features (T - max_lag, D * len(lags)), targets (T - max_lag, D)."""
    top = max(lags)
    x = np.concatenate([series[top - lag : len(series) - lag] for lag in lags], 1)
    return x, series[top:]


def tstr(real_train: np.ndarray, real_test: np.ndarray, synthetic: np.ndarray, period: int
         ) -> dict[str, float]:
    """One-step MAE on the real held-out rows for ridge models trained on synthetic or real
    data (all in the stationary view); real_test is preceded by real_train."""
    from sklearn.linear_model import Ridge

    lags = sorted({1, 2, 3} | ({period} if period > 1 else set()))
    joined = np.concatenate([real_train, real_test])
    x_test, y_test = lag_features(joined, lags)
    x_test, y_test = x_test[-len(real_test):], y_test[-len(real_test):]
    pairs = [lag_features(s, lags) for s in synthetic]
    x_syn, y_syn = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    x_real, y_real = lag_features(real_train, lags)
    # (the prediction of a one-column target may come back 1-d: match the target's shape)
    syn = Ridge(alpha=1.0).fit(x_syn, y_syn).predict(x_test).reshape(y_test.shape)
    real = Ridge(alpha=1.0).fit(x_real, y_real).predict(x_test).reshape(y_test.shape)
    mae_syn, mae_real = np.abs(syn - y_test).mean(), np.abs(real - y_test).mean()
    return {"mae_tstr": float(mae_syn), "mae_trtr": float(mae_real),
            "tstr_over_trtr": float(mae_syn / mae_real)}


def compare(real_train: np.ndarray, real_test: np.ndarray, synthetic: np.ndarray, *,
            period: int, transform: str = "none", difference: bool = False,
            seed: int = 0) -> dict[str, Any]:
    """Real training rows (T, D), real held-out rows (H, D), synthetic series (n, L, D), all
    in the data's units -> the measures above, with their i.i.d. references."""
    from scipy.stats import ks_2samp, wasserstein_distance

    view = stationary(np.concatenate([real_train, real_test]), transform, difference)
    train_v, test_v = view[: len(view) - len(real_test)], view[len(view) - len(real_test):]
    synth_v = stationary(synthetic, transform, difference)  # (n, L', D)
    g = np.random.default_rng(seed)
    iid = train_v[g.integers(0, len(train_v), synth_v.shape[:2])]  # (n, L', D)
    lags = max(10, 2 * period) if period > 1 else 10
    lags = min(lags, synth_v.shape[1] - 2)
    length = min(max(12, 2 * period), synth_v.shape[1], len(train_v) // 3)
    std = train_v.std(0) + 1e-12
    flat_r, flat_s = train_v.reshape(-1, train_v.shape[-1]), synth_v.reshape(-1, train_v.shape[-1])
    return {
        "series": int(synthetic.shape[0]), "length": int(synthetic.shape[1]), "acf_lags": lags,
        "acf_distance": acf_distance(train_v, synth_v, lags),
        "acf_distance_iid": acf_distance(train_v, iid, lags),
        "wasserstein_over_std": float(np.mean([wasserstein_distance(flat_r[:, j], flat_s[:, j])
                                               / std[j] for j in range(flat_r.shape[1])])),
        "ks": float(np.mean([ks_2samp(flat_r[:, j], flat_s[:, j]).statistic
                             for j in range(flat_r.shape[1])])),
        "discriminative_window": length,
        "discriminative_accuracy": discriminative_accuracy(train_v, synth_v, length, seed=seed),
        "discriminative_accuracy_iid": discriminative_accuracy(train_v, iid, length, seed=seed),
        **tstr(train_v, test_v, synth_v, period),
    }
