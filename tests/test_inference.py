"""The Sampler contract (genforge.inference.sampler): what each objective declares it offers
at sampling time is what its methods implement, and the engines ask the declaration.

The declarations are checked here against the methods themselves (their signatures): the
engines never probe, so this is where a declaration that drifted from its code is caught.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from genforge.errors import ConfigError
from genforge.families.ar.pretrained import PretrainedObjective
from genforge.inference.sampler import CAPABILITIES, check_options, declared
from genforge.modalities.base import resolve
from genforge.registry import FAMILIES

from conftest import tiny_config


def objective_classes() -> list[tuple[str, type]]:
    """(family, class) of every objective a family builds: its class, or each class of a
    family whose constructor picks one by `model.kind` (its module's KINDS)."""
    out = []
    for name, spec in sorted(FAMILIES.items()):
        built = resolve(spec.objective)
        if isinstance(built, type):
            out.append((name, built))
        else:
            kinds = importlib.import_module(built.__module__).KINDS
            out += [(name, resolve(target)) for target in sorted(set(kinds.values()))]
    return [*out, ("ar", PretrainedObjective)]  # a transformers folder's


CLASSES = objective_classes()


def params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters) - {"self"}


def implemented(cls: type) -> set[str]:
    """The capabilities the methods of `cls` implement, read from them (the vocabulary's
    meanings, genforge.inference.sampler.CAPABILITIES)."""
    sample = params(cls.sample)
    words = {"sample"}
    words |= {"merge"} if {"noise", "pad_to"} <= sample else set()
    words |= {"stream"} if "on_text" in sample else set()
    words |= {"logits"} if "logits_processors" in sample else set()
    words |= {"step"} if hasattr(cls, "sampling_session") else set()
    words |= {"token_logprobs"} if hasattr(cls, "token_logprobs") else set()
    words |= {"chunks"} if hasattr(cls, "iter_sample") else set()
    if hasattr(cls, "complete"):  # pixels (x, mask) or a table's rows (frame)
        words |= {"complete"} if "mask" in params(cls.complete) else {"complete_rows"}
    return words


@pytest.mark.parametrize(("family", "cls"), CLASSES, ids=[c.__name__ for _, c in CLASSES])
def test_declared_capabilities_are_what_the_methods_implement(family, cls):
    assert set(cls.capabilities) <= set(CAPABILITIES)
    assert set(cls.capabilities) == implemented(cls)


@pytest.mark.parametrize(("family", "cls"), CLASSES, ids=[c.__name__ for _, c in CLASSES])
def test_declared_options_and_keywords_are_the_signature(family, cls):
    """sample's keywords = the family's options + the objective's own keywords + those its
    capabilities bring; the same for complete (and iter_sample takes sample's options)."""
    spec = FAMILIES[family]
    options = {o.name for o in spec.sample_options}
    brought = ({"noise", "pad_to"} if "merge" in cls.capabilities else set()) | \
        ({"on_text"} if "stream" in cls.capabilities else set()) | \
        ({"logits_processors"} if "logits" in cls.capabilities else set())
    assert params(cls.sample) - {"n", "seed", "condition"} == \
        options | set(cls.sample_keywords) | brought
    if "chunks" in cls.capabilities:
        assert params(cls.iter_sample) - {"n", "seed", "chunk"} == options
    if "complete" in cls.capabilities:
        assert params(cls.complete) - {"x", "mask", "seed", "condition"} == \
            {o.name for o in spec.complete_options} | set(cls.complete_keywords)
    if "complete_rows" in cls.capabilities:
        assert params(cls.complete) - {"frame", "seed"} == \
            {o.name for o in spec.complete_options} | set(cls.complete_keywords)
    assert spec.can_complete == bool({"complete", "complete_rows"} & cls.capabilities)


def test_an_unknown_capability_is_refused():
    class Odd:
        capabilities = frozenset({"sample", "teleport"})

    with pytest.raises(ConfigError, match="unknown \\['teleport'\\]"):
        declared(Odd())
    with pytest.raises(ConfigError, match="declares no `capabilities`"):
        declared(object())


def test_options_are_refused_by_the_declarations_with_the_old_messages():
    """The messages once made from the signatures: the unknown option as a flag, and the
    options the family takes (the signature's, less the engines' keywords)."""
    from genforge.families.diffusion.objective import DiffusionObjective
    from genforge.families.gan.objective import GANObjective

    with pytest.raises(ConfigError) as err:
        check_options(GANObjective.__new__(GANObjective), FAMILIES["gan"], "sample",
                      {"prompt": "x"})
    assert str(err.value) == "--prompt does not apply to gan models"
    diffusion = DiffusionObjective.__new__(DiffusionObjective)
    with pytest.raises(ConfigError) as err:
        check_options(diffusion, FAMILIES["diffusion"], "sample", {"top_k": 3})
    # by hand from DiffusionObjective.sample's signature before the contract
    assert str(err.value) == ("--top-k does not apply to diffusion models; they take eta, "
                              "guidance, precision, progress, scheduler, steps")
    check_options(diffusion, FAMILIES["diffusion"], "sample", {"steps": 3, "noise": None})
    with pytest.raises(ConfigError, match="--eta-x does not apply to diffusion models; they "
                       "take eta, guidance, jump, method, precision, progress, resample, "
                       "steps$"):
        check_options(diffusion, FAMILIES["diffusion"], "complete", {"eta_x": 1})


def test_a_model_asks_its_declaration():
    """A tiny GAN built from its preset: the engines' questions answered by `can`."""
    import torch

    from genforge.api import GenerativeModel

    cfg = tiny_config("mnist-dcgan")
    info = {"dataset": "mnist", "channels": 1, "image_size": 28, "num_classes": 10,
            "class_names": [str(i) for i in range(10)]}
    torch.manual_seed(0)
    model = GenerativeModel(cfg, FAMILIES["gan"].build(cfg.model, info), info, 0,
                            Path("tiny-run"))
    assert model.can("merge") and model.merges_requests and model.has_sessions
    assert not model.can("step") and not model.can("complete")
    with pytest.raises(ConfigError, match="cannot complete images"):
        model.complete(torch.zeros((1, 1, 28, 28), dtype=torch.uint8), "center")
    with pytest.raises(ConfigError, match="streaming applies to text models only"):
        next(model.stream_text())
    with pytest.raises(ConfigError, match="do not come in chunks"):
        next(model.sample_chunks(3))
    with pytest.raises(ConfigError, match="watermarked when its samples are written"):
        model.sample(1, watermark="k")
