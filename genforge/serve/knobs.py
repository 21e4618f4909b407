"""The knobs each served model takes: names, types, ranges and defaults.

`GET /v1/models` lists them, the web page builds its forms from them and every request is
checked against them before it reaches `GenerativeModel.sample`. They come from the registry's
per-family sample options (`FamilySpec.sample_options`) where the registry has them; until then
from the small table in `_derived_options`, the one place to switch over.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genforge.errors import ConfigError


@dataclass(frozen=True)
class Knob:
    """One option of `sample` (or `complete`): what a form field and a JSON property need."""

    name: str
    type: str  # "int" | "float" | "str" | "bool" | "enum" | "str_list"
    help: str
    default: Any = None  # None: the model's own default
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "default"}


def modality_of(model: Any) -> str:
    """The model's modality: `.modality` once the API has it, else its data's kind."""
    return getattr(model, "modality", None) or model.data_info.get("kind", "images")


def family_of(model: Any) -> str:
    family = getattr(model, "family", None)
    if family:
        return family
    cfg = getattr(model, "config", None)
    return cfg.family if cfg is not None else "ar"  # a transformers folder is a text model


def sample_knobs(model: Any, caps: Any) -> list[Knob]:
    """Every knob of `POST /v1/generate` for `model`, n and seed first; `caps` bounds them."""
    knobs = [Knob("n", "int", "number of samples", 1 if modality_of(model) == "text" else 16,
                  1, caps.max_n),
             Knob("seed", "int", "random seed; the same seed gives the same samples", None,
                  0, 2**63 - 1)]
    classes = getattr(model, "num_classes", 0)
    if classes:
        knobs.append(Knob("label", "int", "class label (one for all samples); empty: random",
                          None, 0, classes - 1))
    return knobs + _family_options(model, caps, "sample")


def complete_knobs(model: Any, caps: Any) -> list[Knob]:
    """The knobs of `POST /v1/complete` besides the uploads (empty: cannot complete)."""
    return _family_options(model, caps, "complete")


def _family_options(model: Any, caps: Any, verb: str) -> list[Knob]:
    options = getattr(model, "options", None)
    if verb == "sample" and callable(options):  # the registry's SAMPLE_OPTIONS, via the API
        knobs = [_from_registry(o, model, caps) for o in options()]
        if modality_of(model) == "text":
            knobs.append(Knob("stream", "bool", "send tokens as server-sent events", False))
        return knobs
    return _derived_options(model, caps, verb)


# the model-config field that holds an option's default, where the names differ
DEFAULT_FIELD = {"steps": "sampling_steps", "scheduler": "sampler"}
TYPES = {int: "int", float: "float", str: "str", bool: "bool", list: "str_list"}


# Server-side lower bounds tighter than the registry's: values the registry allows but that
# make sampling divide by ~0 (NaN probabilities): a repetition penalty of 1e-300, say.
FLOOR = {"repetition_penalty": 0.01}
GREEDY_BELOW = 1e-3  # a temperature in (0, 1e-3) is refused: 0 means greedy


def floor_of(name: str) -> float | None:
    return FLOOR.get(name)


def cap_of(name: str, caps: Any) -> float | None:
    """The server's own bound on an option (None: the registry's range alone)."""
    return {"steps": caps.max_steps, "max_new_tokens": caps.max_new_tokens,
            "horizon": caps.max_horizon, "length": caps.max_horizon,
            "prompt": caps.max_prompt}.get(name)


def _from_registry(option: Any, model: Any, caps: Any) -> Knob:
    m = getattr(getattr(model, "config", None), "model", None)
    default = getattr(m, DEFAULT_FIELD.get(option.name, option.name), None)
    kind = "enum" if option.choices else TYPES.get(option.type, "str")
    high = option.maximum
    cap = cap_of(option.name, caps) if kind in ("int", "float") else None
    if cap is not None:
        high = cap if high is None else min(high, cap)
    if option.name == "steps" and getattr(m, "timesteps", None):
        high = min(high or m.timesteps, m.timesteps)
    if isinstance(default, int | float) and not isinstance(default, bool) and high is not None:
        default = min(default, high)
    low = option.minimum if floor_of(option.name) is None else floor_of(option.name)
    return Knob(option.name, kind, option.help, default, low, high,
                tuple(option.choices) or None)


def _derived_options(model: Any, caps: Any, verb: str) -> list[Knob]:
    """Per family, the options its objective's `sample`/`complete` take, with the run's
    defaults (model config) and the server's caps as bounds."""
    family, m = family_of(model), getattr(getattr(model, "config", None), "model", None)

    def default(name: str) -> Any:
        return getattr(m, name, None)

    if family == "diffusion" and verb == "sample":
        t = default("timesteps") or 1000
        return [Knob("scheduler", "enum", "sampler", default("sampler"), choices=("ddim", "ddpm")),
                Knob("steps", "int", "denoising steps", default("sampling_steps"), 1,
                     min(t, caps.max_steps)),
                Knob("eta", "float", "DDIM eta: 0 deterministic, 1 DDPM-like", default("eta"),
                     0.0, 1.0),
                *([Knob("guidance", "float", "classifier-free guidance w", default("guidance"),
                        0.0, 20.0)] if getattr(model, "num_classes", 0) else [])]
    if family == "diffusion":
        t = default("timesteps") or 1000
        return [Knob("method", "enum", "inpainting method", default("complete_method"),
                     choices=("repaint", "replace")),
                Knob("steps", "int", "levels", default("complete_steps"), 1,
                     min(t, caps.max_steps))]
    if family == "vae" and verb == "complete":
        return [Knob("method", "enum", "inpainting method", default("complete_method"),
                     choices=("optimize", "iterate")),
                Knob("steps", "int", "optimizer or chain steps", default("complete_steps"), 1,
                     caps.max_steps)]
    if family == "ar" and verb == "sample":
        return [Knob("prompt", "str", "text to continue", default("prompt") or ""),
                Knob("max_new_tokens", "int", "tokens to add", min(default("max_new_tokens")
                                                                   or 64, caps.max_new_tokens),
                     1, caps.max_new_tokens),
                Knob("temperature", "float", "0 greedy; higher more random",
                     default("temperature"), 0.0, 5.0),
                Knob("top_k", "int", "keep the k likeliest tokens", default("top_k"), 1, 100000),
                Knob("top_p", "float", "nucleus: keep tokens up to this mass", default("top_p"),
                     0.01, 1.0),
                Knob("repetition_penalty", "float", "CTRL penalty (1 off)",
                     default("repetition_penalty"), 0.5, 5.0),
                Knob("stop", "str_list", "strings that end a text", None),
                Knob("stream", "bool", "send tokens as server-sent events", False)]
    if family == "series" and verb == "sample":
        return [Knob("horizon", "int", "steps ahead", default("horizon"), 1, caps.max_horizon)]
    return []


def check_options(knobs: list[Knob], given: dict[str, Any], family: str) -> None:
    """Refuse options this model does not take and values outside their knob's range, naming
    the field (a ConfigError whose first word is the field)."""
    table = {k.name: k for k in knobs}
    for name, value in given.items():
        knob = table.get(name)
        if knob is None:
            takes = ", ".join(sorted(table)) or "no options"
            raise ConfigError(f"{name}: does not apply to this {family} model; it takes {takes}")
        if knob.choices is not None and value not in knob.choices:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(knob.choices)}")
        if name == "temperature" and 0 < value < GREEDY_BELOW:
            raise ConfigError(f"temperature: {value} is too small; use 0 (greedy) or at least "
                              f"{GREEDY_BELOW}")
        values = value if isinstance(value, list) else [value]  # a label may be one per sample
        for v in values if knob.type in ("int", "float") else []:
            if knob.minimum is not None and v < knob.minimum:
                raise ConfigError(f"{name}: {v} is below the minimum {knob.minimum}")
            if knob.maximum is not None and v > knob.maximum:
                raise ConfigError(f"{name}: {v} is above the maximum {knob.maximum}")
