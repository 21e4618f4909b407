"""MST and AIM: which marginals to measure, with how much noise; estimation by private-pgm.

Both measure noisy marginals of a discretised table and fit a graphical model to them with
mirror descent (mbi, McKenna, Sheldon and Miklau, "Graphical-model based estimation and
inference for differential privacy", ICML 2019). The selection and measurement steps are
written here from the papers; the wheel holds only the estimation.

    MST  McKenna, Miklau and Sheldon, "Winning the NIST Contest: A scalable and general
         approach to differentially private synthetic data", JPC 2021 (Algorithm 1):
         rho/3 measures every one-way marginal; rho/3 picks d-1 pairs as a maximum spanning
         tree, each edge by the exponential mechanism on the pair's L1 error under the
         one-way model; rho/3 measures the chosen pairs.
    AIM  McKenna, Mullins, Sheldon and Miklau, "AIM: An Adaptive and Iterative Mechanism for
         Differentially Private Synthetic Data", VLDB 2022 (Algorithm 2): one-way marginals
         first, then rounds that pick the workload-closure marginal of largest weighted
         error (exponential mechanism, score w_r (||M_r(D) - M_r(p)||_1 - sqrt(2/pi) sigma n_r)),
         measure it, re-estimate, and halve sigma when a measurement no longer moves the
         model; the model's junction tree may grow only to a size cap that loosens as the
         budget is spent.

Accounting is zero-concentrated DP (Bun and Steinke, TCC 2016), as in both papers: a marginal
has L2 sensitivity 1 under adding or removing one row, so Gaussian noise of scale sigma costs
rho = 1 / (2 sigma^2); the exponential mechanism with quality sensitivity Delta at epsilon_em
costs epsilon_em^2 / 8 (Cesar and Rogers 2021); zCDP costs add up exactly, which is why the
papers (and this module) account there and convert the total once to (epsilon, delta) by
Canonne, Kamath and Steinke (NeurIPS 2020, Proposition 12 / the conversion in private-pgm).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def mbi() -> Any:
    """The mbi package, imported with jax's persistent compilation cache off (mbi compiles many
    small programs per fit, which the cache only slows down; its import warns otherwise)."""
    import warnings

    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float32: fine below ~100k rows
        import mbi as package
    return package


# --------------------------------------------------------------------------------------------
# zCDP <-> (epsilon, delta)


def cdp_delta(rho: float, eps: float) -> float:
    """The delta of rho-zCDP at eps: min over alpha > 1 of
    exp((alpha - 1)(alpha rho - eps) + alpha log(1 - 1/alpha)) / (alpha - 1)  (CKS20)."""
    if rho <= 0:
        return 0.0
    lo, hi = 1.01, (eps + 1) / (2 * rho) + 2
    for _ in range(200):  # the objective's derivative in alpha is increasing: bisect its root
        alpha = (lo + hi) / 2
        slope = (2 * alpha - 1) * rho - eps + math.log1p(-1.0 / alpha)
        lo, hi = (alpha, hi) if slope < 0 else (lo, alpha)
    alpha = (lo + hi) / 2
    delta = math.exp((alpha - 1) * (alpha * rho - eps) + alpha * math.log1p(-1 / alpha)) / (
        alpha - 1.0)
    return min(delta, 1.0)


def cdp_rho(eps: float, delta: float) -> float:
    """The largest rho whose rho-zCDP is (eps, delta)-DP (bisection on cdp_delta)."""
    lo, hi = 0.0, eps + 1.0
    for _ in range(200):
        rho = (lo + hi) / 2
        lo, hi = (rho, hi) if cdp_delta(rho, eps) <= delta else (lo, rho)
    return lo


def cdp_eps(rho: float, delta: float) -> float:
    """The smallest eps at which rho-zCDP is (eps, delta)-DP."""
    lo, hi = 0.0, rho + 2 * math.sqrt(rho * math.log(1 / delta)) + 1.0
    for _ in range(200):
        eps = (lo + hi) / 2
        lo, hi = (lo, eps) if cdp_delta(rho, eps) <= delta else (eps, hi)
    return hi


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Spend:
    """The measurements and selections of one fit, and the rho each cost."""

    measurements: list[Any] = field(default_factory=list)  # mbi LinearMeasurement
    log: list[dict[str, Any]] = field(default_factory=list)
    rho: float = 0.0

    def measure(self, data: Any, clique: tuple[str, ...], sigma: float,
                rng: np.random.Generator) -> None:
        """y = M_r(D) + N(0, sigma^2 I): rho = 1 / (2 sigma^2) (sensitivity 1)."""
        LinearMeasurement = mbi().LinearMeasurement

        x = np.asarray(data.project(clique).datavector(), np.float64)
        y = x + rng.normal(0.0, sigma, size=x.shape)
        self.measurements.append(LinearMeasurement(y, clique, stddev=sigma))
        cost = 1 / (2 * sigma**2)
        self.rho += cost
        self.log.append({"what": "gaussian", "clique": list(clique), "sigma": sigma, "rho": cost})

    def select(self, scores: np.ndarray, eps: float, sensitivity: float,
               rng: np.random.Generator) -> int:
        """The exponential mechanism: P(r) ~ exp(eps q_r / (2 Delta)); rho = eps^2 / 8."""
        logits = 0.5 * eps / sensitivity * (scores - scores.max())
        p = np.exp(logits)
        pick = int(rng.choice(len(scores), p=p / p.sum()))
        self.rho += eps**2 / 8
        self.log.append({"what": "exponential", "candidates": len(scores), "epsilon": eps,
                         "sensitivity": sensitivity, "rho": eps**2 / 8})
        return pick


def estimate(domain: Any, spend: Spend, iters: int, warm: Any = None) -> Any:
    """Mirror descent (mbi) on the measurements so far; a warm start re-uses potentials."""
    return mbi().estimation.MirrorDescent().estimate(domain, spend.measurements, iters=iters,
                                                     warm_start=warm)


def _marginals(model: Any, cliques: list[tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
    """The model's marginals (flat, in counts) on many cliques: one einsum over the exponentiated
    potentials per clique, in float64 numpy (mbi's jax variable elimination compiles a program
    per clique shape, minutes per AIM round on Adult)."""
    import opt_einsum

    pots, domain = model.potentials, model.domain
    symbol = {a: opt_einsum.get_symbol(i) for i, a in enumerate(domain.attributes)}
    tables = [np.exp(v - v.max()) for v in
              (np.asarray(pots[c].values, np.float64) for c in pots.cliques)]
    inputs = ",".join("".join(symbol[a] for a in c) for c in pots.cliques)
    out = {}
    for r in cliques:
        m = opt_einsum.contract(f"{inputs}->{''.join(symbol[a] for a in r)}", *tables)
        out[r] = (m / m.sum() * float(model.total)).ravel()
    return out


def _l1(data: Any, model: Any, clique: tuple[str, ...], cache: dict | None = None) -> float:
    """||M_r(D) - M_r(model)||_1, `model` a fitted model or a dict of its flat marginals;
    `cache` keeps the data's marginals between rounds."""
    cache = {} if cache is None else cache
    if clique not in cache:
        cache[clique] = np.asarray(data.project(clique).datavector(), np.float64)
    fitted = model[clique] if isinstance(model, dict) else model.project(clique).datavector()
    return float(np.abs(cache[clique] - np.asarray(fitted, np.float64)).sum())


