"""The diffusion objective: the denoising loss, sampling with guidance, inpainting, export.

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   t ~ U{0, ..., T-1},  eps ~ N(0, I)
    loss = || eps - eps_theta(x_t, t, y) ||^2                       (epsilon; Ho et al. 2020)
    loss = || v - v_theta(x_t, t, y) ||^2,  v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0   (v)
    y is replaced by the null class with probability label_dropout (classifier-free guidance)

Sampling: DDIM or DDPM chains (sampling.py); guided prediction
eps = eps(x) + w (eps(x, y) - eps(x)), so w = 0 is the unconditional model, w = 1 the
conditional one (either costs one network call per step; other w run both halves as one batch).
The same combination of v-predictions is the same combination of eps-predictions, since eps is
affine in v. Inpainting: RePaint (inpaint.py). Export: a diffusers folder (unet/, scheduler/).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genforge.config import ConfigError, TrainConfig
from genforge.families.diffusion.config import DiffusionConfig
from genforge.families.diffusion.inpaint import inpaint, network_calls, repaint_levels
from genforge.families.diffusion.nets import build_scheduler, build_unet
from genforge.families.diffusion.sampling import (
    ChainRows,
    Denoiser,
    Plan,
    Predictor,
    ddim_plan,
    ddpm_plan,
    run_chain,
)
from genforge.runtime.noise import RowNoise
from genforge.training.contract import Batch, StepContext, bare


class DiffusionObjective:
    sampling_nets = ("unet",)
    # what sampling offers (genforge.inference.sampler): per-request noise, a reverse chain
    # that requests join between steps, inpainting
    capabilities = frozenset({"sample", "merge", "step", "complete"})
    sample_keywords = ("precision", "progress", "batch_size")
    complete_keywords = ("eta", "guidance", "precision", "progress", "batch_size")

    def __init__(self, cfg: DiffusionConfig, data_info: dict[str, Any]) -> None:
        self.cfg = cfg
        self.num_classes = data_info["num_classes"] if cfg.conditional else 0
        self.null_class = self.num_classes  # the label index that means "no label"
        size = data_info["image_size"]
        self.shape = (data_info["channels"], size, size)
        self.nets = {"unet": build_unet(cfg, data_info["channels"], size, self.num_classes)}
        self.scheduler = build_scheduler(cfg)

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {"unet": torch.optim.AdamW(self.nets["unet"].parameters(), lr=train.lr,
                                          betas=train.betas, weight_decay=train.weight_decay)}

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        unet, x0 = self.nets["unet"], batch.x  # x0: (B, C, H, W) in [-1, 1]
        b, device = x0.shape[0], x0.device
        # 1. t and eps from the loop's seeded RNG (saved in checkpoints, so resume is exact)
        t = torch.randint(0, self.cfg.timesteps, (b,), device=device)  # (B,)
        eps = torch.randn_like(x0)  # (B, C, H, W)
        # 2. x_t ~ q(x_t | x_0), and the regression target
        x_t = self.scheduler.add_noise(x0, eps, t)  # (B, C, H, W)
        target = eps if self.cfg.prediction == "epsilon" else \
            self.scheduler.get_velocity(x0, eps, t)
        # 3. labels, dropped to the null class with probability label_dropout
        y = None
        if self.num_classes:
            drop = torch.rand(b, device=device) < self.cfg.label_dropout  # (B,)
            y = torch.where(drop, torch.full_like(batch.y, self.null_class), batch.y)
        # 4. through forward, so that DDP syncs the gradients
        pred = unet(x_t, t, y, return_dict=False)[0]  # (B, C, H, W)
        loss = F.mse_loss(pred.float(), target)
        step.update("unet", loss)
        return {"loss/unet": loss.detach()}

    @torch.inference_mode()
    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               scheduler: str | None = None, steps: int | None = None,
               eta: float | None = None, guidance: float | None = None,
               precision: str | None = None, progress: bool | None = None,
               batch_size: int = 256, noise: RowNoise | None = None,
               pad_to: int | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1] from the reverse chain, `batch_size` at a time.

        scheduler 'ddim' (default; `steps` default model.sampling_steps, eta model.eta) or 'ddpm'
        (all T steps unless `steps`); guidance w (conditional models; default model.guidance);
        a conditional model without `condition` draws labels. precision 'bf16' runs the network
        under bf16 autocast, 'fp32' without; None keeps the caller's autocast. progress: a tqdm
        bar (None: only on a terminal). Seeded by its own generator, never the global RNG:
        x_T ~ N(0, I) is drawn for all n first, as diffusers' pipelines draw it.

        `noise` (several requests' own generators, genforge.runtime.noise) or `pad_to` runs
        the chain over all n rows at once, step by step, each step's noise drawn per request
        and the network run on chunks of exactly `pad_to` rows (padded): a request's images
        then do not depend on the requests that share the call. For n <= batch_size the
        draws are those of the plain path.
        """
        plan = self._plan(scheduler, steps, eta)
        w = self._guidance(guidance)
        unet = bare(self.nets["unet"])
        device = next(unet.parameters()).device
        if noise is not None or pad_to:
            return self._sample_rows(noise or RowNoise.single(seed, n), condition, plan, w,
                                     unet, precision, progress, pad_to or batch_size)
        g = torch.Generator(device="cpu").manual_seed(seed)
        x_T = torch.randn((n, *self.shape), generator=g)  # (n, C, H, W)
        y = self._labels(condition, n, g)
        chunks = range(0, n, batch_size)
        with _evaluating(unet), _precision(device, precision), \
                self._bar(len(plan) * len(chunks), progress, plan.kind) as bar:
            images = [run_chain(self._denoiser(unet, y, i, batch_size, w),
                                x_T[i : i + batch_size].to(device), plan, g, bar)
                      for i in chunks]
        return torch.cat(images).clamp_(-1, 1)

    def _sample_rows(self, noise: RowNoise, condition: torch.Tensor | None, plan: Plan,
                     w: float, unet: torch.nn.Module, precision: str | None,
                     progress: bool | None, size: int) -> torch.Tensor:
        """The chain over all rows, step-major, each request with its own noise; the network
        on fixed chunks of `size` (the requests of one `ChainRows`, all joined at step 0)."""
        chain = ChainRows(plan, self._predictor(unet, w), size)
        start = 0
        for ticket, (g, k) in enumerate(zip(noise.generators, noise.sizes, strict=True)):
            self._join(chain, ticket, g, k,
                       None if condition is None else condition[start : start + k])
            start += k
        done: dict[int, torch.Tensor] = {}
        device = next(unet.parameters()).device
        with _evaluating(unet), _precision(device, precision), \
                self._bar(len(plan), progress, plan.kind) as bar:
            while chain.rows:
                done.update(chain.advance())
                bar.update(1)
        return torch.cat([done[i] for i in range(len(noise.sizes))]).clamp_(-1, 1)

    def sampling_session(self, *, size: int, scheduler: str | None = None,
                         steps: int | None = None, eta: float | None = None,
                         guidance: float | None = None,
                         precision: str | None = None) -> DiffusionSession:
        """A reverse chain that requests join and leave between steps (continuous batching,
        for the server). A request's images are bit for bit those `sample(..., noise=
        RowNoise.single(seed, n), pad_to=size)` gives it, whoever shares the steps."""
        unet = bare(self.nets["unet"])
        chain = ChainRows(self._plan(scheduler, steps, eta),
                          self._predictor(unet, self._guidance(guidance)), size)
        return DiffusionSession(self, chain, unet, precision)

    def _join(self, chain: ChainRows, ticket: int, g: torch.Generator, n: int,
              condition: torch.Tensor | None) -> None:
        """Add a request to `chain`: x_T, then labels, then each step's noise from its own
        generator `g`, in the order a lone call draws them."""
        device = next(self.nets["unet"].parameters()).device
        x_T = torch.randn((n, *self.shape), generator=g)  # (n, C, H, W)
        y = self._labels(condition, n, g)
        chain.add(ticket, x_T.to(device), None if y is None else y.to(device),
                  lambda shape: torch.randn(shape, generator=g))

    @torch.inference_mode()
    def complete(self, x: torch.Tensor, mask: torch.Tensor, *, seed: int,
                 condition: torch.Tensor | None = None, method: str | None = None,
                 steps: int | None = None, jump: int | None = None,
                 resample: int | None = None, eta: float = 1.0, guidance: float | None = None,
                 precision: str | None = None, progress: bool | None = None,
                 batch_size: int = 256) -> torch.Tensor:
        """Fill the pixels of x (N, C, H, W) in [-1, 1] where `mask` is True; known pixels
        are returned unchanged. method 'repaint' (jumps back up `jump` levels, `resample`
        times) or 'replace' (resample 1); `steps` levels (model.complete_steps). A conditional
        model uses `condition` with guidance w, or without labels its unconditional half."""
        method = method or self.cfg.complete_method
        if method not in ("repaint", "replace"):
            raise ConfigError(f"--method {method}: diffusion models take repaint or replace")
        steps = self._check_steps(steps or self.cfg.complete_steps, "--steps")
        jump = jump or self.cfg.repaint_jump
        resample = 1 if method == "replace" else resample or self.cfg.repaint_resample
        if jump < 1 or resample < 1:
            raise ConfigError(f"jump={jump}, resample={resample}: both must be >= 1")
        levels = repaint_levels(steps, jump, resample)
        mask = mask.expand_as(x)  # (N, C, H, W), from (N | 1, 1 | C, H, W)
        plan = ddim_plan(self.scheduler, steps, eta)
        unet = bare(self.nets["unet"])
        device = next(unet.parameters()).device
        w = 0.0 if condition is None else self._guidance(guidance)
        y = None if not self.num_classes else condition if condition is not None else \
            torch.full((x.shape[0],), self.null_class, dtype=torch.long)
        g = torch.Generator(device="cpu").manual_seed(seed)
        chunks = range(0, x.shape[0], batch_size)
        total = network_calls(levels) * len(chunks)
        with _evaluating(unet), _precision(device, precision), \
                self._bar(total, progress, method) as bar:
            filled = [inpaint(self._denoiser(unet, y, i, batch_size, w),
                              x[i : i + batch_size].to(device).float(),
                              mask[i : i + batch_size].to(device), plan, levels, g, bar)
                      for i in chunks]
        x_filled = torch.cat(filled)
        mask = mask.to(x_filled.device)
        return torch.where(mask, x_filled.clamp(-1, 1), x.to(x_filled.device))

    def export(self, folder: Path) -> None:
        """Write `folder` in diffusers' layout: unet/ (UNet2DModel) and scheduler/
        (DDPMScheduler). An unconditional model also gets model_index.json, so that
        DDPMPipeline.from_pretrained(folder) and DDIMPipeline.from_pretrained(folder) load it.
        Written under a temporary name and swapped in, like every checkpoint."""
        from diffusers import DDPMPipeline

        unet = bare(self.nets["unet"])
        folder = Path(folder)
        tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        if self.num_classes:  # diffusers has no class-conditional unet pipeline to name
            unet.save_pretrained(tmp / "unet")
            self.scheduler.save_pretrained(tmp / "scheduler")
        else:
            DDPMPipeline(unet=unet, scheduler=self.scheduler).save_pretrained(tmp)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------

    def _plan(self, scheduler: str | None, steps: int | None, eta: float | None) -> Plan:
        kind = scheduler or self.cfg.sampler
        if kind == "ddpm":
            if eta is not None:
                raise ConfigError("--eta applies only to --scheduler ddim")
            if steps is not None:
                self._check_steps(steps, "--steps")
            return ddpm_plan(self.scheduler, steps)  # all T steps by default
        if kind != "ddim":
            raise ConfigError(f"--scheduler {kind}: allowed values are ddim, ddpm")
        eta = self.cfg.eta if eta is None else eta
        if eta < 0:
            raise ConfigError(f"--eta {eta}: must be >= 0 (0 deterministic, 1 DDPM-like)")
        return ddim_plan(self.scheduler, self._check_steps(steps or self.cfg.sampling_steps,
                                                           "--steps"), eta)

    def _check_steps(self, steps: int, name: str) -> int:
        if not 1 <= steps <= self.cfg.timesteps:
            raise ConfigError(f"{name} {steps}: allowed are 1..{self.cfg.timesteps}")
        return steps

    def _guidance(self, guidance: float | None) -> float:
        if guidance is None:
            return self.cfg.guidance
        if not self.num_classes and guidance != 1.0:
            raise ConfigError("--guidance applies only to class-conditional models")
        if guidance < 0:
            raise ConfigError(f"--guidance {guidance}: must be >= 0 (0 unconditional, "
                              "1 conditional, > 1 stronger)")
        return float(guidance)

    def _labels(self, condition: torch.Tensor | None, n: int,
                g: torch.Generator | RowNoise) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if condition is None:
            if isinstance(g, RowNoise):
                return g.randint(self.num_classes)
            return torch.randint(0, self.num_classes, (n,), generator=g)
        return condition.long()

    def _denoiser(self, unet: torch.nn.Module, y: torch.Tensor | None, start: int,
                  batch_size: int, w: float) -> Denoiser:
        """(x_t, t) -> the guided prediction for images start..start+batch_size."""
        predict = self._predictor(unet, w)
        labels = None if y is None else \
            y[start : start + batch_size].to(next(unet.parameters()).device)  # (B,)
        return lambda x, t: predict(x, t, labels)

    def _predictor(self, unet: torch.nn.Module, w: float) -> Predictor:
        """(x_t, t, y) -> the guided prediction; t one timestep or one per row."""
        if not self.num_classes:  # an unconditional model
            return lambda x, t, y: unet(x, t, return_dict=False)[0]
        if w in (0.0, 1.0):  # one network call: the unconditional or the conditional half
            def one(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                single = torch.full_like(y, self.null_class) if w == 0.0 else y
                return unet(x, t, single, return_dict=False)[0]
            return one

        def guided(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            both = torch.cat([y, torch.full_like(y, self.null_class)])  # (2B,)
            t2 = torch.cat([t, t]) if t.dim() else t
            out = unet(torch.cat([x, x]), t2, both, return_dict=False)[0]  # (2B, C, H, W)
            cond, uncond = out.float().chunk(2)
            return uncond + w * (cond - uncond)  # eps(x) + w (eps(x, y) - eps(x))
        return guided

    @staticmethod
    def _bar(total: int, progress: bool | None, desc: str):
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True,
                    disable=None if progress is None else not progress)


class DiffusionSession:
    """Requests joining and leaving one reverse chain between its steps (see ChainRows)."""

    def __init__(self, objective: DiffusionObjective, chain: ChainRows,
                 unet: torch.nn.Module, precision: str | None) -> None:
        self.objective, self.chain, self.unet, self.precision = objective, chain, unet, precision

    @property
    def rows(self) -> int:
        return self.chain.rows

    def fits(self, **own: Any) -> bool:
        """Every request fits a chain (a text session may refuse a long prompt)."""
        return True

    def add(self, ticket: int, n: int, seed: int, condition: torch.Tensor | None,
            **own: Any) -> None:
        """n images from generator `seed`; `own` (a request's prompt) means nothing here."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        self.objective._join(self.chain, ticket, g, n, condition)

    def remove(self, ticket: int) -> None:
        self.chain.remove(ticket)

    @torch.inference_mode()
    def advance(self) -> list[tuple[int, torch.Tensor]]:
        """One step of every request; (ticket, images (n, C, H, W) in [-1, 1]) of those done."""
        device = next(self.unet.parameters()).device
        with _evaluating(self.unet), _precision(device, self.precision):
            return [(t, x.clamp(-1, 1)) for t, x in self.chain.advance()]


@contextlib.contextmanager
def _evaluating(net: torch.nn.Module) -> Iterator[None]:
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def _precision(device: torch.device, precision: str | None) -> contextlib.AbstractContextManager:
    """bf16 autocast, none ('fp32'), or the caller's (None). Entered once around a whole chain:
    leaving autocast drops its cache of bf16 weight copies, which would be made again per step."""
    if precision is None:
        return contextlib.nullcontext()
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision={precision!r}: allowed values are 'fp32', 'bf16'")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

