"""The modalities genforge generates, and for each: its `data:` config, loader and output.

A family declares in the registry which modalities it can produce; a run's modality picks
how its data is read and how its samples are decoded and written. Evaluation has its own
table by the same names (genforge.eval.EVALUATORS). To add a modality: a data module with a
config dataclass, a loader returning a TrainingData and an output adapter; one row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from genforge.config import DataConfig
from genforge.data.audio import AudioDataConfig
from genforge.data.series import SeriesDataConfig
from genforge.data.table_config import TablesDataConfig
from genforge.data.text import TextDataConfig
from genforge.errors import ConfigError


class Output(Protocol):
    """Turns what a model's `sample` returns into user values and writes them to files."""

    default_out: str  # where `genforge sample` writes without --out ("-": the terminal)
    default_n: int
    suffixes: tuple[str, ...]  # the file kinds `write` takes

    def decode(self, samples: Any, info: dict[str, Any]) -> Any: ...

    def write(self, values: Any, path: Path, info: dict[str, Any], *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None) -> Path: ...


@dataclass(frozen=True)
class Modality:
    name: str
    description: str
    data_config: type  # the dataclass of a run's `data:` section
    loader: str  # "module:function": function(data_cfg, data_root) -> TrainingData
    output: str  # "module:Class" of its Output adapter

    def load(self, data_cfg: Any, data_root: str | Path | None = None) -> Any:
        return _resolve(self.loader)(data_cfg, data_root)

    def make_output(self) -> Output:
        return _resolve(self.output)()


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)  # imported on use: heavy deps


MODALITIES: dict[str, Modality] = {
    "images": Modality("images", "uint8 images: MNIST, Fashion-MNIST, CIFAR-10, folders, npz",
                       DataConfig, "genforge.data.images:load_images",
                       "genforge.data.images:ImageOutput"),
    "text": Modality("text", "UTF-8 corpora, char or byte-level BPE tokens", TextDataConfig,
                     "genforge.data.text:load_text", "genforge.data.text:TextOutput"),
    "series": Modality("series", "time series from CSV, forecast as sample paths",
                       SeriesDataConfig, "genforge.data.series:load_series",
                       "genforge.data.series:SeriesOutput"),
    "audio": Modality("audio", "WAV folders (FSDD spoken digits) as log-mel images; sound by "
                      "Griffin-Lim", AudioDataConfig, "genforge.data.audio:load_audio",
                      "genforge.data.audio:AudioOutput"),
    "tables": Modality("tables", "CSV/Parquet tables (Adult, German credit by name) as rows "
                       "obeying an inferred schema", TablesDataConfig,
                       "genforge.data.tables:load_tables", "genforge.data.tables:TablesOutput"),
}


def get_modality(name: str) -> Modality:
    if name not in MODALITIES:
        raise ConfigError(f"modality={name!r}: allowed values are {', '.join(MODALITIES)}")
    return MODALITIES[name]
