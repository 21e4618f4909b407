"""Column transforms shared by the synthesizers, all on encoded rows (standardised numbers,
category codes; see genforge.modalities.tables.schema).

QuantileMap     numbers <-> standard normal scores through the training rows' quantiles
                (copula marginals, TabDDPM's numeric space). Ties (a point mass such as
                capital-gain = 0) map to a random score inside their flat stretch when jittered.
ModeNormalizer  CTGAN/TVAE's mode-specific normalisation (Xu et al. 2019): per column a
                Bayesian Gaussian mixture (scikit-learn, at most `max_modes` modes, Dirichlet
                process prior); a value becomes (alpha, mode) with alpha = (x - mu_k) / (4 sd_k).
                Values holding 5 % of a column or more are modes of their own, decoded exactly.
                Its parameters are buffers, saved with the sampling net that holds it.
RowLayout       the flat vector (B, D) the TVAE and CTGAN nets see:
                [alpha (n_num) | mode one-hots (n_num * M) | category one-hots (sum K)].
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS_U = 1e-5  # scores are kept within Phi^-1(1e-5) ~ -4.26 .. 4.26
# A mode narrower than this (in standard deviations of its column) is a point mass, such as
# capital-gain = 0 or hours-per-week = 40. Such modes decode to their value exactly; a mixture
# component there instead spreads the spike into nearby values (0 -> 1, 37, ...), which ruins
# the column's shape.
POINT_SD = 2e-3
POINT_MASS = 0.05  # a value with this share of a column's rows is a mode of its own
POINT_WIDTH = 1e-6  # such a mode's width: only the value itself falls in it when encoding


def _phi_inv(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0) * torch.erfinv(2 * u.clamp(EPS_U, 1 - EPS_U) - 1)


def _phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))


class QuantileMap:
    """Per-column empirical CDF from Q quantiles (n_num, Q), at levels k / (Q - 1)."""

    def __init__(self, quantiles: list[list[float]]) -> None:
        self.q = torch.tensor(quantiles, dtype=torch.float32).reshape(len(quantiles), -1) \
            if quantiles else torch.zeros(0, 2)  # a table without numeric columns
        self.levels = torch.linspace(0, 1, self.q.shape[1]) if len(quantiles) else None

    def _cdf(self, x: torch.Tensor, right: bool) -> torch.Tensor:
        q = self.q.to(x.device)  # (n, Q)
        levels = self.levels.to(x.device)
        Q = q.shape[1]
        xt = x.T.contiguous()  # (n, B)
        idx = torch.searchsorted(q, xt, right=right).clamp(1, Q - 1)  # (n, B)
        lo, hi = q.gather(1, idx - 1), q.gather(1, idx)
        frac = ((xt - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
        if not right:  # left end of a flat stretch: its first level
            frac = torch.where(hi > lo, frac, torch.ones_like(frac))
        u = levels[idx - 1] + frac / (Q - 1)
        return u.T  # (B, n)

    def to_normal(self, x: torch.Tensor, generator: torch.Generator | None = None,
                  jitter: bool = True) -> torch.Tensor:
        """Standardised values (B, n) -> normal scores (B, n)."""
        if x.shape[1] == 0:
            return x
        u_lo, u_hi = self._cdf(x, right=False), self._cdf(x, right=True)
        r = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) if jitter \
            else torch.full_like(x, 0.5)
        return _phi_inv(torch.minimum(u_lo, u_hi) + r * (u_hi - u_lo).abs())

    def from_normal(self, z: torch.Tensor) -> torch.Tensor:
        """Normal scores (B, n) -> standardised values (B, n), by the quantiles."""
        if z.shape[1] == 0:
            return z
        q = self.q.to(z.device)
        Q = q.shape[1]
        pos = (_phi(z.float()).T * (Q - 1)).clamp(0, Q - 1)  # (n, B)
        k = pos.floor().long().clamp(max=Q - 2)
        frac = pos - k
        return (q.gather(1, k) * (1 - frac) + q.gather(1, k + 1) * frac).T


class ModeNormalizer(nn.Module):
    """Mixture modes per numeric column, fitted once on points drawn from the quantiles."""

    def __init__(self, n_num: int, max_modes: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(n_num, max_modes))
        self.register_buffer("stds", torch.ones(n_num, max_modes))
        self.register_buffer("log_weights", torch.zeros(n_num, max_modes))
        self.register_buffer("valid", torch.ones(n_num, max_modes, dtype=torch.bool))

    def fit(self, quantiles: list[list[float]], seed: int = 0, points: int = 4000) -> None:
        """Per column: each value holding at least POINT_MASS of the rows (a flat stretch of
        the quantiles: capital-gain = 0, hours-per-week = 40, an integer code) becomes a mode
        of its own with no width; a Bayesian Gaussian mixture fits the rest."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import BayesianGaussianMixture

        M = self.means.shape[1]
        grid = np.linspace(0, 1, points)
        for j, q in enumerate(quantiles):
            q = np.asarray(q, dtype=np.float64)
            values, counts = np.unique(q, return_counts=True)
            mass = counts / len(q)
            spikes = values[mass >= POINT_MASS][np.argsort(-mass[mass >= POINT_MASS])][: M - 1]
            x = np.interp(grid, np.linspace(0, 1, len(q)), q)  # the column's shape
            rest = x[~np.isin(x, spikes)][:, None]
            means, stds, weights = list(spikes), [POINT_WIDTH] * len(spikes), \
                [float(np.isin(x, [v]).mean()) for v in spikes]
            k = M - len(spikes)
            if len(rest) >= 2 * k:
                bgm = BayesianGaussianMixture(
                    n_components=k, weight_concentration_prior_type="dirichlet_process",
                    weight_concentration_prior=0.001, max_iter=100, n_init=1, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    bgm.fit(rest)
                means += list(bgm.means_[:, 0])
                stds += list(np.sqrt(bgm.covariances_.reshape(k)).clip(min=1e-3))
                weights += list(bgm.weights_ * len(rest) / len(x))
            else:  # (almost) all of the column is spikes: the other modes stay unused
                means += [0.0] * k
                stds += [1.0] * k
                weights += [0.0] * k
            w = np.asarray(weights)
            self.means[j] = torch.tensor(means, dtype=torch.float32)
            self.stds[j] = torch.tensor(stds, dtype=torch.float32)
            self.log_weights[j] = torch.tensor(np.log(w + 1e-12), dtype=torch.float32)
            self.valid[j] = torch.tensor(w > 0.005)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, n) -> alpha (B, n) in [-0.99, 0.99], mode (B, n); the mode is drawn from the
        posterior over the column's modes (as CTGAN does), so nearby values share modes."""
        z = (x[:, :, None] - self.means) / self.stds  # (B, n, M)
        logp = self.log_weights - 0.5 * z**2 - self.stds.log()
        logp = logp.masked_fill(~self.valid, -torch.inf)
        probs = logp.softmax(-1).reshape(-1, logp.shape[-1])
        mode = torch.multinomial(probs.cpu(), 1, generator=generator).to(x.device)
        mode = mode.reshape(x.shape)  # (B, n)
        mu = self.means.expand_as(z).gather(2, mode[..., None])[..., 0]
        sd = self.stds.expand_as(z).gather(2, mode[..., None])[..., 0]
        return ((x - mu) / (4 * sd)).clamp(-0.99, 0.99), mode

    def decode(self, alpha: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        means = self.means.expand(alpha.shape[0], -1, -1)
        stds = self.stds.expand(alpha.shape[0], -1, -1)
        mu = means.gather(2, mode[..., None])[..., 0]
        sd = stds.gather(2, mode[..., None])[..., 0]
        sd = torch.where(sd <= POINT_SD, torch.zeros_like(sd), sd)  # point masses exactly
        return alpha.clamp(-1, 1) * 4 * sd + mu


class RowLayout:
    """Spans of the flat row vector; activations, losses and argmax decoding by span."""

    def __init__(self, n_num: int, max_modes: int, cardinalities: list[int]) -> None:
        self.n_num, self.M, self.cards = n_num, max_modes, list(cardinalities)
        self.cat_start = n_num * (1 + max_modes)
        self.cat_spans = []
        start = self.cat_start
        for k in self.cards:
            self.cat_spans.append((start, start + k))
            start += k
        self.dim = start

    def to_vector(self, norm: ModeNormalizer, num: torch.Tensor, cat: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        B = num.shape[0]
        parts = []
        if self.n_num:
            alpha, mode = norm.encode(num, generator)
            parts += [alpha, F.one_hot(mode, self.M).float().reshape(B, -1)]
        parts += [F.one_hot(cat[:, j], k).float() for j, k in enumerate(self.cards)]
        return torch.cat(parts, 1) if parts else torch.zeros(B, 0, device=num.device)

    def mode_logits(self, v: torch.Tensor, norm: ModeNormalizer) -> torch.Tensor:
        logits = v[:, self.n_num : self.cat_start].reshape(-1, self.n_num, self.M)
        return logits.masked_fill(~norm.valid, -1e4)  # (B, n, M)

    def activate(self, v: torch.Tensor, norm: ModeNormalizer, tau: float) -> torch.Tensor:
        """Generator outputs -> a row vector: tanh for alpha, Gumbel-softmax for each span."""
        parts = []
        if self.n_num:
            parts += [torch.tanh(v[:, : self.n_num]),
                      F.gumbel_softmax(self.mode_logits(v, norm), tau=tau).flatten(1)]
        parts += [F.gumbel_softmax(v[:, a:b], tau=tau) for a, b in self.cat_spans]
        return torch.cat(parts, 1)

    def decode(self, v: torch.Tensor, norm: ModeNormalizer, alpha_noise: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Row vectors (raw or activated) -> (num (B, n_num), cat codes (B, n_cat)); argmax."""
        B = v.shape[0]
        num = torch.zeros(B, self.n_num, device=v.device)
        if self.n_num:
            alpha = v[:, : self.n_num]
            if alpha_noise is not None:
                alpha = alpha + alpha_noise
            num = norm.decode(alpha.clamp(-1, 1), self.mode_logits(v, norm).argmax(-1))
        cat = [v[:, a:b].argmax(1) for a, b in self.cat_spans]
        return num, torch.stack(cat, 1) if cat else torch.zeros(B, 0, dtype=torch.long,
                                                                  device=v.device)
