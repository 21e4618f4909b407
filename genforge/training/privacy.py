"""Differential privacy in the shared loop: DP-SGD (Abadi et al. 2016) through Opacus.

    g_i   = grad of loss(x_i)                          per-sample gradients (Opacus hooks)
    g~_i  = g_i * min(1, C / ||g_i||_2)                clipping to C = privacy.max_grad_norm
    g     = (sum_i g~_i + N(0, sigma^2 C^2 I)) / B     noise, sigma = privacy.noise_multiplier
    eps   = RDP accountant over the steps taken at sample rate q = B / n, converted at delta

Only the nets that see real records are privatised: an objective names them in
`private_nets` (a GAN: the discriminator; the generator learns only through the private
discriminator, so it is covered by post-processing). Without `private_nets` every trained net
is private. The accounting assumes Poisson sampling at rate q; genforge's batch streams draw
fixed-size batches (shuffled epochs for images and tables, random windows for text and series),
the usual practice, and every run record says so.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from genforge.config import PrivacyConfig  # defined there: config is the lowest layer
from genforge.errors import ConfigError

__all__ = ["PrivacyConfig", "PrivateTraining", "count_records", "solve_noise_multiplier", "start"]

# RDP orders: Opacus's defaults stop at 63, too low for the small noise multipliers of
# epsilon ~10 (it warns so); higher orders give a tighter, still valid bound
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [
    80, 96, 128, 192, 256, 384, 512, 1024]
SAMPLING = ("fixed-size batches (shuffled epochs, or random windows for text and series); "
            "the accountant assumes Poisson sampling at rate q = batch_size / records")


def count_records(data: Any) -> tuple[int, str]:
    """(n, what one record is): the data's `privacy_records()` if it has one, else len(data)."""
    if hasattr(data, "privacy_records"):
        n, unit = data.privacy_records()
        return int(n), str(unit)
    if hasattr(data, "__len__"):
        return len(data), "one training example"
    kind = data.info().get("kind", type(data).__name__)
    raise ConfigError(f"privacy: the {kind} data does not say how many records it has, so no "
                      "sample rate can be accounted; train without privacy.epsilon")


