"""The series family's config sections: the CSV series (`data:`) and the network (`model:`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from genforge.config import ConfigError

if TYPE_CHECKING:
    from genforge.config import RunConfig


@dataclass
class SeriesConfig:
    """p(y_t | y_<t) = StudentT or Normal, with parameters from a network over lagged values.

    Inputs at step t: the scaled values at lags 1 and `data.period`, and a learned embedding of
    the season (t mod period). arch 'gru' is DeepAR-like (Salinas et al. 2020); 'transformer'
    is a causal Transformer encoder over the window.
    """

    arch: Literal["gru", "transformer"] = "gru"
    hidden: int = 64
    layers: int = 2
    heads: int = 4  # transformer only
    dropout: float = 0.1
    season_dim: int = 8
    likelihood: Literal["gaussian", "student-t"] = "student-t"
    horizon: int = 24  # default steps ahead for `sample`

    def __post_init__(self) -> None:
        for key in ("hidden", "layers", "heads", "season_dim", "horizon"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout}: must be in [0, 1)")
        if self.arch == "transformer" and self.hidden % self.heads:
            raise ConfigError(f"model.hidden={self.hidden} is not divisible by "
                              f"model.heads={self.heads}")

    def check_run(self, cfg: RunConfig) -> None:
        if self.arch == "gru" and self.heads != 4:
            raise ConfigError("model.heads applies only to model.arch=transformer")
