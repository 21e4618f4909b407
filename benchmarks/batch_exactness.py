"""Does a row's output depend on the batch it ran in? And does `sample_batch` make it not?

    .venv/bin/python benchmarks/batch_exactness.py --threads 1   # as the committed JSON

For preset-sized networks (weights as initialised with torch.manual_seed(0): kernel choice
depends on shapes, not on trained values) of DCGAN, conditional DCGAN, MLP GAN, MLP VAE and a
DDPM UNet (DDIM, few steps), and a tabular TVAE decoder:
1. kernels: the same inputs at batch sizes 1..64 against batch 64, per row (max |diff|, and
   how many batch sizes differ at all);
2. `GenerativeModel.sample_batch`: a request (n=1..3) merged with company filling the pass to
   1..64 rows against the same request alone: uint8 images must be equal bit for bit; also
   against plain `sample(n, seed)` (the CLI's path: same noise, unpadded passes);
3. the cost of the fixed-shape chunks: CPU seconds of one lone n=1 request, chunk 1/4/8/16.
Writes benchmarks/results/batch_exactness.json. CPU time, not wall time (a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import genforge
from genforge.api import GenerativeModel
from genforge.registry import FAMILIES, get_modality

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODELS = {"dcgan": ("mnist-dcgan", []), "cdcgan": ("mnist-cdcgan", []),
          "mlp-gan": ("mnist-gan", []), "mlp-vae": ("mnist-vae", []),
          "ddpm-ddim4": ("mnist-ddpm", ["model.sampling_steps=4"])}


def build(preset: str, overrides: list[str]) -> GenerativeModel:
    cfg = genforge.load_config(preset, overrides)
    info = get_modality(cfg.modality or FAMILIES[cfg.family].modalities[0]).load(
        cfg.data, DATA).info()
    torch.manual_seed(0)
    objective = FAMILIES[cfg.family].build(cfg.model, info)
    for net in objective.nets.values():
        net.eval()
    return GenerativeModel(cfg, objective, info, 0, REPO)


def kernels(model: GenerativeModel) -> dict[str, object]:
    """Row outputs at batch b vs batch 64, for the sampling network's forward pass."""
    obj = model.objective
    if model.family == "diffusion":
        unet, t = obj.nets["unet"], torch.tensor(500)
        fn, shape = (lambda x: unet(x, t, return_dict=False)[0]), tuple(obj.shape)
    elif model.family == "gan":
        G = obj.nets["generator"]
        def fn(z):
            return (G(z, (z[:, 0] > 0).long() if obj.num_classes else None))
        shape = (obj.cfg.latent_dim,)
    else:
        V = obj.nets["vae"]
        fn, shape = (lambda z: V.decode(z, None)), (obj.cfg.latent_dim,)
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = fn(x)
        diffs = {b: float((fn(x[:b]) - full[:b]).abs().max()) for b in range(1, 65)}
    return {"sizes_differing_from_64": [b for b, d in diffs.items() if d > 0],
            "max_abs_diff": max(diffs.values())}


def tvae_kernels() -> dict[str, object]:
    """A tables model's decoder (TVAE at the adult-tvae preset's widths, a 166-wide row as
    Adult's) through the same batch-size check. Tables requests are not merged (a seeded one
    runs alone), so this says what merging them would have to handle."""
    from genforge.families.tabular.nets import TVAE

    torch.manual_seed(0)
    decoder = TVAE(166, 128, 2, 128, 6, 10).eval().decoder
    z = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = decoder(z)
        diffs = {b: float((decoder(z[:b]) - full[:b]).abs().max()) for b in range(1, 65)}
    return {"sizes_differing_from_64": [b for b, d in diffs.items() if d > 0],
            "max_abs_diff": max(diffs.values())}


def merged(model: GenerativeModel, chunk: int) -> dict[str, object]:
    """A request alone vs merged with company of 0..63 rows (it sits first, middle or last)."""
    mismatches, checked, plain_flips = 0, 0, 0
    for total in range(1, 65):
        n = min(3, total)
        me = {"n": n, "seed": 1000 + total}
        company = [{"n": 1, "seed": 5000 + total * 64 + i} for i in range(total - n)]
        alone = model.sample_batch([me], chunk=chunk)[0]
        at = (0, len(company) // 2, len(company))[total % 3]
        got = model.sample_batch([*company[:at], me, *company[at:]], chunk=chunk)[at]
        checked += 1
        mismatches += not torch.equal(alone, got)
        plain = model.sample(n, seed=me["seed"])
        plain_flips += int((plain != alone).sum())
    return {"requests_checked": checked, "merged_vs_alone_mismatches": mismatches,
            "uint8_values_differing_from_plain_sample": plain_flips}


def cost(model: GenerativeModel) -> dict[str, float]:
    out = {"plain_sample_n1": _cpu(lambda: model.sample(1, seed=0))}
    for chunk in (1, 4, 8, 16):
        out[f"chunk{chunk}_n1"] = _cpu(lambda c=chunk: model.sample_batch([{"n": 1, "seed": 0}],
                                                                           chunk=c))
    out["chunk8_n64_per_request"] = _cpu(lambda: model.sample_batch(
        [{"n": 1, "seed": i} for i in range(64)], chunk=8)) / 64
    return {k: round(v, 4) for k, v in out.items()}


def _cpu(fn, repeats: int = 3) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/batch_exactness.json"))
    parser.add_argument("--models", nargs="+", default=[*MODELS, "tvae-decoder"],
                        choices=[*MODELS, "tvae-decoder"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, object] = {}
    if "tvae-decoder" in args.models:
        results["tvae-decoder"] = {"kernels": tvae_kernels()}
        print("tvae-decoder", json.dumps(results["tvae-decoder"]), flush=True)
    for name, (preset, overrides) in MODELS.items():
        if name not in args.models:
            continue
        model = build(preset, overrides)
        results[name] = {"kernels": kernels(model), "sample_batch_chunk8": merged(model, 8),
                         "cpu_seconds": cost(model)}
        print(name, json.dumps(results[name]), flush=True)
    record = {"command": "python benchmarks/batch_exactness.py " + " ".join(sys.argv[1:]),
              "machine": _machine(),
              "torch": torch.__version__, "threads": args.threads, "results": results}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
