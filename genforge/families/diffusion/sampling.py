"""Reverse-process samplers: DDPM (ancestral) and DDIM, on diffusers' schedules.

diffusers' schedulers give the timesteps and alpha-bar; the scalars of every step are computed
once per call, op for op as DDPMScheduler.step / DDIMScheduler.step compute them (float32), so
the chain below matches diffusers' pipelines to float rounding while each step is four tensor
expressions and no host sync. Noise comes from the caller's CPU torch.Generator in the order
the pipelines draw it (x_T first, then one draw per step that adds noise), so the same seed
gives the same images as DDPMPipeline / DDIMPipeline.

Symbols: abar_t = prod_{s<=t} (1 - beta_s); x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps;
eps_hat = eps_theta(x_t, t); x0_hat the predicted clean image; t' the next (smaller) timestep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler

from genforge.families.diffusion.nets import ddim_scheduler
from genforge.runtime.noise import fixed_chunks

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> prediction


@dataclass
class Plan:
    """A reverse chain t_1 > ... > t_S with each step's scalars precomputed (Python floats).

    Step i maps x_{t_i} to x_{t_i'}:  x' = c_x0 * x0_hat + c_dir * d + sigma * z,
    with d = eps_hat (DDIM) or d = x_t (DDPM), and z ~ N(0, I) drawn where `draws` says.
    """

    kind: str  # "ddim" | "ddpm"
    prediction: str  # "epsilon" | "v_prediction"
    clip: bool
    timesteps: list[int]
    sqrt_abar: list[float]  # sqrt(abar_t)
    sqrt_one_minus_abar: list[float]  # sqrt(1 - abar_t)
    c_x0: list[float]
    c_dir: list[float]
    sigma: list[float]
    draws: list[bool]
    abar: list[float]  # abar_t, and abar after the last step (1.0) at index S

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, i: int, x: torch.Tensor, out: torch.Tensor,
             z: torch.Tensor | None) -> torch.Tensor:
        """One reverse step from the network output `out` at t_i; all tensors (B, C, H, W)."""
        sa, s1a = self.sqrt_abar[i], self.sqrt_one_minus_abar[i]
        # 2. x0_hat and eps_hat from the prediction
        if self.prediction == "epsilon":
            x0 = (x - s1a * out) / sa  # x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
            eps = out
        else:  # v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
            x0 = sa * x - s1a * out  # x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_hat
            eps = sa * out + s1a * x  # eps_hat = sqrt(abar_t) v_hat + sqrt(1 - abar_t) x_t
        # 3. clip x0_hat to the data range
        if self.clip:
            x0 = x0.clamp(-1.0, 1.0)
        # 4. x_t' = c_x0 x0_hat + c_dir d (+ sigma z)
        x_prev = self.c_x0[i] * x0 + self.c_dir[i] * (eps if self.kind == "ddim" else x)
        if z is not None:
            x_prev = x_prev + self.sigma[i] * z
        return x_prev


def ddim_plan(ddpm: DDPMScheduler, steps: int, eta: float) -> Plan:
    """DDIM (Song et al. 2021, eq. 12 and 16) on `steps` timesteps, as DDIMPipeline runs it.

    x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t' - sigma_t^2) eps_hat + sigma_t z,
    sigma_t = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t').
    """
    s = ddim_scheduler(ddpm)
    s.set_timesteps(steps)
    ratio = s.config.num_train_timesteps // steps
    rows = []
    for t in s.timesteps.tolist():
        a_t = s.alphas_cumprod[t]  # float32, as in DDIMScheduler.step
        a_prev = s.alphas_cumprod[t - ratio] if t - ratio >= 0 else s.final_alpha_cumprod
        b_t, b_prev = 1 - a_t, 1 - a_prev
        std = eta * ((b_prev / b_t) * (1 - a_t / a_prev)) ** 0.5
        rows.append((t, a_t ** 0.5, b_t ** 0.5, a_prev ** 0.5, (1 - a_prev - std ** 2) ** 0.5,
                     std, eta > 0, a_t))  # the pipeline draws noise at every step if eta > 0
    return _plan("ddim", s, rows)


def ddpm_plan(ddpm: DDPMScheduler, steps: int | None = None) -> Plan:
    """Ancestral sampling (Ho et al. 2020, eq. 6-7), on all T timesteps unless `steps`.

    x_t' = c_x0 x0_hat + c_xt x_t + sigma_t z,  c_x0 = sqrt(abar_t') beta / (1 - abar_t),
    c_xt = sqrt(alpha) (1 - abar_t') / (1 - abar_t),  sigma_t^2 = beta (1 - abar_t') / (1 - abar_t),
    with alpha = abar_t / abar_t' and beta = 1 - alpha; no noise is added at t = 0.
    """
    s = DDPMScheduler.from_config(ddpm.config)
    s.set_timesteps(steps or s.config.num_train_timesteps)
    timesteps = s.timesteps.tolist()
    rows = []
    for i, t in enumerate(timesteps):
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a_t = s.alphas_cumprod[t]  # float32, as in DDPMScheduler.step
        a_prev = s.alphas_cumprod[prev] if prev >= 0 else s.one
        b_t, b_prev = 1 - a_t, 1 - a_prev
        alpha = a_t / a_prev
        beta = 1 - alpha
        variance = torch.clamp(b_prev / b_t * beta, min=1e-20)
        rows.append((t, a_t ** 0.5, b_t ** 0.5, a_prev ** 0.5 * beta / b_t,
                     alpha ** 0.5 * b_prev / b_t, variance ** 0.5, t > 0, a_t))
    return _plan("ddpm", s, rows)


def _plan(kind: str, s, rows: list[tuple]) -> Plan:
    cols = list(zip(*rows, strict=True))
    floats = [[float(v) for v in col] for col in cols[1:6]]  # one host read, before the chain
    return Plan(kind=kind, prediction=s.config.prediction_type, clip=s.config.clip_sample,
                timesteps=list(cols[0]), sqrt_abar=floats[0], sqrt_one_minus_abar=floats[1],
                c_x0=floats[2], c_dir=floats[3], sigma=floats[4], draws=list(cols[6]),
                abar=[float(a) for a in cols[7]] + [1.0])


def run_chain(denoise: Denoiser, x: torch.Tensor, plan: Plan,
              generator: torch.Generator | Callable[[torch.Size], torch.Tensor],
              bar=None) -> torch.Tensor:
    """x_T (B, C, H, W) -> x_0 through every step of `plan`; noise from `generator` (CPU), or
    from a function of the shape (per-request noise, genforge.runtime.noise)."""
    ts = torch.tensor(plan.timesteps, dtype=torch.long, device=x.device)  # (S,)
    draw = generator if callable(generator) else \
        lambda shape: torch.randn(shape, generator=generator)
    for i in range(len(plan)):
        out = denoise(x, ts[i]).float()  # 1. eps_hat (or v_hat) = network(x_t, t)   (B, C, H, W)
        z = draw(x.shape).to(x.device) if plan.draws[i] else None
        x = plan.step(i, x, out, z)  # 2-4. x_t -> x_t'
        if bar is not None:
            bar.update(1)
    return x


Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]  # (x, t, y)


@dataclass
class _Request:
    x: torch.Tensor  # (k, C, H, W): x at the request's next step
    y: torch.Tensor | None  # (k,) labels of a conditional model
    draw: Callable[[torch.Size], torch.Tensor]  # the request's own noise
    i: int = 0  # its next step of the plan


class ChainRows:
    """Several requests' reverse chains on one plan, each at its own step: requests join and
    leave between steps (continuous batching), so one arriving mid-chain waits for at most
    one network call instead of a whole chain.

    Each `advance` runs the network once over every row, rows at different timesteps side by
    side (the UNet takes one t per row), on chunks of exactly `size` rows (padded); then each
    request takes its own step with noise from its own generator. A row's floats therefore do
    not depend on which requests share its calls nor at which step they joined.
    """

    def __init__(self, plan: Plan, predict: Predictor, size: int) -> None:
        self.plan, self.predict, self.size = plan, predict, size
        self._requests: dict[int, _Request] = {}  # in arrival order
        self._timesteps = torch.tensor(plan.timesteps, dtype=torch.long)

    @property
    def rows(self) -> int:
        return sum(r.x.shape[0] for r in self._requests.values())

    def add(self, ticket: int, x_T: torch.Tensor, y: torch.Tensor | None,
            draw: Callable[[torch.Size], torch.Tensor]) -> None:
        self._requests[ticket] = _Request(x_T, y, draw)

    def remove(self, ticket: int) -> None:
        self._requests.pop(ticket, None)

    def advance(self) -> list[tuple[int, torch.Tensor]]:
        """One step of every request; returns (ticket, x_0 (k, C, H, W)) of those it ended."""
        if not self._requests:
            return []
        requests = list(self._requests.values())
        x = torch.cat([r.x for r in requests])  # (R, C, H, W)
        t = torch.cat([self._timesteps[r.i].expand(r.x.shape[0]) for r in requests])  # (R,)
        y = None if requests[0].y is None else torch.cat([r.y for r in requests])
        out = fixed_chunks(lambda xc, tc, yc: self.predict(xc, tc.to(xc.device), yc).float(),
                           [x, t, y], self.size)  # (R, C, H, W)
        done, start = [], 0
        for ticket, r in list(self._requests.items()):
            k = r.x.shape[0]
            z = r.draw(r.x.shape).to(r.x.device) if self.plan.draws[r.i] else None
            r.x = self.plan.step(r.i, r.x, out[start : start + k], z)
            r.i, start = r.i + 1, start + k
            if r.i == len(self.plan):
                done.append((ticket, r.x))
                del self._requests[ticket]
        return done
