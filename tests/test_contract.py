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
    "fsdd": (1, 32),  # audio: 32 x 32 log-mel images
}


def fake_info(cfg) -> dict:
    """The data_info of the preset's data kind, made up: no data set is read."""
    if cfg.family == "ar":  # text: a char vocabulary and the window length
        from genforge.modalities.text.tokenizer import char_tokenizer

        tokenizer = char_tokenizer("abcdefgh ,.\n")
        return {"kind": "text", "dataset": cfg.data.dataset, "tokenizer_kind": "char",
                "tokenizer": tokenizer.to_str(), "vocab_size": tokenizer.get_vocab_size(),
                "block_size": cfg.data.block_size}
    if cfg.family == "series":  # a sine wave with the preset's lags and window
        rows = 6 * cfg.data.period + cfg.data.window
        history = (100 + 10 * torch.sin(torch.arange(rows) * 0.5)).tolist()
        return {"kind": "series", "columns": ["y"], "history": [[v] for v in history],
                "period": cfg.data.period, "lags": sorted({1, cfg.data.period}),
                "window": cfg.data.window, "transform": cfg.data.transform,
                "difference": cfg.data.difference, "mean": [0.0], "std": [1.0]}
    channels, size = INFO[cfg.data.dataset]
    return {"dataset": cfg.data.dataset, "channels": channels, "image_size": size,
            "num_classes": 10, "class_names": [str(i) for i in range(10)]}


def build(preset: str):
    cfg = tiny_config(preset)
    info = fake_info(cfg)
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
    if info.get("kind") == "text":  # windows of block_size + 1 token ids
        shape = (n, info["block_size"] + 1)
        return Batch(torch.randint(0, info["vocab_size"], shape, generator=g), None)
    if info.get("kind") == "series":  # windows with their lags, and each one's first row
        shape = (n, max(info["lags"]) + info["window"], len(info["columns"]))
        return Batch(torch.randn(shape, generator=g), torch.arange(n))
    c, s = info["channels"], info["image_size"]
    return Batch(torch.rand(n, c, s, s, generator=g) * 2 - 1, torch.arange(n) % 10)


def check_samples(x, info, n: int) -> None:
    if info.get("kind") == "text":
        assert isinstance(x, list) and len(x) == n and all(isinstance(t, str) for t in x)
        return
    if info.get("kind") == "series":  # paths (n, horizon, columns)
        assert x.shape[0] == n and x.shape[2] == len(info["columns"]) and x.isfinite().all()
        return
    assert x.shape == (n, info["channels"], info["image_size"], info["image_size"])
    assert x.min() >= -1 and x.max() <= 1


def same(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


# Tables presets build their objective from a fitted schema of real rows, which cannot be made
# up here; tests/test_tables.py runs the same contract on each synthesizer with a tiny table.
CONTRACT_PRESETS = [p for p in PRESETS if not p.startswith(("adult-", "german-credit-"))
                    and p != "tables"]


@pytest.mark.parametrize("preset", CONTRACT_PRESETS)
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
    labels = torch.arange(6) % 10 if "channels" in info else None
    x = objective.sample(6, seed=3, condition=labels)
    check_samples(x, info, 6)
    assert same(x, objective.sample(6, seed=3, condition=labels))
    assert not same(x, objective.sample(6, seed=4, condition=labels))

    # save/load round trip of the sampling nets gives the same samples
    state = flat_state({k: objective.nets[k] for k in objective.sampling_nets})
    _, _, fresh = build(preset)
    for name, sd in split_state(state, list(objective.sampling_nets)).items():
        fresh.nets[name].load_state_dict(sd)
    assert same(x, fresh.sample(6, seed=3, condition=labels))


def test_training_does_not_use_the_global_rng_when_sampling():
    _, _, objective = build("mnist-dcgan")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    objective.sample(4, seed=0)
    assert torch.equal(torch.rand(3), expected)