class PrivateTraining:
    """The DP-SGD side of one run: hooks on the private nets, DP optimizers, the accountant.

    Built by `start` before the optimizers exist; the loop then calls `wrap_optimizers`,
    `backward_for` (StepContext.update: only the updated net's per-sample gradients are taken),
    `epsilon`, `record`, and `state_dict` / `load_state_dict` with its checkpoints.
    """

    def __init__(self, cfg: PrivacyConfig, *, private: tuple[str, ...], public: tuple[str, ...],
                 hooks: dict[str, Any], records: int, unit: str, batch_size: int,
                 max_steps: int, noise_multiplier: float, fixed: dict[str, list[str]]) -> None:
        from opacus.accountants import create_accountant

        self.cfg, self.private, self.public, self.hooks = cfg, private, public, hooks
        self.records, self.unit, self.batch_size = records, unit, batch_size
        self.max_steps = max_steps
        self.sample_rate = batch_size / records
        self.noise_multiplier = noise_multiplier
        self.fixed = fixed  # net -> layers Opacus replaced (privacy.fix_modules)
        self.accountant = create_accountant(mechanism=cfg.accountant)
        self.optimizers: dict[str, Any] = {}

    def wrap_optimizers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """Each private net's optimizer as an Opacus DPOptimizer that clips, noises and counts."""
        from opacus.optimizers import DPOptimizer

        wrapped = dict(optimizers)
        for name in self.private:
            dp = DPOptimizer(optimizers[name], noise_multiplier=self.noise_multiplier,
                             max_grad_norm=self.cfg.max_grad_norm,
                             expected_batch_size=self.batch_size, loss_reduction="mean")
            dp.attach_step_hook(self.accountant.get_optimizer_hook_fn(self.sample_rate))
            wrapped[name] = self.optimizers[name] = dp
        return wrapped

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """No per-sample gradients for net `name` inside."""
        hooks = self.hooks.get(name)
        if hooks is None:
            yield
            return
        hooks.disable_hooks()
        try:
            yield
        finally:
            hooks.enable_hooks()

    @contextlib.contextmanager
    def backward_for(self, name: str) -> Iterator[None]:
        """A backward pass that updates net `name`: the other private nets' hooks are off (their
        weights are frozen then, and Opacus would look for activations they never stored)."""
        with contextlib.ExitStack() as stack:
            for other in self.hooks:
                if other != name:
                    stack.enter_context(self.paused(other))
            yield

    @property
    def steps(self) -> int:
        """Private optimizer steps taken (all private nets together)."""
        return sum(int(h[2]) for h in self.accountant.history)

    def epsilon(self) -> float:
        """The epsilon spent so far at `delta`."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():  # after a few steps the best RDP order is the
            warnings.simplefilter("ignore", UserWarning)  # largest: a valid, looser bound
            return float(self.accountant.get_epsilon(delta=self.cfg.delta, **_orders(self.cfg)))

    def projected_epsilon(self, steps: int) -> float:
        """What `steps` more private loop steps would bring the spent epsilon to."""
        from opacus.accountants import create_accountant

        future = create_accountant(mechanism=self.cfg.accountant)
        future.history = [*self.accountant.history, (self.noise_multiplier, self.sample_rate,
                                                     steps * len(self.private))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(future.get_epsilon(delta=self.cfg.delta, **_orders(self.cfg)))

    def record(self) -> dict[str, Any]:
        """What run.json, metrics.jsonl and the report state about the guarantee."""
        c = self.cfg
        return {
            "epsilon": self.epsilon(), "delta": c.delta, "epsilon_target": c.epsilon,
            "noise_multiplier": self.noise_multiplier, "max_grad_norm": c.max_grad_norm,
            "accountant": c.accountant, "sample_rate": self.sample_rate,
            "batch_size": self.batch_size, "records": self.records, "record_unit": self.unit,
            "private_steps": self.steps, "private_nets": list(self.private),
            "public_nets": list(self.public), "fixed_layers": self.fixed,
            "sampling": SAMPLING,
            "not_covered": "preprocessing fitted on the data (e.g. category lists, scaling "
                           "statistics, a tokenizer) is not privatised",
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: the accountant's history and the noise multiplier in use."""
        return {"noise_multiplier": self.noise_multiplier, "accountant": self.cfg.accountant,
                "history": [list(h) for h in self.accountant.history]}

    def load_state_dict(self, state: dict[str, Any], *, step: int) -> None:
        """Continue a run: its noise multiplier and spent budget, refusing to overspend."""
        if state["accountant"] != self.cfg.accountant:
            raise ConfigError(f"privacy.accountant={self.cfg.accountant!r}: this run was "
                              f"accounted with {state['accountant']!r}; keep it to resume")
        self.accountant.history = [tuple(h) for h in state["history"]]
        self.noise_multiplier = float(state["noise_multiplier"])  # the one the run started with
        for dp in self.optimizers.values():
            dp.noise_multiplier = self.noise_multiplier
        if self.cfg.epsilon is not None:
            projected = self.projected_epsilon(self.max_steps - step)
            if projected > self.cfg.epsilon * 1.001:
                raise ConfigError(
                    f"privacy.epsilon={self.cfg.epsilon}: resuming at step {step} to "
                    f"train.max_steps={self.max_steps} with the run's noise multiplier "
                    f"{self.noise_multiplier:.4g} would spend epsilon {projected:.3g}; keep "
                    "the max_steps the run started with or raise privacy.epsilon")


def start(cfg: PrivacyConfig, objective: Any, data: Any, *, batch_size: int, max_steps: int,
          grad_accum: int = 1, processes: int = 1, precision: str = "fp32") -> PrivateTraining:
    """Check the setting, hook the private nets (fixing layers if asked), solve sigma.

    Call before `objective.configure_optimizers` (a fixed net is a new module) and before the
    nets are prepared for a device.
    """
    records, unit = count_records(data)
    if cfg.delta >= 1 / records:
        raise ConfigError(f"privacy.delta={cfg.delta}: must be below 1 / records = "
                          f"{1 / records:.3g} ({records} records); 1e-5 or 1/(10 n) is usual")
    if processes > 1:
        raise ConfigError(f"privacy: {processes} processes; DP-SGD runs on one process here "
                          "(drop --processes)")
    if grad_accum != 1:
        raise ConfigError(f"train.grad_accum={grad_accum} with privacy: use 1 (per-sample "
                          "clipping needs each optimizer step to see one whole batch)")
    if precision != "fp32":
        raise ConfigError(f"train.precision={precision} with privacy: use fp32 or auto "
                          "(per-sample gradients and their clipping are checked in fp32 only)")
    if batch_size > records:
        raise ConfigError(f"train.batch_size={batch_size} exceeds the {records} records")
    if hasattr(objective, "check_privacy"):
        objective.check_privacy()  # a family refuses what it cannot privatise (one line)
    private = tuple(getattr(objective, "private_nets", tuple(objective.nets)))
    public = tuple(k for k in objective.nets if k not in private)
    hooks, fixed = {}, {}
    for name in private:
        net, fixed_layers = _compatible(objective, name, cfg.fix_modules)
        objective.nets[name] = net
        if fixed_layers:
            fixed[name] = fixed_layers
        hooks[name] = _attach(net)
    if hasattr(objective, "private"):
        objective.private = True  # e.g. a conditional GAN's generator stops reading real labels
    sigma = cfg.noise_multiplier
    if sigma is None:
        sigma = solve_noise_multiplier(cfg, sample_rate=batch_size / records,
                                       steps=max_steps * len(private))
    return PrivateTraining(cfg, private=private, public=public, hooks=hooks, records=records,
                           unit=unit, batch_size=batch_size, max_steps=max_steps,
                           noise_multiplier=float(sigma), fixed=fixed)


