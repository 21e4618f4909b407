"""The series family as the registry sees it (genforge.families.spec)."""

from __future__ import annotations

from genforge.families.series.config import SeriesConfig
from genforge.families.spec import FamilySpec
from genforge.options import Option

FAMILY = FamilySpec(
    name="series",
    description="Autoregressive time series: GRU/Transformer, Gaussian or Student-t paths",
    model_config=SeriesConfig,
    objective="genforge.families.series.objective:SeriesObjective",
    modalities=("series",),
    sample_options=(
        Option("horizon", int, "Series: steps ahead.", minimum=1, maximum=100000),
        Option("calibrated", bool, "Series: widen the paths by the run's calibration "
               "(default: on where the run has calibration rows)."),
        Option("synthetic", bool, "Series: whole new series instead of forecasts."),
        Option("length", int, "Series: steps of each --synthetic series (120).", minimum=1,
               maximum=100000),
    ),
)
