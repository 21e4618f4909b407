"""What the engines (CLI, server, evaluation, API) ask of a kind of data.

A modality is one object, an instance of a `Modality` subclass, defined in its own package
(`genforge/modalities/<name>/spec.py` for genforge's own, any module of a plug-in package for
others) and found by genforge.registry. Code outside a modality's package never compares its
name: it asks the object (how to load a run's data, decode and write samples, encode an HTTP
body, read a completion input, evaluate a run).

The heavy parts (torch, PIL, pandas) are named as "module:attribute" and imported on use, so
that listing the modalities stays cheap.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from genforge.errors import ConfigError


class Output(Protocol):
    """Turns what a model's `sample` returns into user values and writes them to files."""

    default_out: str  # where `genforge sample` writes without --out ("-": the terminal)
    default_n: int
    suffixes: tuple[str, ...]  # the file kinds `write` takes

    def decode(self, samples: Any, info: dict[str, Any]) -> Any: ...

    def write(self, values: Any, path: Path, info: dict[str, Any], *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None) -> Path: ...


Labeller = Callable[[str, bytes], bytes]  # (file suffix, body) -> labelled body; serve.label


@dataclass
class HttpCompletion:
    """One `POST /v1/complete` request, read from its upload: what to run, how to answer."""

    run: Callable[[], Any]  # the model's completion (the server runs it on the model's thread)
    record: dict[str, Any]  # the provenance fields of this completion (operation, input, ...)
    body: Callable[[Any, Labeller], tuple[bytes, str]]  # filled -> (body, media type)


class Modality:
    """A kind of data: subclass it, set the class attributes, override what differs."""

    name: str = ""
    description: str = ""
    data_config: type = object  # the dataclass of a run's `data:` section
    loader: str = ""  # "module:function": function(data_cfg, data_root) -> TrainingData
    output: str = ""  # "module:Class" of its Output adapter
    evaluator: str | None = None  # "module:function"(model, run, options) -> (lines, paths)

    # what the CLI does with samples
    prints: bool = False  # samples may go to the terminal (--out -) and stream (--stream)
    in_chunks: bool = False  # `sample` writes chunk by chunk (any n in bounded memory)
    label_refusal: str | None = None  # why `sample --label` does not apply (None: it may)
    datasets: str | None = None  # "module:attribute": name -> source (`.folder`), for `list`

    # what `complete` fills in: "pixels" (the masked pixels of images, from --mask) or
    # "cells" (the empty cells of table rows); None: nothing (families say whether they can)
    completes: str | None = None

    # watermarks: the stage that carries the mark ("sample": while sampling, as text is
    # marked; "write": in the file written, as images are) and the scheme's name
    watermark_stage: str | None = None
    watermark_scheme: str | None = None  # "module:attribute" of the scheme's name

    # HTTP: the body formats `POST /v1/generate` takes (the first is the default), the
    # default n of a request
    http_formats: tuple[str, ...] = ("json",)
    http_default_n: int = 16

    def load(self, data_cfg: Any, data_root: str | Path | None = None) -> Any:
        return resolve(self.loader)(data_cfg, data_root)

    def make_output(self) -> Output:
        return resolve(self.output)()

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Labeller) -> tuple[bytes, str]:
        """(body, media type) of decoded `samples` in format `fmt` (one of `http_formats`)
        with the `meta` fields, labelled by `label`. By default JSON: `samples` as nested
        lists."""
        values = samples.tolist() if hasattr(samples, "tolist") else list(samples)
        return label(".json", json.dumps({**meta, "samples": values}).encode()), \
            "application/json"

    def http_meta(self, data_info: dict[str, Any]) -> dict[str, Any]:
        """Fields every `POST /v1/generate` body of this modality carries besides model, n,
        seed (audio: its sample rate)."""
        return {}

    def http_model_info(self, data_info: dict[str, Any]) -> dict[str, Any]:
        """Fields of the model's entry in `GET /v1/models` besides the common ones (images:
        `image`, the channels and size an upload to /v1/complete must have)."""
        return {}

    def http_completion(self, model: Any, model_id: str, given: dict[str, Any],
                        options: dict[str, Any], seed: int, max_upload: int) -> HttpCompletion:
        """Read a `POST /v1/complete` request (`given`: its fields; `options`: the checked
        completion options) for a modality that `completes`; a ConfigError naming the field
        of a bad upload."""
        raise ConfigError(f"model: {model_id} ({self.name}) cannot complete")

    def read_cells(self, source: Any, data_info: dict[str, Any]) -> Any:
        """The values whose empty cells `complete_rows` fills (a modality that `completes`
        "cells"): from what the user gives (tables: a DataFrame or a .csv/.parquet path), in
        the form the objective's `complete` takes; a DataError naming the source if bad."""
        raise ConfigError(f"{self.name} values have no cells to complete")

    def format_terminal(self, samples: Any, *, streamed: bool = False) -> str:
        """What `genforge sample --out -` prints (a modality with `prints`); `streamed`: the
        first sample was printed already, as it was made."""
        raise ConfigError(f"{self.name} samples are written to files, not printed")

    def check_watermark(self, data_info: dict[str, Any], out: Path, n: int,
                        nrow: int | None) -> None:
        """Refuse, before sampling, outputs the watermark cannot be put into (a modality with
        a `watermark_stage`)."""

    def __repr__(self) -> str:
        return f"<modality {self.name}>"


def resolve(target: str) -> Any:
    """The attribute that "module:attribute" names (imported on use: heavy dependencies)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
