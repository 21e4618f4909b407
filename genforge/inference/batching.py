"""Several requests in as few forward passes as their options allow, each request getting
bit for bit what it gets alone (`GenerativeModel.sample_batch` is this module's front).

A request is {"n", "seed", "label" (optional), **options}, as `GenerativeModel.sample` takes
them. Where the objective draws per-request noise (capability "merge": GAN, VAE, diffusion),
each request's rows come from its own generator seeded by its seed, and the network runs on
fixed-shape chunks of `chunk` rows (the last padded): a row's floats then do not depend on
its company. Elsewhere (text, series, tables) each request is its own `sample` call.
"""

from __future__ import annotations

from typing import Any

import torch

from genforge.errors import ConfigError
from genforge.inference.sampler import check_options
from genforge.runtime.noise import RowNoise

# rows per forward pass: every pass has this shape, so a row's floats do not depend on its
# company (measured: 8 rows cost a lone DDPM request about 3x one row)
EXACT_CHUNK = 8
MAX_SAMPLES = 1_000_000  # per `sample` call; tables stream any number (sample_chunks)
OWN_KEYS = ("n", "seed", "label")  # a request's own; the rest are sampling options


def sample_batch(model: Any, requests: list[dict[str, Any]], *, chunk: int = EXACT_CHUNK,
                 precision: str | None = None) -> list[Any]:
    """One list entry per request; requests with other options, or with and without a
    label, go to separate passes (see GenerativeModel.sample_batch)."""
    groups: dict[Any, list[int]] = {}
    for i, req in enumerate(requests):
        options = {k: v for k, v in req.items() if k not in OWN_KEYS}
        key = (repr(sorted(options.items())), req.get("label") is None)
        groups.setdefault(key, []).append(i)
    out: list[Any] = [None] * len(requests)
    for rows in groups.values():
        part = [requests[i] for i in rows]
        for i, result in zip(rows, merged(model, part, chunk, precision), strict=True):
            out[i] = result
    return out


def merged(model: Any, requests: list[dict[str, Any]], chunk: int,
           precision: str | None) -> list[Any]:
    """One forward pass for requests of one group (same options, labels all or none)."""
    def split(req: dict[str, Any]) -> tuple[int, int, Any, dict[str, Any]]:
        rest = {k: v for k, v in req.items() if k not in OWN_KEYS}
        return int(req["n"]), int(req.get("seed", 0)), req.get("label"), rest

    parts = [split(r) for r in requests]
    if not model.merges_requests:
        return [model.sample(n, seed=seed, label=label, precision=precision, **options)
                for n, seed, label, options in parts]
    if chunk < 1:
        raise ConfigError(f"chunk={chunk}: must be >= 1 rows")
    for n, *_ in parts:
        model.check_count(n)
    total = sum(n for n, *_ in parts)
    model.check_count(total)
    options = parts[0][3]
    check_options(model.objective, model.family_spec, "sample", options)
    labels = None
    if parts[0][2] is not None:
        labels = torch.cat([model._labels(label, n) for n, _, label, _ in parts])
    noise = RowNoise([(seed, n) for n, seed, *_ in parts])
    with model._autocast(precision):
        samples = model.objective.sample(total, seed=parts[0][1], condition=labels,
                                         noise=noise, pad_to=chunk, **options)
    decoded = model.output.decode(samples, model.data_info)
    out, start = [], 0
    for n, *_ in parts:
        out.append(decoded[start : start + n])
        start += n
    return out


def check_count(n: int, info: dict[str, Any]) -> None:
    """Refuse, before any work, a sample count that is not positive or whose samples would
    not fit in memory at once (the limit is named; ask for fewer, or in parts). `info`: the
    model's data_info."""
    from genforge.data.limits import MAX_INPUT_BYTES, human

    if n <= 0:
        raise ConfigError(f"n={n}: must be a positive number of samples")
    # float32 model output + its decoded copy; images know their size, others a guess
    per = 8 * int(info.get("channels", 1)) * int(info.get("image_size", 32)) ** 2
    cap = min(MAX_SAMPLES, max(1, MAX_INPUT_BYTES // per))
    if n > cap:
        raise ConfigError(f"n={n}: at most {cap:,} samples of this model per call "
                          f"(limits: {MAX_SAMPLES:,} samples, {human(MAX_INPUT_BYTES)} of "
                          "samples in memory); sample in parts with different seeds")
