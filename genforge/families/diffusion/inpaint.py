"""Inpainting with a denoiser trained without masks: RePaint (Lugmayr et al. 2022).

The known pixels are put back at every step, noised by the forward process to the current
level; RePaint also goes back up the chain by `jump` levels, `resample - 1` times per jump point,
so that the generated part has the chance to agree with the known part (resample = 1 is plain
replacement). The reverse steps are DDIM steps with eta (1 = ancestral, as in the paper) on a
`steps`-level schedule, so the cost is about steps * resample network calls
(`network_calls`).

Levels: k = S-1 ... 0 are the plan's timesteps from noisiest to cleanest; k = -1 is x_0.
"""

from __future__ import annotations

from itertools import pairwise

import torch

from genforge.families.diffusion.sampling import Denoiser, Plan


def repaint_levels(steps: int, jump: int, resample: int) -> list[int]:
    """The levels the image visits, from S-1 down to -1, with RePaint's jumps back up.

    The jump points are those of diffusers' RePaintScheduler.set_timesteps (every `jump`-th
    level below S - jump); each is left `resample - 1` times by going up `jump` levels.
    """
    jumps = {k: resample - 1 for k in range(0, steps - jump, jump)}
    levels = [steps - 1]
    k = steps  # RePaint's counter: the image is at level k - 1
    while k >= 1:
        k -= 1
        levels.append(k - 1)  # a reverse step
        if jumps.get(k, 0) > 0:
            jumps[k] -= 1
            for _ in range(jump):
                k += 1
                levels.append(k - 1)  # one level back up (merged into one jump below)
    return levels


def inpaint(denoise: Denoiser, x0: torch.Tensor, mask: torch.Tensor, plan: Plan,
            levels: list[int], generator: torch.Generator, bar=None) -> torch.Tensor:
    """Fill x0 (B, C, H, W) where `mask` (B, C|1, H, W) is True; known pixels come back exact.

    Plan step i goes from level S-1-i to level S-2-i; abar at level k is plan.abar[S-1-k].
    """
    S = len(plan)

    def abar(k: int) -> float:  # level -1 is index S: abar = 1
        return plan.abar[S - 1 - k]

    ts = torch.tensor(plan.timesteps, dtype=torch.long, device=x0.device)  # (S,)
    mask = mask.to(x0.device).expand_as(x0)
    # 1. x at the noisiest level ~ N(0, I)
    x = torch.randn(x0.shape, generator=generator).to(x0.device)  # (B, C, H, W)
    i = 0
    while i < len(levels) - 1:
        a, b = levels[i], levels[i + 1]
        if b < a:
            # 2. unknown part: a reverse step x_{t_a} -> x_{t_b} from the network's prediction
            step = S - 1 - a
            out = denoise(x, ts[step]).float()  # (B, C, H, W)
            z = torch.randn(x.shape, generator=generator).to(x.device) if plan.draws[step] \
                else None
            unknown = plan.step(step, x, out, z)
            # 3. known part: q(x_{t_b} | x_0) = N(sqrt(abar_b) x_0, (1 - abar_b) I)
            e = torch.randn(x.shape, generator=generator).to(x.device)
            known = abar(b) ** 0.5 * x0 + (1 - abar(b)) ** 0.5 * e
            # 4. merge: missing pixels from the chain, known ones from the data
            x = torch.where(mask, unknown, known)
            if bar is not None:
                bar.update(1)
            i += 1
        else:
            # 5. jump back up: q(x_{t_c} | x_{t_a}) = N(sqrt(abar_c / abar_a) x, (1 - abar_c /
            #    abar_a) I), for the whole run of rising levels a < ... < c at once
            j = i + 1
            while j + 1 < len(levels) and levels[j + 1] > levels[j]:
                j += 1
            ratio = abar(levels[j]) / abar(a)
            e = torch.randn(x.shape, generator=generator).to(x.device)
            x = ratio ** 0.5 * x + (1 - ratio) ** 0.5 * e
            i = j
    return torch.where(mask, x, x0)  # 6. the known pixels, exactly as given


def network_calls(levels: list[int]) -> int:
    """How many reverse steps (network calls) a level list costs."""
    return sum(b < a for a, b in pairwise(levels))
