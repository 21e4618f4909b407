"""An option of `sample` or `complete` (a sampler, a prompt, a horizon): its name, type, range
and default, declared once by the family that takes it.

The CLI's flags, the server's request fields and knobs, and the API's checks are all made from
these objects, so they cannot drift apart. Imports nothing of genforge but its errors; any
layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genforge.errors import ConfigError


@dataclass(frozen=True)
class Option:
    name: str  # the keyword `sample`/`complete` takes; the CLI flag is --name-with-dashes
    type: type  # int, float, str, bool, or list (of str)
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    exclusive_minimum: bool = False  # the minimum itself is refused (top_p 0, unlike temperature 0)
    default: Any = None  # used where the run's model config has no default (see default_field)
    default_field: str | None = None  # the model-config field holding a run's default
    maximum_field: str | None = None  # a model-config field bounding it too (steps <= T)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, *, field: str | None = None) -> Any:
        """The value, or a ConfigError naming the option and what it takes. `field`: how the
        error names it (the CLI flag by default; the server names its JSON field)."""
        flag = field or self.flag
        if self.type is list:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
                raise ConfigError(f"{flag}={value!r}: expected text or a list of texts")
            return list(items)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (isinstance(value, bool) and self.type is not bool):
            raise ConfigError(f"{flag}={value!r}: expected {self.type.__name__}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{flag}={value!r}: allowed values are {', '.join(self.choices)}")
        low, high = self.minimum, self.maximum
        if low is not None and (value < low or (self.exclusive_minimum and value == low)):
            raise ConfigError(f"{flag}={value}: must be {'>' if self.exclusive_minimum else '>='}"
                              f" {low:g}")
        if high is not None and value > high:
            raise ConfigError(f"{flag}={value}: must be <= {high:g}")
        return value

    def default_for(self, model_config: Any) -> Any:
        """A run's default: its model config's field where the option names one, else
        `default`."""
        field = self.default_field or self.name
        value = getattr(model_config, field, None) if model_config is not None else None
        return self.default if value is None else value

    def maximum_for(self, model_config: Any) -> float | None:
        """The largest value a run takes: `maximum`, or less where `maximum_field` says."""
        bound = getattr(model_config, self.maximum_field, None) if self.maximum_field else None
        if bound is None:
            return self.maximum
        return bound if self.maximum is None else min(self.maximum, bound)

    def describe(self) -> dict[str, Any]:
        """Plain facts for an API listing (types, ranges, choices)."""
        return {"name": self.name, "type": self.type.__name__, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum,
                "exclusive_minimum": self.exclusive_minimum, "choices": list(self.choices),
                "default": self.default}


def union(declared: list[Option]) -> Option:
    """One option for several families' options of one name, all of one type (the CLI's
    flag, the server's request field): their helps joined, the widest range, every choice.
    Each family checks its own declaration once the model is known (FamilySpec.check_options)."""
    first = declared[0]
    lows = [o.minimum for o in declared]
    highs = [o.maximum for o in declared]
    low = None if None in lows else min(lows)
    helps = list(dict.fromkeys(o.help for o in declared))
    choices = () if any(not o.choices for o in declared) else \
        tuple(dict.fromkeys(c for o in declared for c in o.choices))
    return Option(first.name, first.type, " ".join(helps), low,
                  None if None in highs else max(highs), choices,
                  exclusive_minimum=all(o.exclusive_minimum for o in declared
                                        if o.minimum == low),
                  default=first.default, default_field=first.default_field)
