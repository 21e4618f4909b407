"""The contract every family and preset keeps with the shared loop (DESIGN.md).

For each preset, on a tiny model: it builds, one step changes every trained net, save/load
round-trips exactly, samples have the right shape and range, and a seed fixes them.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from genforge.registry import FAMILIES, PRESETS
from genforge.training.checkpoint import flat_state, split_state
from genforge.training.contract import Batch, Objective, StepContext
from genforge.training.loop import make_schedule

from conftest import tiny_config

INFO = {  # what each preset's data set looks like, without reading it
    "mnist": (1, 28), "fashion-mnist": (1, 28), "cifar10": (3, 32),
}


def build(preset: str):
    cfg = tiny_config(preset)
    channels, size = INFO[cfg.data.dataset]
    info = {"dataset": cfg.data.dataset, "channels": channels, "image_size": size,
            "num_classes": 10, "class_names": [str(i) for i in range(10)]}
    torch.manual_seed(0)
    return cfg, info, FAMILIES[cfg.family].build(cfg.model, info)


def one_step(cfg, objective, batch: Batch, steps: int = 1) -> dict:
    accelerator = Accelerator(cpu=True)
    optimizers = objective.configure_optimizers(cfg.train)
    schedulers = {k: make_schedule(o, cfg.train) for k, o in optimizers.items()}
    ctx = StepContext(accelerator, optimizers, schedulers, objective.nets, None)
    logs = {}
    for i in range(steps):
        ctx.step = i
        logs = objective.training_step(batch, ctx)
    return logs


def fake_batch(info, n: int = 8) -> Batch:
    g = torch.Generator().manual_seed(1)
    c, s = info["channels"], info["image_size"]
    return Batch(torch.rand(n, c, s, s, generator=g) * 2 - 1, torch.arange(n) % 10)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_contract(preset):
    cfg, info, objective = build(preset)
    assert isinstance(objective, Objective)
    assert set(objective.sampling_nets) <= set(objective.nets)

    # one step (critic_steps of them, so that every player updates) changes every net
    before = {k: v.clone() for k, v in flat_state(objective.nets).items()}
    steps = getattr(cfg.model, "critic_steps", 1)
    logs = one_step(cfg, objective, fake_batch(info), steps=steps)
    assert logs and all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
    after = flat_state(objective.nets)
    for name in objective.nets:
        changed = [k for k in before if k.startswith(name + ".") and
                   before[k].is_floating_point() and not torch.equal(before[k], after[k])]
        assert changed, f"{preset}: a training step left {name} unchanged"

    # samples: shape, range, seeded
    labels = torch.arange(6) % 10
    x = objective.sample(6, seed=3, condition=labels)
    assert x.shape == (6, info["channels"], info["image_size"], info["image_size"])
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, objective.sample(6, seed=3, condition=labels))
    assert not torch.equal(x, objective.sample(6, seed=4, condition=labels))

    # save/load round trip of the sampling nets gives the same samples
    state = flat_state({k: objective.nets[k] for k in objective.sampling_nets})
    _, _, fresh = build(preset)
    for name, sd in split_state(state, list(objective.sampling_nets)).items():
        fresh.nets[name].load_state_dict(sd)
    assert torch.equal(x, fresh.sample(6, seed=3, condition=labels))


def test_training_does_not_use_the_global_rng_when_sampling():
    _, _, objective = build("mnist-dcgan")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    objective.sample(4, seed=0)
    assert torch.equal(torch.rand(3), expected)
