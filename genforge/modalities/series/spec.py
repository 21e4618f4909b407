"""The series modality: what the engines ask of series (genforge.modalities.base)."""

from __future__ import annotations

from typing import Any

from genforge.modalities.base import Labeller, Modality
from genforge.modalities.series.data import SeriesDataConfig


class Series(Modality):
    name = "series"
    description = "time series from CSV, forecast as sample paths"
    data_config = SeriesDataConfig
    loader = "genforge.modalities.series.data:load_series"
    output = "genforge.modalities.series.data:SeriesOutput"
    evaluator = "genforge.eval.series.evaluate:evaluate_series_run"
    http_formats = ("csv", "json")

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Labeller) -> tuple[bytes, str]:
        from genforge.modalities.series.http import series_body

        return series_body(samples, fmt, meta, label)


MODALITY = Series()
