"""The accountant's side of a DP run: one-off Gaussian releases, the budget left for them
once the preprocessing is paid, and the noise multiplier that spends what remains.

Every Gaussian mechanism is an entry (noise multiplier, sample rate, steps) of an Opacus
accountant's history: DP-SGD's steps as sampled Gaussians at rate q, a one-off release as
(z, 1.0, 1) (RDP alpha / (2 z^2) at order alpha), so one accountant composes them all.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from genforge.config import PrivacyConfig
from genforge.errors import ConfigError

# RDP orders: Opacus's defaults stop at 63, too low for the small noise multipliers of
# epsilon ~10 (it warns so); higher orders give a tighter, still valid bound
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [
    80, 96, 128, 192, 256, 384, 512, 1024]


class Releases:
    """The one-off Gaussian mechanisms of a run (before its SGD steps), for the accountant.

    `gaussian(values, sensitivity=..., share=..., step=..., detail=...)` adds N(0, (z s)^2)
    to `values` (s: their L2 sensitivity to adding or removing one record), where z is solved
    so that this release alone spends `share` of the epsilon left for the Gaussian mechanisms
    (with privacy.noise_multiplier given instead, z is that). RDP of one Gaussian mechanism:
    alpha / (2 z^2), the sampled Gaussian's with q = 1 and one step, so it enters the
    accountant's history as (z, 1.0, 1).
    """

    def __init__(self, cfg: PrivacyConfig, *, epsilon: float | None, delta: float,
                 seed: int) -> None:
        self.cfg, self.epsilon, self.delta = cfg, epsilon, delta
        # noise from torch's generator seeded by the run's noise seed, like the SGD noise
        # (Opacus' secure_mode needs torchcsprng, which has no current wheel); the seed is a
        # secret one unless privacy.noise_seed was given (training/privacy.noise_seed)
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 424_242)
        self.history: list[tuple[float, float, int]] = []
        self.items: list[dict[str, Any]] = []

    def gaussian(self, values: torch.Tensor, *, sensitivity: float, share: float, step: str,
                 detail: str) -> torch.Tensor:
        if self.epsilon is not None:
            z = solve_sigma(self.cfg, epsilon=share * self.epsilon, delta=self.delta,
                             prior=[], sample_rate=1.0, steps=1)
        else:
            z = float(self.cfg.noise_multiplier)
        noise = torch.randn(values.shape, generator=self.generator, dtype=torch.float64)
        self.history.append((z, 1.0, 1))
        self.items.append({"step": step, "mechanism": (
            f"Gaussian mechanism: noise multiplier {z:.4g} x L2 sensitivity {sensitivity:.4g}"),
            "detail": detail, "noise_multiplier": z, "sensitivity": sensitivity,
            "share": share if self.epsilon is not None else None})
        return values.double() + noise * (z * sensitivity)


def left_for_gaussians(cfg: PrivacyConfig, items: list[dict[str, Any]]
                        ) -> tuple[float | None, float]:
    """(epsilon, delta) left for the Gaussian mechanisms once the preprocessing is paid."""
    eps = sum(float(i["epsilon"]) for i in items)
    delta = cfg.delta - sum(float(i["delta"]) for i in items)
    if delta <= 0:
        raise ConfigError(f"privacy.delta={cfg.delta}: the preprocessing already spends delta "
                          f"{cfg.delta - delta:.3g}; raise privacy.delta")
    if cfg.epsilon is None:
        return None, delta
    if cfg.epsilon - eps <= 0:
        raise ConfigError(f"privacy.epsilon={cfg.epsilon}: the preprocessing already spends "
                          f"epsilon {eps:.3g}, leaving nothing for training")
    return cfg.epsilon - eps, delta


def solve_noise_multiplier(cfg: PrivacyConfig, *, sample_rate: float, steps: int,
                           prior: list[tuple[float, float, int]] | None = None,
                           epsilon: float | None = None, delta: float | None = None) -> float:
    """The smallest sigma (to 0.01 in epsilon) whose `steps` steps, after the `prior`
    mechanisms, spend at most `epsilon` (default cfg.epsilon) at `delta` (cfg.delta)."""
    epsilon = cfg.epsilon if epsilon is None else epsilon
    try:
        return solve_sigma(cfg, epsilon=epsilon, delta=cfg.delta if delta is None else delta,
                            prior=list(prior or []), sample_rate=sample_rate, steps=steps)
    except ValueError:
        raise ConfigError(f"privacy.epsilon={cfg.epsilon}: unreachable with {steps} steps at "
                          f"sample rate {sample_rate:.3g} (the noise multiplier would pass "
                          "1e6); raise epsilon or lower train.max_steps / train.batch_size") \
            from None


def solve_sigma(cfg: PrivacyConfig, *, epsilon: float, delta: float,
                 prior: list[tuple[float, float, int]], sample_rate: float, steps: int) -> float:
    """Opacus' get_noise_multiplier (double, then bisect to 0.01 in epsilon), with `prior`
    mechanisms in the history before the new steps."""
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=cfg.accountant)

    def spent(sigma: float) -> float:
        accountant.history = [*prior, (sigma, sample_rate, steps)]
        with warnings.catch_warnings():  # as in PrivateTraining._gaussian_epsilon
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(accountant.get_epsilon(delta=delta, **orders(cfg)))

    low, high, eps_high = 0.0, 10.0, math.inf
    while eps_high > epsilon:
        high *= 2
        eps_high = spent(high)
        if high > 1e6:
            raise ValueError("The privacy budget is too low.")
    while epsilon - eps_high > 0.01:
        mid = (low + high) / 2
        eps = spent(mid)
        if eps < epsilon:
            high, eps_high = mid, eps
        else:
            low = mid
    return high


def orders(cfg: PrivacyConfig) -> dict[str, Any]:
    return {"alphas": RDP_ORDERS} if cfg.accountant == "rdp" else {}
