"""Image metrics on feature vectors: FID, KID, precision/recall, density/coverage, Inception
Score, class histograms and a nearest-neighbour memorisation check.

Every function takes features as float arrays (N, D) and returns plain floats or dicts of them,
so that each can be checked against a reference on synthetic data. Distances are Euclidean in
feature space; pairwise distances are computed in chunks so that 10k x 60k never sits in memory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import rel_entr

CHUNK = 1024  # rows of a pairwise-distance block: (1024, N) float32 stays < 250 MB for N = 60k


# --------------------------------------------------------------------------------------------
# Fréchet distance (FID when the features are Inception's)


def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) in float64, as pytorch-fid and TF-FID do."""
    x = np.asarray(features, dtype=np.float64)  # (N, D)
    if len(x) < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {len(x)}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½) between N(mu1, S1) and N(mu2, S2).

    Tr (S1 S2)^½ is computed as the sum of sqrt(eigenvalues) of the symmetric PSD matrix
    S1^½ S2 S1^½, which has the same eigenvalues as S1 S2; this avoids the complex sqrtm and
    the "imaginary component" fix-ups that the usual scipy.linalg.sqrtm route needs.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w1, v1 = np.linalg.eigh(sigma1)  # S1 = V diag(w) Vᵀ
    root1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T  # S1^½ (D, D)
    middle = root1 @ sigma2 @ root1  # (D, D), symmetric PSD
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)  # symmetrise away rounding
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


# --------------------------------------------------------------------------------------------
# KID: unbiased MMD² with a cubic polynomial kernel, averaged over random subsets


KID_BLOCK = 1 << 22  # kernel entries per batched block: (g, m, m) float64 stays near 32 MB


