"""The contract between a model family and the shared loop (see DESIGN.md).

A family's objective owns its networks and losses and steps its own players; the loop owns the
device, precision, gradient accumulation, clipping, EMA, checkpoints, logs and progress. The loop
never asks which family it is running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from accelerate.utils import DistributedType
from torch import nn

from genforge.config import TrainConfig
from genforge.data.batches import Batch

__all__ = ["Batch", "Objective", "StepContext", "TrainingData", "bare"]


@runtime_checkable
class Objective(Protocol):
    """What a family offers the loop."""

    nets: dict[str, nn.Module]  # every trained network, by name; the loop may wrap them (DDP)
    sampling_nets: tuple[str, ...]  # the nets needed to sample: saved in model.safetensors, EMA'd
    # Optional, for DP-SGD (training/privacy.py): `private_nets`, the nets whose gradients read
    # real records (default: all of `nets`); `private`, set True when DP-SGD is on; and
    # `check_privacy()`, raising a one-line ConfigError for a setting the family cannot privatise

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]: ...

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, float]: ...

    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None) -> Any:
        """n samples; images are (n, C, H, W) in [-1, 1]; `condition` holds class labels (n,).

        A family may accept more keyword options (a sampler, a prompt, ...): the CLI passes
        those it is given, and refuses options a family's `sample` does not name.
        Optional methods: `complete(x, mask, *, seed, ...)`, `export(folder)` (write the
        sampling weights in another library's format), `token_logprobs(ids)` (text). How
        samples are decoded and written is the modality's (genforge.modalities.base).
        """
        ...


@runtime_checkable
class TrainingData(Protocol):
    """What the loop asks of a data kind (images, text, series); see ImageData for one."""

    def info(self) -> dict[str, Any]:
        """Plain facts the model is built from and saved with (channels, vocabulary, ...)."""
        ...

    def stream(self, *, batch_size: int, seed: int, rank: int, world: int,
               device: torch.device, sample_rate: float | None = None) -> Any:
        """A resumable batch source: next(micro) -> list[Batch], state_dict, load_state_dict.
        With `sample_rate` q (DP-SGD) each step is a Poisson sample: every record joins it
        independently with probability q (genforge.data.batches.poisson_indices)."""
        ...

    def preview_condition(self, n: int) -> torch.Tensor | None: ...

    def write_samples(self, samples: Any, stem: Any) -> Any:
        """Write what `Objective.sample` returned next to `stem` (a .png grid, a .txt, ...)."""
        ...


class StepContext:
    """Handed to `training_step`: how a family updates a player without knowing the setup.

    `update(name, loss)` back-propagates (scaled for accumulation), and on the last micro-batch of
    a step clips, steps the optimizer and its schedule, and clears the gradients.
    """

    def __init__(self, accelerator: Any, optimizers: dict, schedulers: dict,
                 nets: dict[str, nn.Module], grad_clip: float | None, *,
                 privacy: Any = None) -> None:
        self.accelerator = accelerator
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.nets = nets
        self.grad_clip = grad_clip
        self.privacy = privacy  # training.privacy.PrivateTraining under DP-SGD, else None
        self.step = 0  # optimizer updates done before this one
        self.grad_norms: dict[str, Any] = {}  # the last step's (tensors), read when logged

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def update(self, name: str, loss: torch.Tensor) -> None:
        accelerator = self.accelerator
        if self.privacy is None:
            accelerator.backward(loss)
        else:  # only `name`'s own per-sample gradients are taken (a GAN generator's loss also
            with self.privacy.backward_for(name):  # runs back through the discriminator)
                accelerator.backward(loss)
        if not accelerator.sync_gradients:
            return  # accumulate: the optimizer steps on the last micro-batch
        self._step(name)

    def noise_only(self) -> None:
        """DP-SGD on an empty Poisson batch: each private net steps on its noise alone."""
        for name in self.privacy.private:
            self.privacy.empty_step(name)
            self._step(name)

    def _step(self, name: str) -> None:
        accelerator = self.accelerator
        optimizer = self.optimizers[name]
        # under DP-SGD per-sample clipping replaces grad_clip, and the norm of the noise-free
        # gradient is not taken (it would be logged without privacy)
        if self.grad_clip is not None and self.privacy is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            norm = accelerator.clip_grad_norm_(params, self.grad_clip)
            self.grad_norms[name] = norm  # float() only when a line is written: on a GPU
            # a float() every step would wait for the device (a host sync)
        if accelerator.scaler is None and accelerator.distributed_type == DistributedType.NO:
            # What AcceleratedOptimizer.step does for one process without a grad scaler, minus
            # its two importlib lookups of the optional lomo_optim package per call (~0.4 ms a
            # step on a CPU); with several processes accelerate's own step is kept
            getattr(optimizer, "optimizer", optimizer).step()
        else:
            optimizer.step()
        self.schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def frozen(self, name: str) -> Iterator[nn.Module]:
        """The bare net `name` with its weights frozen: gradients flow through it to its input.

        Used where one player's loss passes through another (a GAN generator's loss through the
        discriminator): the other's gradients must not change, and under DDP the bare module
        keeps its reducer out of a backward that gives its weights no gradient.
        """
        net = self.accelerator.unwrap_model(self.nets[name])
        flags = [p.requires_grad for p in net.parameters()]
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            yield net  # (under DP-SGD, a frozen net stores no activations for its hooks)
        finally:
            for p, flag in zip(net.parameters(), flags, strict=True):
                p.requires_grad_(flag)


def bare(net: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (for sampling on one process), else `net` itself."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
