"""The Sampler contract: what an objective offers at sampling time, declared, never probed.

Training asks an objective for `configure_optimizers` and `training_step`
(genforge.training.contract); sampling asks it for `sample` and whatever else it declares in
`capabilities`, a frozenset of words from `CAPABILITIES`. The engines (genforge.api,
genforge.inference, the server) ask `model.can(word)` instead of `hasattr` or a signature;
tests/test_inference.py checks that each objective's declaration is what its methods
implement, so that a declaration cannot drift from the code.

The keywords an objective's `sample` (or `complete`) takes are its family's declared options
(`FamilySpec.sample_options` / `complete_options`) plus those it lists in `sample_keywords`
(`complete_keywords`): keywords for the engines and for Python callers, not CLI or HTTP
options (a batch size, a series' history, a progress bar).
"""

from __future__ import annotations

from typing import Any, Protocol

from genforge.errors import ConfigError

CAPABILITIES = {
    "sample": "sample(n, *, seed, condition=None, **options): n samples of the modality",
    "merge": "sample takes noise= (genforge.runtime.noise.RowNoise: each request's own "
             "generator) and pad_to= (fixed-shape chunks): seeded requests share one pass "
             "bit for bit",
    "step": "sampling_session(size=, **options): a session whose requests join and leave "
            "between steps (add, remove, advance, rows)",
    "stream": "sample takes on_text=: the first sample's text, piece by piece",
    "logits": "sample takes logits_processors= (e.g. the text watermark, while sampling)",
    "token_logprobs": "token_logprobs(ids): log p(x_t | x_<t) of each token",
    "complete": "complete(x, mask, *, seed, condition=None, **options): fills the masked "
                "pixels of images in the model's range",
    "complete_rows": "complete(values, *, seed): fills the empty cells of rows (the "
                     "modality's read_cells; a table's DataFrame), given cells unchanged",
    "chunks": "iter_sample(n, *, seed, chunk=None, **options): samples chunk by chunk",
}

# keywords the engines pass themselves, never listed as a family's options in messages
ENGINE_KEYWORDS = frozenset({"n", "seed", "condition", "batch_size", "x", "mask", "on_text",
                             "history", "logits_processors", "noise", "pad_to"})


class Sampler(Protocol):
    """What a model's objective offers at sampling time (besides training's contract)."""

    capabilities: frozenset[str]  # words of CAPABILITIES; "sample" always
    sampling_nets: tuple[str, ...]  # the nets a run folder keeps
    nets: dict[str, Any]  # name -> torch.nn.Module
    sample_keywords: tuple[str, ...]  # keywords of `sample` besides the family's options
    complete_keywords: tuple[str, ...]  # the same for `complete` (where declared)
    # optional, read with defaults: num_classes (0: not conditional), tokenizer (text), and
    # sample_options (names: the family's options this kind takes, where kinds differ)

    def sample(self, n: int, *, seed: int, condition: Any = None, **options: Any) -> Any: ...


def declared(objective: Any) -> frozenset[str]:
    """The capabilities `objective` declares, checked against the vocabulary."""
    if not hasattr(type(objective), "capabilities"):  # a plug-in family written before them
        raise ConfigError(f"{type(objective).__name__}: declares no `capabilities` (a "
                          "frozenset of genforge.inference.sampler.CAPABILITIES)")
    words = frozenset(type(objective).capabilities)
    unknown = sorted(words - set(CAPABILITIES))
    if unknown:
        raise ConfigError(f"{type(objective).__name__}.capabilities: unknown {unknown}; "
                          f"the words are {', '.join(CAPABILITIES)}")
    return words


def check_options(objective: Any, family: Any, method: str, options: dict[str, Any]) -> None:
    """Refuse options that `method` ("sample", "complete"; sample_chunks takes sample's) of
    this family's objective does not take, naming them and those it takes. `family` is its
    FamilySpec."""
    names = family.complete_options if method == "complete" else family.sample_options
    keywords = objective.complete_keywords if method == "complete" else \
        objective.sample_keywords
    accepted = {o.name for o in names} | set(keywords) | _engine(objective, method)
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = sorted(accepted - ENGINE_KEYWORDS)
        flags = ", ".join("--" + u.replace("_", "-") for u in unknown)
        raise ConfigError(f"{flags} does not apply to {family.name} models"
                          + (f"; they take {', '.join(allowed)}" if allowed else ""))


def _engine(objective: Any, method: str) -> set[str]:
    """The keywords of `method` that a declared capability brings."""
    if method != "sample":
        return set()
    words = declared(objective)
    return ({"noise", "pad_to"} if "merge" in words else set()) | \
        ({"on_text"} if "stream" in words else set()) | \
        ({"logits_processors"} if "logits" in words else set())


def taken_options(objective: Any, family: Any) -> list[Any]:
    """The family's sample options (genforge.options.Option) this objective takes: all, or
    those it names in `sample_options` (a family whose kinds differ: only TabDDPM of the
    tables synthesizers takes a temperature)."""
    narrowed = getattr(objective, "sample_options", None)  # a declared narrowing, optional
    return [o for o in family.options() if narrowed is None or o.name in narrowed]