def _kernel_sums(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and trace of k(a, b) = (aᵀb / d + 1)³ per subset: a, b (g, m, D) -> (g,), (g,).
    The Gram matrices are float32 batched matmuls (the cost); cube and sums are float64."""
    k = torch.bmm(a, b.transpose(1, 2)).double().div_(a.shape[2]).add_(1).pow_(3)  # (g, m, m)
    return k.sum(dim=(1, 2)), k.diagonal(dim1=1, dim2=2).sum(dim=1)


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² of each pair of subsets x, y (g, m, D) -> (g,) (Binkowski et al. 2018,
    eq. 4): the within-set averages leave out i = j; the cross average uses all m² pairs."""
    m = x.shape[1]
    (xx, xx_diag), (yy, yy_diag) = _kernel_sums(x, x), _kernel_sums(y, y)
    xy, _ = _kernel_sums(x, y)
    return (xx - xx_diag + yy - yy_diag) / (m * (m - 1)) - 2 * xy / (m * m)


def kid(real: np.ndarray, fake: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> dict[str, Any]:
    """KID as in Binkowski et al. 2018: the mean over `subsets` random subsets (each drawn
    without replacement, independently of the others) of the unbiased MMD², with the standard
    deviation over subsets and its standard error std/sqrt(subsets). Subsets overlap when
    subsets x subset_size > N, so the standard error understates the spread between
    independent draws of the image sets; it is the usual one to report. A subset holds at most
    half of each set: with whole sets every subset would be the same and the spread zero."""
    m = min(subset_size, len(real) // 2, len(fake) // 2)
    if m < 2:
        raise ValueError("KID needs at least 4 real and 4 fake feature vectors")
    rng = np.random.default_rng(seed)
    picks = [(rng.choice(len(real), m, replace=False), rng.choice(len(fake), m, replace=False))
             for _ in range(subsets)]  # drawn first, so the values do not depend on batching
    x_all = torch.from_numpy(np.asarray(real, np.float32))  # (N_r, D)
    y_all = torch.from_numpy(np.asarray(fake, np.float32))  # (N_f, D)
    group = max(1, KID_BLOCK // (m * m))  # subsets per batched block: few large ops, not many
    values = []
    for i in range(0, subsets, group):
        chunk = picks[i : i + group]
        x = x_all[torch.from_numpy(np.stack([p[0] for p in chunk]))]  # (g, m, D)
        y = y_all[torch.from_numpy(np.stack([p[1] for p in chunk]))]  # (g, m, D)
        values.append(_mmd2_unbiased(x, y))
    v = torch.cat(values).numpy()  # (subsets,)
    std = float(v.std(ddof=1)) if subsets > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "se": std / math.sqrt(subsets),
            "subsets": subsets, "subset_size": m, "kernel": "(x.y / d + 1)^3"}


# --------------------------------------------------------------------------------------------
# Nearest neighbours, and the manifold metrics built on them


def _rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, np.float32))


def knn_radii(x: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """For each k: distance of each row of x (N, D) to its k-th nearest *other* row, (N,)."""
    x_t, kmax = _rows(x), max(ks)
    if len(x_t) <= kmax:
        raise ValueError(f"k={kmax} nearest neighbours need more than {kmax} feature vectors")
    out = []
    for i in range(0, len(x_t), CHUNK):
        d = torch.cdist(x_t[i : i + CHUNK], x_t)  # (c, N)
        rows = torch.arange(len(d))
        d[rows, rows + i] = math.inf  # a point is not its own neighbour
        out.append(d.topk(kmax, dim=1, largest=False).values)  # (c, kmax), ascending
    sorted_d = torch.cat(out)  # (N, kmax)
    return {k: sorted_d[:, k - 1].numpy() for k in ks}


def nearest(query: np.ndarray, ref: np.ndarray,
            exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the distance (Q,) and index (Q,) of its nearest row of `ref`;
    `exclude[i]` is a ref index that query i may not match (itself, when query is in ref)."""
    q, r = _rows(query), _rows(ref)
    dists, index = [], []
    for i in range(0, len(q), CHUNK):
        d = torch.cdist(q[i : i + CHUNK], r)  # (c, R)
        if exclude is not None:
            d[torch.arange(len(d)), torch.as_tensor(exclude[i : i + CHUNK])] = math.inf
        best = d.min(dim=1)
        dists.append(best.values)
        index.append(best.indices)
    return torch.cat(dists).numpy(), torch.cat(index).numpy()


def precision_recall_density_coverage(
    real: np.ndarray, fake: np.ndarray, *, k_pr: int = 3, k_dc: int = 5,
    real_radii: dict[int, np.ndarray] | None = None,
) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019, k=3) and density/coverage
    (Naeem et al. 2020, k=5). A ball around a point has the radius of its k-th nearest
    neighbour in its own set; "inside" is strict (<), as in the authors' prdc code.

    precision = share of fakes inside some real k_pr-ball
    recall    = share of reals inside some fake k_pr-ball
    density   = (1 / (k_dc M)) sum over fakes of the number of real k_dc-balls containing it
    coverage  = share of reals whose k_dc-ball contains at least one fake
    `real_radii` ({k: (N,)}) may come from the reference-statistics cache.
    """
    radii = real_radii if real_radii and {k_pr, k_dc} <= set(real_radii) \
        else knn_radii(real, (k_pr, k_dc))
    r_pr, r_dc = _rows(radii[k_pr]), _rows(radii[k_dc])  # (N,), (N,)
    f_pr = _rows(knn_radii(fake, (k_pr,))[k_pr])  # (M,)
    x, y = _rows(real), _rows(fake)
    in_real, density_sum = [], 0.0
    in_fake = torch.zeros(len(x), dtype=torch.bool)  # (N,) real point inside some fake ball
    nearest_fake = torch.full((len(x),), math.inf)  # (N,) distance of each real to its nearest fake
    for i in range(0, len(y), CHUNK):  # one pass over fake rows; real columns reduce as we go
        d = torch.cdist(y[i : i + CHUNK], x)  # (c, N)
        in_real.append((d < r_pr[None]).any(dim=1))  # (c,)
        density_sum += float((d < r_dc[None]).sum())
        in_fake |= (d < f_pr[i : i + CHUNK, None]).any(dim=0)  # (N,)
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)  # (N,)
    return {
        "precision": float(torch.cat(in_real).float().mean()),
        "recall": float(in_fake.float().mean()),
        "density": density_sum / (k_dc * len(y)),
        "coverage": float((nearest_fake < r_dc).float().mean()),
    }


# --------------------------------------------------------------------------------------------
# Classifier-based metrics (the domain classifier's class probabilities)


def inception_score(probs: np.ndarray, splits: int = 10) -> dict[str, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split (Salimans et al. 2016); mean and std."""
    p = np.asarray(probs, np.float64)  # (N, K)
    scores = []
    for part in np.array_split(p, min(splits, len(p))):
        marginal = part.mean(axis=0, keepdims=True)  # (1, K)
        scores.append(math.exp(rel_entr(part, marginal).sum(axis=1).mean()))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "splits": len(scores)}


def class_histogram(probs: np.ndarray, num_classes: int,
                    reference: np.ndarray | None = None) -> dict[str, Any]:
    """Share of samples per predicted class (argmax) and its distance to uniform: total
    variation ½ Σ|p - 1/K| and KL(p || uniform) = log K - H(p); mode collapse raises both.
    With `reference` (another (N, K) probability array, the real images) also TV to its
    histogram, since real data sets are not exactly uniform."""
    share = np.bincount(np.argmax(probs, axis=1), minlength=num_classes) / len(probs)  # (K,)
    uniform = np.full(num_classes, 1.0 / num_classes)
    out: dict[str, Any] = {
        "share": share.tolist(),
        "tv_uniform": float(0.5 * np.abs(share - uniform).sum()),
        "kl_uniform": float(rel_entr(share, uniform).sum()),
    }
    if reference is not None:
        ref = np.bincount(np.argmax(reference, axis=1), minlength=num_classes) / len(reference)
        out["real_share"] = ref.tolist()
        out["tv_real"] = float(0.5 * np.abs(share - ref).sum())
    return out


def conditional_accuracy(probs: np.ndarray, labels: np.ndarray,
                         num_classes: int) -> dict[str, Any]:
    """How often a sample generated for label k is classified as k: overall and per class."""
    hit = np.argmax(probs, axis=1) == labels  # (N,)
    per_class = [float(hit[labels == k].mean()) if (labels == k).any() else None
                 for k in range(num_classes)]
    return {"accuracy": float(hit.mean()), "per_class": per_class}


# --------------------------------------------------------------------------------------------
# Memorisation: are samples closer to training images than training images are to each other?

MEMORISATION_DEFINITION = (
    "tau = the {q}-quantile of d_TT, where d_TT(t) is the distance from a training image t to "
    "its nearest other training image, for {queries} training images drawn with the seed "
    "(all when fewer); d(s) = distance from a sample s to its nearest training image; "
    "rate = share of samples with d(s) < tau. The same rate for held-out real images is the "
    "baseline (about {q} by construction). Flagged when rate > 2 x p0 and "
    "rate > p0 + 3 sqrt(p0 (1 - p0) / n), p0 = max(real rate, {q}). Domain-classifier "
    "features, Euclidean distance."
)


def memorisation(train: np.ndarray, fake: np.ndarray, real: np.ndarray | None, *,
                 quantile: float = 0.01, queries: int = 5000, seed: int = 0,
                 show: int = 8) -> dict[str, Any]:
    """The nearest-neighbour memorisation check of MEMORISATION_DEFINITION; also the `show`
    samples closest to the training set with their neighbours' indices, for the report."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(train), min(queries, len(train)), replace=False))
    d_tt, _ = nearest(train[picked], train, exclude=picked)  # (Q,)
    tau = float(np.quantile(d_tt, quantile))
    d_fake, nn_fake = nearest(fake, train)  # (M,), (M,)
    rate = float((d_fake < tau).mean())
    real_rate = None if real is None else float((nearest(real, train)[0] < tau).mean())
    p0 = max(real_rate or 0.0, quantile)
    flagged = rate > 2 * p0 and rate > p0 + 3 * math.sqrt(p0 * (1 - p0) / len(fake))
    closest = np.argsort(d_fake, kind="stable")[:show]
    return {
        "rate": rate, "real_rate": real_rate, "threshold": tau, "flagged": bool(flagged),
        "quantile": quantile, "train_n": len(train), "train_queries": len(picked),
        "definition": MEMORISATION_DEFINITION.format(q=quantile, queries=queries),
        "closest": [{"sample": int(i), "train": int(nn_fake[i]), "distance": float(d_fake[i])}
                    for i in closest],
    }
