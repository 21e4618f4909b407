"""The knobs each served model takes: names, types, ranges and defaults.

`GET /v1/models` lists them, the web page builds its forms from them and every request is
checked against them before it reaches `GenerativeModel.sample`. They are the options the
model's family declares (`FamilySpec.sample_options`, `.complete_options`, less those its kind
does not take), with the run's defaults and their ranges narrowed by the server's caps; a
value is checked by the option itself (`Option.check`), as the CLI checks its flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from genforge.errors import ConfigError
from genforge.options import Option

TYPES = {int: "int", float: "float", str: "str", bool: "bool", list: "str_list"}

# Server-side lower bounds tighter than the families' ranges: values a family allows but that
# make sampling divide by ~0 (NaN probabilities): a repetition penalty of 1e-300, say.
FLOOR = {"repetition_penalty": 0.01}
GREEDY_BELOW = 1e-3  # a temperature in (0, 1e-3) is refused: 0 means greedy


@dataclass(frozen=True)
class Knob:
    """One option of `sample` (or `complete`) as this server takes it for one model: what a
    form field and a JSON property need."""

    option: Option  # the family's, its range narrowed by the run and the server's caps
    default: Any = None  # None: the model's own default

    @property
    def name(self) -> str:
        return self.option.name

    def as_dict(self) -> dict[str, Any]:
        o = self.option
        kind = "enum" if o.choices else TYPES.get(o.type, "str")
        facts = {"name": o.name, "type": kind, "help": o.help, "default": self.default,
                 "minimum": o.minimum, "maximum": o.maximum, "choices": o.choices or None}
        return {k: v for k, v in facts.items() if v is not None or k == "default"}

    def check(self, value: Any) -> None:
        """A ConfigError whose first word is the field, where `value` is not taken."""
        if self.name == "temperature" and isinstance(value, float) and 0 < value < GREEDY_BELOW:
            raise ConfigError(f"temperature: {value} is too small; use 0 (greedy) or at least "
                              f"{GREEDY_BELOW}")
        for v in value if isinstance(value, list) and self.option.type is not list else [value]:
            self.option.check(v, field=self.name)  # a label may be one per sample


def floor_of(name: str) -> float | None:
    return FLOOR.get(name)


def cap_of(name: str, caps: Any) -> float | None:
    """The server's own bound on an option (None: the family's range alone)."""
    return {"steps": caps.max_steps, "jump": caps.max_steps, "resample": caps.max_resample,
            "max_new_tokens": caps.max_new_tokens, "horizon": caps.max_horizon,
            "length": caps.max_horizon, "prompt": caps.max_prompt}.get(name)


# what serve.app imported from here; a model says both itself (no default, no name compared)
def family_of(model: Any) -> str:
    return model.family


def modality_of(model: Any) -> str:
    return model.modality


def sample_knobs(model: Any, caps: Any) -> list[Knob]:
    """Every knob of `POST /v1/generate` for `model`, n and seed first; `caps` bounds them."""
    knobs = [Knob(Option("n", int, "number of samples", 1, caps.max_n),
                  model.modality_spec.http_default_n),
             Knob(Option("seed", int, "random seed; the same seed gives the same samples",
                         0, 2**63 - 1))]
    classes = getattr(model, "num_classes", 0)
    if classes:
        knobs.append(Knob(Option("label", int, "class label (one for all samples); empty: "
                                 "random", 0, classes - 1)))
    knobs += _family_knobs(model, caps, "sample")
    if model.modality_spec.prints:  # text that may go to a terminal streams over HTTP too
        knobs.append(Knob(Option("stream", bool, "send tokens as server-sent events"), False))
    return knobs


def complete_knobs(model: Any, caps: Any) -> list[Knob]:
    """The knobs of `POST /v1/complete` besides the uploads (empty: cannot complete)."""
    return _family_knobs(model, caps, "complete")


def _family_knobs(model: Any, caps: Any, verb: Literal["sample", "complete"]) -> list[Knob]:
    run = model.config.model if model.config is not None else None  # None: an outside format
    return [_knob(o, run, caps) for o in model.family_spec.options(verb, model.objective)]


def _knob(option: Option, run: Any, caps: Any) -> Knob:
    """`option` with the run's default, its maximum narrowed by the run (steps <= T) and the
    server's cap, its minimum raised to the server's floor."""
    high = option.maximum_for(run)
    cap = cap_of(option.name, caps) if option.type in (int, float) else None
    if cap is not None:
        high = cap if high is None else min(high, cap)
    default = option.default_for(run)
    if isinstance(default, int | float) and not isinstance(default, bool) and high is not None:
        default = min(default, high)
    floor = floor_of(option.name)
    low = option.minimum if floor is None else floor
    exclusive = option.exclusive_minimum and floor is None
    return Knob(replace(option, minimum=low, maximum=high, exclusive_minimum=exclusive),
                default)


def check_options(knobs: list[Knob], given: dict[str, Any], family: str) -> None:
    """Refuse options this model does not take and values outside their knob's range, naming
    the field (a ConfigError whose first word is the field)."""
    table = {k.name: k for k in knobs}
    for name, value in given.items():
        knob = table.get(name)
        if knob is None:
            takes = ", ".join(sorted(table)) or "no options"
            raise ConfigError(f"{name}: does not apply to this {family} model; it takes {takes}")
        knob.check(value)
