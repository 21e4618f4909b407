"""The series family's config sections: the CSV series (`data:`) and the network (`model:`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from genforge.config import ConfigError

if TYPE_CHECKING:
    from genforge.config import RunConfig


@dataclass
class SeriesDataConfig:
    """Univariate or multivariate series from a CSV file with a header row.

    The first column is the time index (kept as labels); the values are `columns` (comma
    separated) or every other numeric column. The last `test_length` rows are held out for
    evaluation; the model trains on windows of the rows before them. Values are transformed
    (log), differenced if asked, then standardised with the training rows' mean and std.
    """

    dataset: str = "airline"  # a name for the record
    path: str = "timeseries/airline_passengers.csv"  # absolute, or under a data root
    root: str | None = None
    columns: str | None = None  # e.g. "realgdp,realcons"; null = every numeric column
    period: int = 12  # seasonal period (12 monthly, 4 quarterly, 52 weekly; 1 = none)
    transform: Literal["none", "log"] = "none"
    difference: bool = False  # model y_t - y_(t-1) (after the transform)
    test_length: int = 24  # held-out tail rows
    window: int = 48  # time steps a training window predicts
    limit: int | None = None  # use only the first `limit` rows (quick tests)

    def __post_init__(self) -> None:
        for key in ("period", "test_length", "window"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"data.{key}={getattr(self, key)}: must be a positive integer")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"data.limit={self.limit}: must be a positive integer")


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