# --------------------------------------------------------------------------------------------
# MST


def mst(data: Any, rho: float, pairs: Sequence[tuple[str, str]], *, one_way_share: float,
        iters: int, rng: np.random.Generator) -> tuple[Any, Spend]:
    """MST (Algorithm 1): one-way marginals, a noisy maximum spanning tree over `pairs`
    (all pairs by default), the tree's pairs measured; returns (model, spend)."""
    domain, attrs, spend = data.domain, list(data.domain.attributes), Spend()
    rest = (1 - one_way_share) / 2  # selection and measurement share what is left equally
    sigma1 = _sigma(one_way_share * rho / len(attrs))
    for a in attrs:
        spend.measure(data, (a,), sigma1, rng)
    model = estimate(domain, spend, iters)
    fitted = _marginals(model, list(pairs))
    weights = {p: _l1(data, fitted, p) for p in pairs}
    tree = _spanning_tree(attrs, weights, rest * rho, spend, rng)
    sigma2 = _sigma(rest * rho / max(len(tree), 1))
    for p in tree:
        spend.measure(data, p, sigma2, rng)
    return estimate(domain, spend, iters, warm=model), spend


def _sigma(rho: float) -> float:
    """Gaussian scale spending `rho` on one sensitivity-1 marginal: rho = 1 / (2 sigma^2)."""
    return math.sqrt(1 / (2 * rho))


