"""Differential privacy in the shared loop: DP-SGD (Abadi et al. 2016) through Opacus.

    g_i   = grad of loss(x_i)                          per-sample gradients (Opacus hooks)
    g~_i  = g_i * min(1, C / ||g_i||_2)                clipping to C = privacy.max_grad_norm
    g     = (sum_i g~_i + N(0, sigma^2 C^2 I)) / B     noise, sigma = privacy.noise_multiplier
    eps   = RDP accountant over the steps taken at sample rate q = B / n, converted at delta

Only the nets that see real records are privatised: an objective names them in
`private_nets` (a GAN: the discriminator; the generator learns only through the private
discriminator and public noise, so it is covered by post-processing). Without `private_nets`
every trained net is private.

Sampling: the accountants (RDP, PRV) assume Poisson sampling, so every DP-SGD run draws it:
each record joins a step independently with probability q (genforge.data.batches.
poisson_indices, the draw of Opacus' UniformWithReplacementSampler, made inside genforge's own
resumable batch streams rather than through Opacus' DPDataLoader, which wraps a torch
DataLoader these streams do not use). Batch sizes are Binomial(n, q); a step whose batch is
empty still takes its noisy update (`empty_step`), as Opacus does.

One budget, itemised. Besides the SGD steps an objective may release statistics of the data
once, through `release_statistics(data, gaussian)` (CTGAN: the category counts its conditions
are drawn from); `gaussian` is a Gaussian mechanism with an explicit share of epsilon. The
data may carry `privacy_items` (DP preprocessing: {"step", "mechanism", "epsilon", "delta",
"detail"}). The total is one accountant's: every Gaussian mechanism (each release as a
sampled Gaussian with q = 1 and one step, then the SGD steps) is composed in RDP (or PRV) and
converted to (epsilon, delta) once; the (epsilon, delta) items of preprocessing are added to
that by basic composition, and their epsilon and delta are taken off the target first
(genforge/training/budget.py: the releases, the split, solving sigma).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genforge.config import PrivacyConfig  # defined there: config is the lowest layer
from genforge.errors import ConfigError
from genforge.training.budget import (
    RDP_ORDERS,
    Releases,
    left_for_gaussians,
    orders,
    solve_noise_multiplier,
)

__all__ = ["RDP_ORDERS", "PrivacyConfig", "PrivateTraining", "Releases", "count_records",
           "solve_noise_multiplier", "start"]

SAMPLING = "Poisson sampling: each record joins a step independently with probability q"


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
    `empty_step`, `epsilon`, `record`, and `state_dict` / `load_state_dict` with checkpoints.
    `self.accountant` holds the SGD steps (Opacus' step hook appends to it); `releases` and the
    data's `preprocessing` items are composed with them in `epsilon()`.
    """

    def __init__(self, cfg: PrivacyConfig, *, private: tuple[str, ...], public: tuple[str, ...],
                 hooks: dict[str, Any], records: int, unit: str, batch_size: int,
                 max_steps: int, noise_multiplier: float, fixed: dict[str, list[str]],
                 releases: Releases, preprocessing: list[dict[str, Any]],
                 assumptions: list[str], noise_seed: NoiseSeed) -> None:
        from opacus.accountants import create_accountant

        self.cfg, self.private, self.public, self.hooks = cfg, private, public, hooks
        self.records, self.unit, self.batch_size = records, unit, batch_size
        self.max_steps = max_steps
        self.sample_rate = batch_size / records  # q: each record's chance to join a step
        self.noise_multiplier = noise_multiplier
        self.fixed = fixed  # net -> layers Opacus replaced (privacy.fix_modules)
        self.accountant = create_accountant(mechanism=cfg.accountant)
        self.optimizers: dict[str, Any] = {}
        self.releases, self.preprocessing = releases, preprocessing
        self.noise_seed = noise_seed  # in the checkpoint only (state_dict), never the record
        self.assumptions = assumptions
        # the (epsilon, delta) of preprocessing come off the top; the Gaussian mechanisms get
        # the rest of delta (see the module docstring)
        self.gaussian_delta = cfg.delta - sum(float(i["delta"]) for i in preprocessing)

    def wrap_optimizers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """Each private net's optimizer as an Opacus DPOptimizer that clips, noises and counts.
        The noisy sum is divided by the expected batch size q n (Poisson batches vary)."""
        from opacus.optimizers import DPOptimizer

        wrapped = dict(optimizers)
        for name in self.private:
            dp = DPOptimizer(optimizers[name], noise_multiplier=self.noise_multiplier,
                             max_grad_norm=self.cfg.max_grad_norm,
                             expected_batch_size=self.batch_size, loss_reduction="mean")
            dp.attach_step_hook(self.accountant.get_optimizer_hook_fn(self.sample_rate))
            wrapped[name] = self.optimizers[name] = dp
        return wrapped

    def empty_step(self, name: str) -> None:
        """Before the optimizer step of private net `name` on an empty Poisson batch: zero
        per-sample gradients, so its DPOptimizer adds the noise alone (a step is still taken,
        and counted: skipping it would tell that the batch was empty)."""
        for p in self.optimizers[name].params:
            p.grad_sample = p.new_zeros((0, *p.shape))

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

    def _gaussian_epsilon(self, history: list[tuple[float, float, int]]) -> float:
        """The Gaussian mechanisms of `history`, composed by the accountant, at the delta
        left to them."""
        from opacus.accountants import create_accountant

        if not history:
            return 0.0
        accountant = create_accountant(mechanism=self.cfg.accountant)
        accountant.history = list(history)
        with warnings.catch_warnings():  # RDP: the best order is the largest (a valid,
            warnings.simplefilter("ignore", UserWarning)  # looser bound); PRV: log(0) of a
            warnings.simplefilter("ignore", RuntimeWarning)  # q = 1 release, masked by it
            return float(accountant.get_epsilon(delta=self.gaussian_delta, **orders(self.cfg)))

    def epsilon(self) -> float:
        """The total epsilon spent so far at `delta`: releases and SGD steps in one
        accountant, plus the preprocessing items."""
        spent = self._gaussian_epsilon([*self.releases.history, *self.accountant.history])
        return spent + sum(float(i["epsilon"]) for i in self.preprocessing)

    def projected_epsilon(self, steps: int) -> float:
        """What `steps` more private loop steps would bring the total epsilon to."""
        future = (self.noise_multiplier, self.sample_rate, steps * len(self.private))
        spent = self._gaussian_epsilon([*self.releases.history, *self.accountant.history,
                                        future])
        return spent + sum(float(i["epsilon"]) for i in self.preprocessing)

    def items(self) -> list[dict[str, Any]]:
        """Where epsilon went: {step, mechanism, epsilon, delta, detail, composition} each.
        A Gaussian item's epsilon is what it alone would spend at the same delta; composed
        in RDP they spend less than their sum (see `record()["total"]`)."""
        out = [{**i, "composition": "basic"} for i in self.preprocessing]
        for history, item in zip(self.releases.history, self.releases.items, strict=True):
            out.append({**item, "epsilon": self._gaussian_epsilon([history]),
                        "delta": self.gaussian_delta, "composition": self.cfg.accountant})
        c = self.cfg
        out.append({
            "step": "training (DP-SGD)",
            "mechanism": (f"sampled Gaussian: Poisson rate q {self.sample_rate:.4g}, noise "
                          f"multiplier {self.noise_multiplier:.4g}, clipping norm "
                          f"{c.max_grad_norm:.4g}, {self.steps} steps"),
            "epsilon": self._gaussian_epsilon(list(self.accountant.history)),
            "delta": self.gaussian_delta, "composition": c.accountant,
            "detail": f"per-sample clipped, noised gradients of {', '.join(self.private)}",
            "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
            "steps": self.steps})
        return out

    def record(self) -> dict[str, Any]:
        """What run.json, metrics.jsonl and the report state about the guarantee."""
        c = self.cfg
        total = self.epsilon()
        return {
            "epsilon": total, "delta": c.delta, "epsilon_target": c.epsilon,
            "noise_multiplier": self.noise_multiplier, "max_grad_norm": c.max_grad_norm,
            "accountant": c.accountant, "sample_rate": self.sample_rate,
            "batch_size": self.batch_size, "records": self.records, "record_unit": self.unit,
            "private_steps": self.steps, "private_nets": list(self.private),
            "public_nets": list(self.public), "fixed_layers": self.fixed,
            "sampling": f"{SAMPLING}, q = batch_size / records = {self.sample_rate:.4g}",
            "items": self.items(),
            "total": {"epsilon": total, "delta": c.delta, "composition": (
                f"the Gaussian mechanisms (releases and DP-SGD steps) composed by one "
                f"{c.accountant.upper()} accountant and converted to (epsilon, delta) once, at "
                f"delta {self.gaussian_delta:.3g}; (epsilon, delta) items of preprocessing "
                "added by basic composition")},
            "assumptions": self.assumptions,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: the accountant's history, the releases, the noise multiplier in use."""
        secret = self.noise_seed.source == SECRET_SEED
        return {"noise_multiplier": self.noise_multiplier, "accountant": self.cfg.accountant,
                "history": [list(h) for h in self.accountant.history],
                "releases": [list(h) for h in self.releases.history],
                "noise_seed": self.noise_seed.value if secret else None}

    def load_state_dict(self, state: dict[str, Any], *, step: int) -> None:
        """Continue a run: its noise multiplier and spent budget, refusing to overspend."""
        if state["accountant"] != self.cfg.accountant:
            raise ConfigError(f"privacy.accountant={self.cfg.accountant!r}: this run was "
                              f"accounted with {state['accountant']!r}; keep it to resume")
        self.accountant.history = [tuple(h) for h in state["history"]]
        # the releases were made again, from the same seeded noise, when the run was rebuilt
        self.releases.history = [tuple(h) for h in state.get("releases", [])]
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


SECRET_SEED = "secret"  # NoiseSeed.source of a seed from the secure source
SEED_BITS = 42


@dataclass(frozen=True)
class NoiseSeed:
    """The seed of a DP run's noise and where it came from (`source`: "secret",
    "privacy.noise_seed", or "train.seed" for a run checkpointed before secret seeds)."""

    value: int
    source: str

    def assumption(self) -> str:
        """The sentence the guarantee rests on, for run.json, the report and the CLI."""
        if self.source == SECRET_SEED:
            return ("the noise and the random draws come from a seed drawn from the operating "
                    "system's secure source, kept only in the run's checkpoint (state/): keep "
                    "state/ as private as the data")
        return (f"the noise and the random draws come from generators seeded by {self.source} "
                f"(replayable, not a cryptographic source): the guarantee assumes that number "
                "secret")


def noise_seed(cfg: PrivacyConfig, resume: str | Path | None, train_seed: int) -> NoiseSeed:
    """The seed of a DP run's noise: privacy.noise_seed if given; a resumed run's own (from its
    checkpoint, so that releases made again and the steps ahead continue the same noise);
    else a new one from the secure source."""
    if cfg.noise_seed is not None:
        return NoiseSeed(cfg.noise_seed, "privacy.noise_seed")
    if resume is not None:
        from genforge.training import checkpoint as ckpt

        folder = ckpt.state_dir(Path(resume))
        file = None if folder is None else folder / "trainer.json"
        if file is not None and file.exists():
            saved = json.loads(file.read_text()).get("privacy") or {}
            if saved.get("noise_seed") is not None:
                return NoiseSeed(int(saved["noise_seed"]), SECRET_SEED)
            return NoiseSeed(train_seed, "train.seed")  # checkpointed before secret seeds
    # 42 bits: the streams derive their generators' seeds as seed x 1,000,003 + k, which must
    # stay within torch's 63; 4.4e12 seeds, each to be tried by replaying the whole training
    return NoiseSeed(secrets.randbits(SEED_BITS), SECRET_SEED)


def start(cfg: PrivacyConfig, objective: Any, data: Any, *, batch_size: int, max_steps: int,
          grad_accum: int = 1, processes: int = 1, precision: str = "fp32",
          seed: NoiseSeed | None = None,
          grad_clip: float | None = None) -> PrivateTraining:
    """Check the setting, hook the private nets (fixing layers if asked), make the objective's
    releases, solve sigma for what is left of the budget.

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
    if "sample_rate" not in inspect.signature(data.stream).parameters:
        kind = data.info().get("kind", type(data).__name__)
        raise ConfigError(f"privacy: the {kind} data's batch stream cannot draw Poisson "
                          "samples (stream(sample_rate=...)), which the accountant assumes")
    if hasattr(objective, "check_privacy"):
        objective.check_privacy()  # a family refuses what it cannot privatise (one line)
    preprocessing = [dict(i) for i in getattr(data, "privacy_items", [])]
    gaussian_epsilon, gaussian_delta = left_for_gaussians(cfg, preprocessing)
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
    seed = seed or NoiseSeed(0, "the default seed 0")
    releases = Releases(cfg, epsilon=gaussian_epsilon, delta=gaussian_delta, seed=seed.value)
    if hasattr(objective, "release_statistics"):
        objective.release_statistics(data, releases.gaussian)  # e.g. CTGAN's category counts
    sigma = cfg.noise_multiplier
    if sigma is None:
        sigma = solve_noise_multiplier(cfg, sample_rate=batch_size / records,
                                       steps=max_steps * len(private), prior=releases.history,
                                       epsilon=gaussian_epsilon, delta=gaussian_delta)
    return PrivateTraining(cfg, private=private, public=public, hooks=hooks, records=records,
                           unit=unit, batch_size=batch_size, max_steps=max_steps,
                           noise_multiplier=float(sigma), fixed=fixed, releases=releases,
                           preprocessing=preprocessing, noise_seed=seed,
                           assumptions=_assumptions(data, batch_size / records, grad_clip,
                                                    seed))


def _assumptions(data: Any, sample_rate: float, grad_clip: float | None,
                 seed: NoiseSeed) -> list[str]:
    """What the number rests on, in words, for run.json, the report and the CLI."""
    out = [f"Poisson sampling at rate q = {sample_rate:.4g} (each record joins each step "
           "independently)",
           "one record is one " + count_records(data)[1].removeprefix("one "),
           seed.assumption(),
           "training losses and gradient norms, computed on the private records without "
           "noise, are neither logged nor plotted"]
    if grad_clip is not None:
        out.append(f"train.grad_clip={grad_clip} is not applied: DP-SGD's per-sample "
                   "clipping (privacy.max_grad_norm) replaces it")
    leaks = data.info().get("leaks")  # the data kind's own account (tables), else in general
    out.append(f"not privatised: {leaks}" if leaks else
               "not privatised: what the data kind fits on the records outside DP-SGD (a "
               "tokenizer's vocabulary, series scaling statistics; image scaling is fixed)")
    out.append("evaluation statistics computed on the training records (genforge eval's "
               "distances to training samples, train-on-real scores) are not privatised")
    return out


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