def solve_noise_multiplier(cfg: PrivacyConfig, *, sample_rate: float, steps: int) -> float:
    """The smallest sigma (to 0.01 in epsilon) whose `steps` steps spend at most cfg.epsilon."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():  # "optimal order is the largest alpha": still valid
            warnings.simplefilter("ignore", UserWarning)
            return float(get_noise_multiplier(
                target_epsilon=cfg.epsilon, target_delta=cfg.delta, sample_rate=sample_rate,
                steps=steps, accountant=cfg.accountant, epsilon_tolerance=0.01, **_orders(cfg)))
    except ValueError:  # opacus: "The privacy budget is too low."
        raise ConfigError(f"privacy.epsilon={cfg.epsilon}: unreachable with {steps} steps at "
                          f"sample rate {sample_rate:.3g} (the noise multiplier would pass "
                          "1e6); raise epsilon or lower train.max_steps / train.batch_size") \
            from None


def _orders(cfg: PrivacyConfig) -> dict[str, Any]:
    return {"alphas": RDP_ORDERS} if cfg.accountant == "rdp" else {}


def _compatible(objective: Any, name: str, fix: bool) -> tuple[nn.Module, list[str]]:
    """Net `name` as Opacus can privatise it, or a one-line refusal naming the layer."""
    from opacus.validators import ModuleValidator

    net = objective.nets[name]
    problems = _problems(net)
    if not problems:
        return net, []
    layer, kind = problems[0]
    if not fix:
        raise ConfigError(f"privacy: net {name!r} has layer {layer!r} ({kind}), which Opacus "
                          "cannot privatise (it needs per-sample gradients of plain layers); "
                          "set privacy.fix_modules=true to let Opacus replace it (BatchNorm -> "
                          "GroupNorm, MultiheadAttention -> DPMultiheadAttention), or use a "
                          "model without it")
    if name in getattr(objective, "sampling_nets", ()):
        raise ConfigError(f"privacy.fix_modules: net {name!r} samples, and its replaced layer "
                          f"{layer!r} ({kind}) would not load back into the configured model; "
                          "choose a model without it")
    fixed = ModuleValidator.fix(net)
    left = _problems(fixed)
    if left:
        layer, kind = left[0]
        raise ConfigError(f"privacy: net {name!r} layer {layer!r} ({kind}) cannot be "
                          "privatised, even with privacy.fix_modules; use a model without it")
    return fixed, [f"{layer} ({kind})" for layer, kind in problems]


def _problems(net: nn.Module) -> list[tuple[str, str]]:
    """(layer name, type) of each trainable layer Opacus refuses: a validator's verdict, or
    buffers (running statistics shared across samples)."""
    from opacus.utils.module_utils import trainable_modules
    from opacus.validators import ModuleValidator

    found = []
    for layer, module in trainable_modules(net):
        validator = ModuleValidator.VALIDATORS.get(type(module))
        if (validator is not None and validator(module)) or any(True for _ in module.buffers()):
            found.append((layer or "(the net itself)", type(module).__name__))
    return found


def _attach(net: nn.Module) -> Any:
    """Opacus per-sample gradient hooks on `net`, which stays the same module (its state_dict,
    methods and EMA are untouched); `.grad_sample` appears on its parameters after backward."""
    from opacus.grad_sample import GradSampleHooks

    # a frozen input (real images) makes torch warn that the hooks fire on outputs: expected
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    for module in net.modules():  # the hooks' outputs may not be changed in place
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # same values, one more tensor (LeakyReLU(0.2, True)...)
    return GradSampleHooks(net, batch_first=True, loss_reduction="mean", strict=True)