def _spanning_tree(attrs: list[str], weights: dict[tuple[str, str], float], rho: float,
                   spend: Spend, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Kruskal with a noisy choice: each of the (components - 1) edges joining two components
    is drawn by the exponential mechanism at eps = sqrt(8 rho / (d - 1)); sensitivity 1 (one
    row moves an L1 error by at most 1)."""
    parent = {a: a for a in attrs}

    def root(a: str) -> str:
        while parent[a] != a:
            a = parent[a]
        return a

    rounds = len(attrs) - 1
    eps = math.sqrt(8 * rho / max(rounds, 1))
    tree = []
    for _ in range(rounds):
        cands = [p for p in weights if root(p[0]) != root(p[1])]
        if not cands:
            break  # the workload does not connect every column
        pick = cands[spend.select(np.array([weights[p] for p in cands]), eps, 1.0, rng)]
        parent[root(pick[0])] = root(pick[1])
        tree.append(pick)
    return tree


# --------------------------------------------------------------------------------------------
# AIM


def aim(data: Any, rho: float, workload: Sequence[tuple[str, ...]], *, max_model_size: float,
        rounds: int, iters: int, final_iters: int, rng: np.random.Generator
        ) -> tuple[Any, Spend]:
    """AIM (Algorithm 2) on `workload` (weighted cliques; candidates: its downward closure);
    `rounds` (the paper's T = 16 d when 0) sets the initial noise; returns (model, spend)."""
    hypothetical_model_size = mbi().junction_tree.hypothetical_model_size

    domain, attrs, spend = data.domain, list(data.domain.attributes), Spend()
    weights = _closure_weights(workload)
    rounds = rounds or 16 * len(attrs)
    alpha = 0.9  # the share of each round's rho that measures (the rest selects): the paper's
    sigma = math.sqrt(rounds / (2 * alpha * rho))
    eps = math.sqrt(8 * (1 - alpha) * rho / rounds)
    for a in attrs:
        spend.measure(data, (a,), sigma, rng)
    model = estimate(domain, spend, iters)
    chosen, truth = [(a,) for a in attrs], {}
    while rho - spend.rho > 1e-9 * rho:  # float rounding may leave a crumb: not a round
        left = rho - spend.rho
        if left < 2 * (1 / (2 * sigma**2) + eps**2 / 8):  # the last round takes what is left
            sigma, eps = math.sqrt(1 / (2 * alpha * left)), math.sqrt(8 * (1 - alpha) * left)
        cap = max_model_size * spend.rho / rho
        cands = [r for r in weights
                 if hypothetical_model_size(domain, [*chosen, r]) <= cap or r in chosen]
        n_r = np.array([domain.size(r) for r in cands], np.float64)
        w = np.array([weights[r] for r in cands])
        fitted = _marginals(model, cands)
        err = np.array([_l1(data, fitted, r, truth) for r in cands])
        scores = w * (err - math.sqrt(2 / math.pi) * sigma * n_r)
        r = cands[spend.select(scores, eps, float(w.max()), rng)]
        spend.measure(data, r, sigma, rng)
        chosen.append(r)
        before = np.asarray(model.project(r).datavector(), np.float64)
        model = estimate(domain, spend, iters, warm=model)
        after = np.asarray(model.project(r).datavector(), np.float64)
        if np.abs(after - before).sum() <= math.sqrt(2 / math.pi) * sigma * domain.size(r):
            sigma, eps = sigma / 2, eps * 2  # the paper's annealing: this noise is too coarse
    return estimate(domain, spend, final_iters, warm=model), spend


def _closure_weights(workload: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], float]:
    """c_r = sum over workload cliques s of |r & s|, for every r in the downward closure."""
    closure = {tuple(sorted(sub)) for s in workload for k in range(1, len(s) + 1)
               for sub in itertools.combinations(s, k)}
    return {r: float(sum(len(set(r) & set(s)) for s in workload)) for r in sorted(closure)}
