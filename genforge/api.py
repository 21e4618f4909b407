"""The Python API that the CLI and the server are thin adapters over.

    import genforge
    cfg = genforge.load_config("mnist-dcgan", ["train.max_steps=500"])
    run = genforge.train(cfg).run_dir
    model = genforge.load(run)
    images = model.sample(64, seed=0)                     # uint8 (64, 1, 28, 28)
    model.write(images, "grid.png")

The API alone builds a `GenerativeModel`: from a run folder, or from the parts a family's
loader returns for an outside format (a transformers folder). What a model's samples are and
how they are written follows its modality (genforge.modalities.base).
"""

from __future__ import annotations

import inspect
import json
import queue
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import RunConfig, apply_overrides, read_yaml
from genforge.errors import ConfigError, DataError
from genforge.modalities.images.data import from_model_range, to_model_range
from genforge.registry import FAMILIES, build_run_config, get_modality
from genforge.runtime.noise import RowNoise
from genforge.training.checkpoint import MODEL_FILE, read_model, split_state
from genforge.training.loop import TrainResult
from genforge.training.loop import train as run_loop


def train(cfg: RunConfig, *, out: str | Path | None = None, resume: str | Path | None = None,
          overwrite: bool = False, data_root: str | Path | None = None) -> TrainResult:
    """Train `cfg` into a run folder (new, or `resume`d); returns where and how it ended.

    The data is read (and checked against the model) before a run folder exists, so a bad
    data set leaves nothing behind.
    """
    spec = FAMILIES[cfg.family]
    data = get_modality(cfg.modality or spec.modalities[0]).load(cfg.data, data_root)
    if cfg.privacy.enabled and hasattr(data, "privatise"):
        data.privatise(cfg.privacy)  # preprocessing from a public schema or DP releases
    spec.check_data(cfg, data.info())
    _check_model_memory(spec, cfg, data.info())
    return run_loop(cfg, data=data, build_objective=lambda info: spec.build(cfg.model, info),
                    out=out, resume=resume, overwrite=overwrite)


MAX_SAMPLES = 1_000_000  # per `sample` call; tables stream any number (sample_chunks)
# rows per forward pass in `sample_batch`: every pass has this shape, so a row's floats do
# not depend on its company (measured: 8 rows cost a lone DDPM request about 3x one row)
EXACT_CHUNK = 8


def _check_model_memory(spec: Any, cfg: RunConfig, info: dict[str, Any]) -> None:
    """Refuse, before anything is allocated, a model whose training would not fit in memory:
    its parameters are counted on the meta device (no memory is used)."""
    from genforge.data.limits import MAX_TRAINING_BYTES, human

    try:
        with torch.device("meta"):
            nets = spec.build(cfg.model, info).nets
        params = sum(p.numel() for net in nets.values() for p in net.parameters())
    except Exception:  # a family that cannot be built on the meta device: not counted here
        return
    need = 16 * params  # fp32 weights, gradients and two Adam moments
    if need > MAX_TRAINING_BYTES:
        raise ConfigError(f"model.*: {params:,} parameters need about {human(need)} to train "
                          f"(weights, gradients, Adam moments); the limit is "
                          f"{human(MAX_TRAINING_BYTES)} (half this machine's memory)")


