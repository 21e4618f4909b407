"""The Python API that the CLI and the server are thin adapters over.

    import genforge
    cfg = genforge.load_config("mnist-dcgan", ["train.max_steps=500"])
    run = genforge.train(cfg).run_dir
    model = genforge.load(run)
    images = model.sample(64, seed=0)                     # uint8 (64, 1, 28, 28)
    model.write(images, "grid.png")

The API alone builds a `GenerativeModel`: from a run folder, or from the parts a family's
loader returns for an outside format (a transformers folder). What a model's samples are and
how they are written follows its modality (genforge.modalities.base); what it can do at
sampling time, its objective's declaration (`model.can(...)`, genforge.inference.sampler).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import RunConfig
from genforge.errors import ConfigError, DataError
from genforge.inference import batching
from genforge.inference.autocast import autocast
from genforge.inference.batching import EXACT_CHUNK, MAX_SAMPLES, check_count
from genforge.inference.sampler import check_options, declared, taken_options
from genforge.inference.session import PER_REQUEST, SamplingSession
from genforge.inference.stream import text_pieces
from genforge.inference.watermark import when_writing, while_sampling
from genforge.modalities.images.data import from_model_range, to_model_range
from genforge.modalities.images.inputs import read_images
from genforge.registry import get_family, get_modality
from genforge.runs import check_model_memory, provenance, read_run, resume_config
from genforge.training.loop import TrainResult
from genforge.training.loop import train as run_loop

# kept importable from here, where callers found them before genforge.inference
__all__ = ["EXACT_CHUNK", "MAX_SAMPLES", "PER_REQUEST", "GenerativeModel", "SamplingSession",
           "load", "read_images", "resume_config", "train"]


def train(cfg: RunConfig, *, out: str | Path | None = None, resume: str | Path | None = None,
          overwrite: bool = False, data_root: str | Path | None = None) -> TrainResult:
    """Train `cfg` into a run folder (new, or `resume`d); returns where and how it ended.

    The data is read (and checked against the model) before a run folder exists, so a bad
    data set leaves nothing behind.
    """
    spec = get_family(cfg.family)
    data = get_modality(cfg.modality or spec.modalities[0]).load(cfg.data, data_root)
    if cfg.privacy.enabled and hasattr(data, "privatise"):
        data.privatise(cfg.privacy)  # preprocessing from a public schema or DP releases
    spec.check_data(cfg, data.info())
    check_model_memory(spec, cfg, data.info())
    return run_loop(cfg, data=data, build_objective=lambda info: spec.build(cfg.model, info),
                    out=out, resume=resume, overwrite=overwrite)


class GenerativeModel:
    """A trained model rebuilt from its run folder alone (model.safetensors + its metadata),
    or a model from an outside format (then `config` is None)."""

    def __init__(self, cfg: RunConfig | None, objective: Any, data_info: dict[str, Any],
                 step: int, path: Path, *, family: str | None = None,
                 modality: str | None = None) -> None:
        self.config, self.objective, self.data_info = cfg, objective, data_info
        self.step, self.path = step, path
        self.family = family or cfg.family
        # the two objects the engines ask, instead of comparing names; a run's modality is its
        # config's, else its data's kind, else its family's first (image runs wrote no kind)
        self.family_spec = get_family(self.family)
        self.modality = modality or (cfg.modality if cfg and cfg.modality else
                                     data_info.get("kind", self.family_spec.modalities[0]))
        self.modality_spec = get_modality(self.modality)
        self.output = self.modality_spec.make_output()
        self.capabilities = declared(objective)  # what sampling offers (inference.sampler)
        # what sample, complete and their kin compute in when a call does not say: auto
        # (bf16 where the hardware has it), fp32 or bf16; `genforge eval --precision` sets it
        self.precision = "auto"

    @property
    def num_classes(self) -> int:
        return int(getattr(self.objective, "num_classes", 0) or 0)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for name in self.objective.sampling_nets
                   for p in self.objective.nets[name].parameters())

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer of a text model (None for other modalities)."""
        return getattr(self.objective, "tokenizer", None)

    def to(self, device: str | torch.device) -> GenerativeModel:
        for net in self.objective.nets.values():
            net.to(device)
        return self

    def _labels(self, label: int | list[int] | torch.Tensor | None, n: int) -> torch.Tensor | None:
        if label is None:
            return None
        if not self.num_classes:
            raise ConfigError(f"{self.path}: this model is not conditional; drop the label")
        labels = torch.as_tensor(label, dtype=torch.long).flatten()
        labels = labels.expand(n) if labels.numel() == 1 else labels
        if labels.numel() != n or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ConfigError(f"label {label}: allowed are 0..{self.num_classes - 1}, one or n")
        return labels.clone()

    def can(self, capability: str) -> bool:
        """Whether this model's objective declares `capability` (a word of
        genforge.inference.sampler.CAPABILITIES: "complete", "stream", "step", ...)."""
        return capability in self.capabilities

    def options(self) -> list[Any]:
        """The sampling knobs this model takes (genforge.options.Option): its family's, less
        those its kind does not take."""
        return taken_options(self.objective, self.family_spec)

    def sample(self, n: int, *, seed: int = 0, label: Any = None,
               watermark: str | bytes | None = None, precision: str | None = None,
               **options: Any) -> Any:
        """n samples as the modality gives them: images uint8 (n, C, H, W), texts a list of
        str, series paths (n, horizon, D). `label` (one int or n) conditions a conditional
        model; `options` are the family's own (a sampler, a prompt, ...). `watermark` (a
        secret) marks text as it is sampled (green-list logits); images are marked by
        `write(..., watermark=...)`, the file being what carries the mark. `precision`: auto
        (bf16 where the hardware computes it natively, else fp32), fp32 or bf16; None: the
        model's `precision`."""
        self.check_count(n)
        if watermark is not None:  # text: marked as it is sampled
            options["logits_processors"] = while_sampling(
                watermark, self.modality_spec.watermark_stage, self.modality, self.path)
        check_options(self.objective, self.family_spec, "sample", options)
        with self._autocast(precision):
            samples = self.objective.sample(n, seed=seed, condition=self._labels(label, n),
                                            **options)
        return self.output.decode(samples, self.data_info)

    @property
    def merges_requests(self) -> bool:
        """True when `sample_batch` runs several seeded requests as one forward pass (the
        family draws each request's noise from its own generator); else it runs one `sample`
        call per request."""
        return self.can("merge")

    @property
    def has_sessions(self) -> bool:
        """True when `session` can run this model's requests together."""
        return self.merges_requests or self.can("step")

    def sample_batch(self, requests: list[dict[str, Any]], *, chunk: int = EXACT_CHUNK,
                     precision: str | None = None) -> list[Any]:
        """The samples of several requests, one list entry per request, from as few forward
        passes as their options allow. A request is {"n", "seed", "label" (optional),
        **options}, as `sample` takes them; requests with other options, or with and
        without a label, go to separate passes.

        Where the family draws per-request noise (`merges_requests`), a request gets bit
        for bit what `sample_batch([request])` gives it, whoever shares the pass; next to
        `sample(n, seed=...)` the noise is the same (n <= the family's batch size), the
        floats can differ in the last bits (genforge.inference.batching)."""
        return batching.sample_batch(self, requests, chunk=chunk, precision=precision)

    def session(self, options: dict[str, Any] | None = None, *, chunk: int = EXACT_CHUNK,
                precision: str | None = None) -> SamplingSession:
        """A sampling call that requests (with these options) join and leave between its
        steps: continuous batching, for a server. An image request gets bit for bit what
        `sample_batch([request], chunk=chunk)` gives it, whenever it joined; a text request
        (unseeded: rows share the session's generator) what a lone call gives up to float
        rounding in the logits (greedy texts are the same). Families that merge requests
        (`merges_requests`) or decode text in steps (`has_sessions`)."""
        if not self.has_sessions:
            raise ConfigError(f"{self.path}: {self.family} models run each request on its own")
        if chunk < 1:
            raise ConfigError(f"chunk={chunk}: must be >= 1 rows")
        return SamplingSession(self, dict(options or {}), chunk, precision)

    def _autocast(self, precision: str | None = None) -> Any:
        """bf16 autocast where `precision` (None: the model's) resolves to it."""
        return autocast(self.objective.nets, precision or self.precision)

    def check_count(self, n: int) -> None:
        """Refuse, before any work, a sample count that is not positive or whose samples
        would not fit in memory at once (genforge.inference.batching.check_count)."""
        check_count(n, self.data_info)

    def sample_chunks(self, n: int, *, seed: int = 0, chunk: int | None = None,
                      **options: Any) -> Iterator[Any]:
        """n samples as decoded chunks, one in memory at a time (tables: DataFrames of
        `chunk` rows); `write` takes the iterator and streams it into one file."""
        if n <= 0:
            raise ConfigError(f"n={n}: must be a positive number of samples")
        if not self.can("chunks"):
            raise ConfigError(f"{self.path}: {self.modality} samples do not come in chunks")
        check_options(self.objective, self.family_spec, "sample", options)
        parts = self.objective.iter_sample(n, seed=seed, chunk=chunk, **options)
        while True:
            with self._autocast():  # not across a yield: the caller's code stays outside
                part = next(parts, None)
            if part is None:
                return
            yield self.output.decode(part, self.data_info)

    def complete_rows(self, rows: Any, *, seed: int = 0) -> Any:
        """Fill the empty cells of `rows` (tables: a DataFrame or a .csv/.parquet path; what
        the modality's `read_cells` reads); the given cells come back exactly as given."""
        if not self.can("complete_rows"):
            raise ConfigError(f"{self.path}: the {self.family} family does not complete the "
                              f"empty cells of {self.modality} rows")
        given = self.modality_spec.read_cells(rows, self.data_info)
        with self._autocast():
            return self.objective.complete(given, seed=seed)

    def stream_text(self, *, seed: int = 0, **options: Any) -> Iterator[str]:
        """A text model's sample, piece by piece as its tokens come (the prompt first)."""
        if not self.can("stream"):
            raise ConfigError(f"{self.path}: streaming applies to text models only")
        return text_pieces(lambda on_text: self.sample(1, seed=seed, on_text=on_text,
                                                       **options))

    def token_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        """log p(x_t | x_<t) of each token after the first of each row: (B, T+1) -> (B, T)."""
        if not self.can("token_logprobs"):
            raise ConfigError(f"{self.path}: token log-probabilities need a text model")
        return self.objective.token_logprobs(ids)

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids a text model's sampling starts from for `prompt`."""
        return self.objective.encode_prompt(prompt)

    def write(self, values: Any, out: str | Path, *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None,
              watermark: str | bytes | None = None) -> Path:
        """Write what `sample` returned, the file kind chosen by the suffix of `out`, with
        `provenance` (a record from `provenance_record`) in it; `watermark` (a secret) marks
        images (a .png grid as one image, each image of an .npz)."""
        from genforge.labelling import using_key

        out = Path(out)
        if out.suffix not in self.output.suffixes:
            raise ConfigError(f"--out {out}: {self.modality} samples go to "
                              f"{', '.join(self.output.suffixes)} files")
        extra = {} if watermark is None else \
            when_writing(watermark, self.modality_spec.watermark_stage, self.modality)
        with using_key(self.labelling_key()):  # signs the records of the files written
            return self.output.write(values, out, self.data_info, nrow=nrow,
                                     provenance=provenance, **extra)

    def labelling_key(self) -> bytes | None:
        """The run's labelling.key, else GENFORGE_WATERMARK_KEY, else None."""
        from genforge.labelling import secret_key

        return secret_key(self.config.labelling.key if self.config else None)

    def provenance_record(self, *, seed: int | None, **extra: Any) -> dict[str, Any]:
        """The provenance record of files made by this model (genforge.labelling): run,
        config and weights hashes, seed, time, the "AI-generated" label; `extra` adds fields
        (e.g. watermark="...")."""
        return provenance(self.config, self.path, seed=seed, modality=self.modality,
                          extra={"family": self.family, "step": self.step, **extra})

    def complete(self, images: torch.Tensor | np.ndarray, mask: str | torch.Tensor, *,
                 seed: int = 0, label: Any = None, **options: Any) -> torch.Tensor:
        """Fill in missing pixels: `images` uint8 (N, C, H, W); mask True = missing."""
        from genforge.modalities.images.masks import make_mask

        if not self.can("complete"):
            raise ConfigError(f"{self.path}: the {self.family} family cannot complete images")
        x = torch.as_tensor(np.asarray(images))
        c, s = self.data_info["channels"], self.data_info["image_size"]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise DataError(f"input images of shape {tuple(x.shape)}; this model needs (N, {c}, "
                            f"{s}, {s})")
        check_options(self.objective, self.family_spec, "complete", options)
        m = make_mask(mask, tuple(x.shape), seed=seed) if isinstance(mask, str) else mask.bool()
        with self._autocast():
            filled = self.objective.complete(to_model_range(x), m, seed=seed,
                                             condition=self._labels(label, x.shape[0]),
                                             **options)
        return from_model_range(filled)


def load(run: str | Path, *, device: str = "cpu") -> GenerativeModel:
    """Rebuild a model from `run`: a run folder, its model.safetensors, or a transformers
    causal-LM folder (config.json, weights and tokenizer; nothing is downloaded)."""
    path = Path(run)
    cfg, objective, data_info, step, names = read_run(path)
    return GenerativeModel(cfg, objective, data_info, step, path, **names).to(device)