class GenerativeModel:
    """A trained model rebuilt from its run folder alone (model.safetensors + its metadata),
    or a model from an outside format (then `config` is None)."""

    def __init__(self, cfg: RunConfig | None, objective: Any, data_info: dict[str, Any],
                 step: int, path: Path, *, family: str | None = None,
                 modality: str | None = None) -> None:
        self.config, self.objective, self.data_info = cfg, objective, data_info
        self.step, self.path = step, path
        self.family = family or cfg.family
        self.modality = modality or (cfg.modality if cfg and cfg.modality else
                                     data_info.get("kind", "images"))
        # the two objects the engines ask, instead of comparing names
        self.modality_spec = get_modality(self.modality)
        self.family_spec = FAMILIES[self.family]
        self.output = self.modality_spec.make_output()
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

    def options(self) -> list[Any]:
        """The sampling knobs this model takes (genforge.registry.SampleOption): its
        family's, less those its kind does not take (an objective's `sample_options`)."""
        taken = getattr(self.objective, "sample_options", None)
        return [o for o in FAMILIES[self.family].options() if taken is None or o.name in taken]

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
        if watermark is not None:
            if self.modality != "text":
                raise ConfigError(f"{self.path}: a {self.modality} model is watermarked when "
                                  "its samples are written (write(..., watermark=key))"
                                  if self.modality == "images" else
                                  f"{self.path}: watermarks apply to images and text, not "
                                  f"{self.modality}")
            from genforge.labelling.text_watermark import WatermarkLogitsProcessor

            options["logits_processors"] = [WatermarkLogitsProcessor(_secret(watermark))]
        _check_options(self.objective.sample, options, self.family)
        with self._autocast(precision):
            samples = self.objective.sample(n, seed=seed, condition=self._labels(label, n),
                                            **options)
        return self.output.decode(samples, self.data_info)

    @property
    def merges_requests(self) -> bool:
        """True when `sample_batch` runs several seeded requests as one forward pass (the
        family draws each request's noise from its own generator); else it runs one `sample`
        call per request."""
        return "noise" in inspect.signature(self.objective.sample).parameters

    @property
    def has_sessions(self) -> bool:
        """True when `session` can run this model's requests together."""
        return self.merges_requests or hasattr(self.objective, "sampling_session")

    def sample_batch(self, requests: list[dict[str, Any]], *, chunk: int = EXACT_CHUNK,
                     precision: str | None = None) -> list[Any]:
        """The samples of several requests, one list entry per request, from as few forward
        passes as their options allow. A request is {"n", "seed", "label" (optional),
        **options}, as `sample` takes them; requests with other options, or with and
        without a label, go to separate passes.

        Where the family draws per-request noise (`merges_requests`: GAN, VAE, diffusion),
        each request's rows come from its own generator seeded by its seed and the network
        runs on fixed-shape chunks of `chunk` rows (the last padded), so a request gets
        bit for bit what `sample_batch([request])` gives it, whoever shares the pass. Next
        to `sample(n, seed=...)` the noise is the same (n <= the family's batch size) but
        the floats can differ in the last bits where kernels block by batch size.
        Elsewhere (text, series, tables) each request is its own `sample` call."""
        groups: dict[Any, list[int]] = {}
        for i, req in enumerate(requests):
            options = {k: v for k, v in req.items() if k not in ("n", "seed", "label")}
            key = (repr(sorted(options.items())), req.get("label") is None)
            groups.setdefault(key, []).append(i)
        out: list[Any] = [None] * len(requests)
        for rows in groups.values():
            part = [requests[i] for i in rows]
            for i, result in zip(rows, self._merged(part, chunk, precision), strict=True):
                out[i] = result
        return out

    def _merged(self, requests: list[dict[str, Any]], chunk: int,
                precision: str | None) -> list[Any]:
        """One forward pass for requests of one group (same options, labels all or none)."""
        def split(req: dict[str, Any]) -> tuple[int, int, Any, dict[str, Any]]:
            rest = {k: v for k, v in req.items() if k not in ("n", "seed", "label")}
            return int(req["n"]), int(req.get("seed", 0)), req.get("label"), rest

        parts = [split(r) for r in requests]
        if not self.merges_requests:
            return [self.sample(n, seed=seed, label=label, precision=precision, **options)
                    for n, seed, label, options in parts]
        if chunk < 1:
            raise ConfigError(f"chunk={chunk}: must be >= 1 rows")
        for n, *_ in parts:
            self.check_count(n)
        total = sum(n for n, *_ in parts)
        self.check_count(total)
        options = parts[0][3]
        _check_options(self.objective.sample, options, self.family)
        labels = None
        if parts[0][2] is not None:
            labels = torch.cat([self._labels(label, n) for n, _, label, _ in parts])
        noise = RowNoise([(seed, n) for n, seed, *_ in parts])
        with self._autocast(precision):
            samples = self.objective.sample(total, seed=parts[0][1], condition=labels,
                                            noise=noise, pad_to=chunk, **options)
        decoded = self.output.decode(samples, self.data_info)
        out, start = [], 0
        for n, *_ in parts:
            out.append(decoded[start : start + n])
            start += n
        return out

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
        """bf16 autocast where `precision` (None: the model's) resolves to it on this model's
        device. Only the networks compute in bf16: families cast their outputs to fp32."""
        from genforge.runtime.precision import choose_precision

        device = next((p.device for net in self.objective.nets.values()
                       for p in net.parameters()), torch.device("cpu"))
        chosen, _ = choose_precision(precision or self.precision, device)
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=chosen == "bf16")

    def check_count(self, n: int) -> None:
        """Refuse, before any work, a sample count that is not positive or whose samples
        would not fit in memory at once (the limit is named; ask for fewer, or in parts)."""
        from genforge.data.limits import MAX_INPUT_BYTES, human

        if n <= 0:
            raise ConfigError(f"n={n}: must be a positive number of samples")
        info = self.data_info
        # float32 model output + its decoded copy; images know their size, others a guess
        per = 8 * int(info.get("channels", 1)) * int(info.get("image_size", 32)) ** 2
        cap = min(MAX_SAMPLES, max(1, MAX_INPUT_BYTES // per))
        if n > cap:
            raise ConfigError(f"n={n}: at most {cap:,} samples of this model per call "
                              f"(limits: {MAX_SAMPLES:,} samples, {human(MAX_INPUT_BYTES)} of "
                              "samples in memory); sample in parts with different seeds")

    def sample_chunks(self, n: int, *, seed: int = 0, chunk: int | None = None,
                      **options: Any) -> Iterator[Any]:
        """n samples as decoded chunks, one in memory at a time (tables: DataFrames of
        `chunk` rows); `write` takes the iterator and streams it into one file."""
        if n <= 0:
            raise ConfigError(f"n={n}: must be a positive number of samples")
        if not hasattr(self.objective, "iter_sample"):
            raise ConfigError(f"{self.path}: {self.modality} samples do not come in chunks")
        _check_options(self.objective.iter_sample, options, self.family)
        parts = self.objective.iter_sample(n, seed=seed, chunk=chunk, **options)
        while True:
            with self._autocast():  # not across a yield: the caller's code stays outside
                part = next(parts, None)
            if part is None:
                return
            yield self.output.decode(part, self.data_info)

    def complete_rows(self, rows: Any, *, seed: int = 0) -> Any:
        """Tables: fill the empty cells of `rows` (a DataFrame or a .csv/.parquet path); the
        given cells come back exactly as given."""
        from genforge.modalities.tables.data import read_rows

        if self.modality != "tables":
            raise ConfigError(f"{self.path}: rows are completed by tables models, not "
                              f"{self.modality}")
        given = read_rows(rows, self.data_info)
        with self._autocast():
            return self.objective.complete(given, seed=seed)

    def stream_text(self, *, seed: int = 0, **options: Any) -> Iterator[str]:
        """A text model's sample, piece by piece as its tokens come (the prompt first)."""
        if self.modality != "text":
            raise ConfigError(f"{self.path}: streaming applies to text models only")
        pieces: queue.Queue = queue.Queue()
        done = object()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.sample(1, seed=seed, on_text=pieces.put, **options)
            except BaseException as err:  # handed to the reader, raised there
                failure.append(err)
            finally:
                pieces.put(done)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while (piece := pieces.get()) is not done:
            yield piece
        thread.join()
        if failure:
            raise failure[0]

    def token_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        """log p(x_t | x_<t) of each token after the first of each row: (B, T+1) -> (B, T)."""
        if self.modality != "text":
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
        extra: dict[str, Any] = {}
        if watermark is not None:
            if self.modality != "images":
                raise ConfigError(f"--watermark: {self.modality} samples are not marked when "
                                  "written" + (" (text is marked while sampling: "
                                               "sample(..., watermark=key))"
                                               if self.modality == "text" else ""))
            extra["watermark"] = _secret(watermark)
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
        from genforge.labelling import build_record, config_hash, file_hash

        config = None
        if self.config is not None:
            plain = self.config.to_dict()
            plain.pop("labelling", None)  # the key stays out, even as a hash input
            config = config_hash(plain)
        weights = self.path / MODEL_FILE if self.path.is_dir() else self.path
        if not weights.is_file():  # a transformers folder
            weights = next(iter(sorted(self.path.glob("*.safetensors"))), weights)
        return build_record(
            modality=self.modality, config_sha256=config,
            run=(self.path if self.path.is_dir() else self.path.parent).resolve().name,
            weights_sha256=file_hash(weights) if weights.is_file() else None, seed=seed,
            extra={"family": self.family, "step": self.step, **extra})


    def complete(self, images: torch.Tensor | np.ndarray, mask: str | torch.Tensor, *,
                 seed: int = 0, label: Any = None, **options: Any) -> torch.Tensor:
        """Fill in missing pixels: `images` uint8 (N, C, H, W); mask True = missing."""
        from genforge.modalities.images.masks import make_mask

        if not hasattr(self.objective, "complete"):
            raise ConfigError(f"{self.path}: the {self.family} family cannot complete images")
        x = torch.as_tensor(np.asarray(images))
        c, s = self.data_info["channels"], self.data_info["image_size"]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise DataError(f"input images of shape {tuple(x.shape)}; this model needs (N, {c}, "
                            f"{s}, {s})")
        _check_options(self.objective.complete, options, self.family)
        m = make_mask(mask, tuple(x.shape), seed=seed) if isinstance(mask, str) else mask.bool()
        with self._autocast():
            filled = self.objective.complete(to_model_range(x), m, seed=seed,
                                             condition=self._labels(label, x.shape[0]),
                                             **options)
        return from_model_range(filled)


PER_REQUEST = ("prompt",)  # options that each request of a session may set for itself


class SamplingSession:
    """Requests of one kind (the same options, with labels or without) sampled together,
    joining and leaving between steps. A diffusion model steps its reverse chain (a request
    arriving mid-chain waits one network call, not a whole chain), a text model its tokens
    (each request may bring its own prompt); a one-pass family (GAN, VAE) runs every request
    waiting in one pass per step.

        s = model.session({"steps": 10})
        s.add(1, {"n": 4, "seed": 0})
        while s.rows:
            for ticket, images in s.step(): ...      # what sample_batch gives each request
    """

    def __init__(self, model: GenerativeModel, options: dict[str, Any], chunk: int,
                 precision: str | None) -> None:
        options = {k: v for k, v in options.items() if k not in PER_REQUEST}
        self.model, self.options, self.chunk, self.precision = model, options, chunk, precision
        self.text = model.modality == "text"
        objective = model.objective
        self._chain = None
        _check_options(objective.sample, options, model.family)  # the usual message
        if hasattr(objective, "sampling_session"):
            self._chain = objective.sampling_session(size=chunk, **options)
        self._waiting: dict[int, dict[str, Any]] = {}  # one-pass families: the next pass
        self._rows: dict[int, int] = {}

    @property
    def rows(self) -> int:
        """Rows of the requests not done yet."""
        return sum(self._rows.values())

    def accepts(self, request: dict[str, Any]) -> bool:
        """Whether `request` can join (a text must fit the model's context; else it runs
        alone, `model.sample`)."""
        return not self.text or self._chain.fits(request.get("prompt"))

    def add(self, ticket: int, request: dict[str, Any]) -> None:
        """Join request {"n", "seed", "label" (optional)} under `ticket` (the caller's id)."""
        n, seed = int(request["n"]), int(request.get("seed", 0))
        self.model.check_count(n)
        labels = self.model._labels(request.get("label"), n)  # refused here, not in a pass
        if self.text:
            self._chain.add(ticket, n, request.get("prompt"))
        elif self._chain is not None:
            self._chain.add(ticket, seed, n, labels)
        else:
            self._waiting[ticket] = {**request, **self.options}
        self._rows[ticket] = n

    def remove(self, ticket: int) -> None:
        """Drop a request (its caller gave up); its rows leave the next step."""
        self._rows.pop(ticket, None)
        self._waiting.pop(ticket, None)
        if self._chain is not None:
            self._chain.remove(ticket)

    def step(self) -> list[tuple[int, Any]]:
        """One step of every request; (ticket, decoded samples) of the requests it ended."""
        if self._chain is None:
            tickets, requests = list(self._waiting), list(self._waiting.values())
            self._waiting.clear()
            done = list(zip(tickets, self.model._merged(requests, self.chunk, self.precision),
                            strict=True)) if requests else []
        else:
            with self.model._autocast(self.precision):
                ended = self._chain.advance()
            # decoded outside autocast, as `sample` does: audio's Griffin-Lim in fp32
            done = [(t, self.model.output.decode(x, self.model.data_info)) for t, x in ended]
        for ticket, _ in done:
            self._rows.pop(ticket, None)
        return done


def _secret(watermark: str | bytes) -> bytes:
    from genforge.labelling import secret_key

    key = secret_key(watermark)
    if not key:
        raise ConfigError("watermark: an empty key; set labelling.key or GENFORGE_WATERMARK_KEY")
    return key


def _check_options(fn: Any, options: dict[str, Any], family: str) -> None:
    """Refuse sampling options that this family's `sample` does not take, naming them."""
    accepted = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = sorted(accepted - {"n", "seed", "condition", "batch_size", "x", "mask",
                                     "on_text", "history", "logits_processors", "noise",
                                     "pad_to"})
        names = ", ".join("--" + u.replace("_", "-") for u in unknown)
        raise ConfigError(f"{names} does not apply to {family} models"
                          + (f"; they take {', '.join(allowed)}" if allowed else ""))


def is_transformers_folder(path: Path) -> bool:
    """A transformers model folder (config.json), not a genforge run (config.yaml)."""
    return path.is_dir() and (path / "config.json").exists() and not (path / "config.yaml").exists()


def load(run: str | Path, *, device: str = "cpu") -> GenerativeModel:
    """Rebuild a model from `run`: a run folder, its model.safetensors, or a transformers
    causal-LM folder (config.json, weights and tokenizer; nothing is downloaded)."""
    path = Path(run)
    if is_transformers_folder(path):
        from genforge.families.ar.pretrained import load_pretrained

        objective, info = load_pretrained(path)
        return GenerativeModel(None, objective, info, 0, path, family="ar",
                               modality="text").to(device)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.exists():
        raise ConfigError(f"{path}: no {MODEL_FILE}; is this a genforge run folder?")
    tensors, meta = read_model(file)
    if meta.get("format") != "genforge-model-v1":
        raise ConfigError(f"{file}: not a genforge model file (metadata format missing)")
    try:
        raw, data_info = json.loads(meta["config"]), json.loads(meta["data_info"])
    except (KeyError, ValueError) as err:
        raise DataError(f"{file}: its metadata is damaged ({type(err).__name__}: {err}); "
                        "copy the run folder again") from None
    cfg = build_run_config(raw, source=str(file))
    objective = FAMILIES[cfg.family].build(cfg.model, data_info)
    for name, state in split_state(tensors, list(objective.sampling_nets)).items():
        try:
            objective.nets[name].load_state_dict(state)
        except RuntimeError as err:  # missing, extra or reshaped tensors
            first = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
            raise DataError(f"{file}: the {name} weights do not fit its config "
                            f"({' '.join(first.split())[:200]}); the file was changed") from None
    for net in objective.nets.values():
        net.eval()
    return GenerativeModel(cfg, objective, data_info, int(meta.get("step", 0)), path).to(device)


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The saved config of a run, with the overrides that a resume may change."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: no config.yaml; --resume needs a genforge run folder")
    allowed = ("train.max_steps", "train.stop_after", "train.max_minutes", "log.")
    for text in overrides or []:
        key = text.split("=", 1)[0]
        if not key.startswith(allowed):
            raise ConfigError(
                f"override {key!r}: a resume keeps the run's config; only train.max_steps, "
                "train.stop_after, train.max_minutes and log.* may change"
            )
    raw = apply_overrides(read_yaml(path), overrides or [])
    raw["train"].setdefault("stop_after", None)
    if not any(o.startswith("train.stop_after") for o in overrides or []):
        raw["train"]["stop_after"] = None  # the stop that ended the run does not stop it again
    return build_run_config(raw, source=str(path))


def read_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images for `complete`: .npz/.npy arrays or a PNG/JPEG file; uint8 (N, C, H, W)."""
    from genforge.data.limits import check_bytes, check_pixels, npy_header_bytes, too_many_pixels
    from genforge.modalities.images.cifar import load_npz, to_nchw

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such input file")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".npy":
        try:
            with path.open("rb") as f:  # the header first: a huge claim is refused unread
                check_bytes(npy_header_bytes(f), str(path), "its header")
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        return to_nchw(array, str(path)), None
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is below
            check_pixels(*im.size, str(path))  # from the header, before decoding
            if im.mode.startswith("I;16"):  # 16-bit grey: its top 8 bits, not clipped
                array = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
            else:
                array = np.asarray(im.convert("L" if im.mode in ("L", "1", "LA") else "RGB"))
    except Image.DecompressionBombError as err:
        raise too_many_pixels(str(path), err) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable PNG/JPEG image ({type(err).__name__})") from None
    return to_nchw(array[None], str(path)), None
