"""Watermark benchmark: robustness, false positives and quality cost, for images and text.

    .venv/bin/python benchmarks/watermark.py                      # defaults: 64 + 200 images a size
    .venv/bin/python benchmarks/watermark.py --images 32 --fpr-images 100 --texts 32 --windows 100
        # what the committed results/watermark.json ran: 640 s on 2 cores
    .venv/bin/python benchmarks/watermark.py --images 16 --fpr-images 32 --texts 8   # smoke

Images (genforge.labelling.image_watermark): hosts are CIFAR-10 test images (../shared, a
lossy JPEG copy) upscaled with bicubic to each --sizes side; the watermark is embedded, then
the image is attacked (PNG re-encode, JPEG quality 75, a 0.9x resize, a 10 % crop: 90 % of each
side kept at a random offset) and the detector run. False positives: other CIFAR-10 test images,
upscaled the same way, never watermarked. Quality: PSNR of marked vs host (FID is left out:
it needs thousands of images per cell and the Inception weights; PSNR is per image).

Text (genforge.labelling.text_watermark): the TinyStories-260K llama2.c model from
../shared/weights, converted by genforge's converter, samples continuations of story prompts
at temperature 1 with and without the watermark (gamma 0.25, delta 2). Detection rate at 50,
100 and 200 new tokens; false positives on human text: held-out Shakespeare (the last 10 % of
data/text/tinyshakespeare.txt) and Tang poems (../shared/data/text/chinese/quantangshi.txt),
both through the same model's tokenizer, in 200-token windows; perplexity cost: the model's
own perplexity of its watermarked vs plain samples (no larger judge model is available here).

Writes benchmarks/results/watermark.json and prints the tables.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

from genforge.labelling import image_watermark as wm  # noqa: E402
from genforge.labelling.text_watermark import (  # noqa: E402
    DELTA,
    GAMMA,
    Z_THRESHOLD,
    detect_tokens,
)

KEY = b"benchmark-secret"
PROMPTS = ["Once upon a time", "One day, a little girl", "Tom and his dog",
           "The sun was shining", "Lily wanted to", "There was a big"]


# ------------------------------------------------------------------------------------ images
def _attacks(rng: np.random.Generator) -> dict:
    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return np.asarray(Image.open(buf))

    def jpeg75(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=75)
        return np.asarray(Image.open(buf).convert("RGB"))

    def resize09(a):
        h, w = a.shape[:2]
        return np.asarray(Image.fromarray(a).resize((round(w * 0.9), round(h * 0.9)),
                                                    Image.Resampling.BICUBIC))

    def crop10(a):
        h, w = a.shape[:2]
        ch, cw = round(h * 0.9), round(w * 0.9)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        return a[y : y + ch, x : x + cw]

    return {"png": png, "jpeg q75": jpeg75, "resize 0.9x": resize09, "crop 10%": crop10}


def bench_images(sizes: list[int], n_hosts: int, n_fpr: int) -> dict:
    data = np.load(SHARED / "data" / "cifar10" / "cifar10_test_jpeg.npz")["x"]
    order = np.random.default_rng(0).permutation(len(data))
    hosts, clean = data[order[:n_hosts]], data[order[n_hosts : n_hosts + n_fpr]]
    results = {}
    for size in sizes:
        def up(a, size=size):
            return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BICUBIC))

        attacks = _attacks(np.random.default_rng(1))
        found = {name: [] for name in [*attacks, "wrong key"]}
        bits = {name: [] for name in found}
        psnrs, t0 = [], time.perf_counter()
        for host in hosts:
            host = up(host)
            marked = wm.embed(host, KEY)
            psnrs.append(wm.psnr(host, marked))
            for name, attack in attacks.items():
                d = wm.detect(attack(marked), KEY)
                found[name].append(d.found)
                bits[name].append(d.bits_matched)
            d = wm.detect(marked, b"a wrong key")
            found["wrong key"].append(d.found)
            bits["wrong key"].append(d.bits_matched)
        t_marked = time.perf_counter() - t0
        t0 = time.perf_counter()
        false = [wm.detect(up(x), KEY) for x in clean]
        t_clean = time.perf_counter() - t0
        print(f"images {size}: done ({t_marked + t_clean:.0f} s)", file=sys.stderr, flush=True)
        results[str(size)] = {
            "detection_rate": {k: float(np.mean(v)) for k, v in found.items()},
            "mean_bits_matched": {k: float(np.mean(v)) for k, v in bits.items()},
            "false_positives": int(sum(d.found for d in false)), "clean_images": len(false),
            "clean_max_bits": int(max(d.bits_matched for d in false)),
            "clean_min_p": float(min(d.p_value for d in false)),
            "psnr_mean": float(np.mean(psnrs)), "psnr_min": float(np.min(psnrs)),
            "seconds_per_marked_image": t_marked / len(hosts),
            "seconds_per_clean_detection": t_clean / len(false),
        }
    return results


# -------------------------------------------------------------------------------------- text
def _model(folder: Path):
    import genforge
    from genforge.families.ar.convert import convert_llama2c

    weights = SHARED / "weights" / "tinystories260K"
    if not (folder / "config.json").exists():
        convert_llama2c(weights / "stories260K.bin", weights / "tok512.bin", folder)
    return genforge.load(str(folder))


def _new_ids(model, texts: list[str], prompt: str) -> list[list[int]]:
    start = len(model.prompt_ids(prompt))
    ids = [model.tokenizer.encode(t, add_special_tokens=True) for t in texts]
    return [row[start:] for row in ids]


def _perplexity(model, rows: list[list[int]], bos: int) -> float:
    nll, count = 0.0, 0
    for row in rows:
        ids = torch.tensor([[bos, *row]])
        lp = model.token_logprobs(ids)
        nll -= float(lp.sum())
        count += lp.numel()
    return math.exp(nll / count)


def _windows(ids: list[int], length: int, limit: int) -> list[list[int]]:
    return [ids[i : i + length] for i in range(0, len(ids) - length, length)][:limit]


def bench_text(n_texts: int, lengths: list[int], n_windows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(Path(tmp) / "stories260K")
        tok = model.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else 1
        rows = {"watermarked": [], "plain": []}
        for kind in rows:
            for i in range(n_texts):
                prompt = PROMPTS[i % len(PROMPTS)]
                texts = model.sample(1, seed=100 + i, prompt=prompt, temperature=1.0,
                                     max_new_tokens=max(lengths) + 20,
                                     watermark=KEY if kind == "watermarked" else None)
                rows[kind] += _new_ids(model, list(texts), prompt)
        print("text: samples done", file=sys.stderr, flush=True)
        by_length = {}
        for length in lengths:
            cell = {}
            for kind, samples in rows.items():
                usable = [r[:length] for r in samples if len(r) >= length]
                dets = [detect_tokens(r, KEY) for r in usable]
                cell[kind] = {"texts": len(usable),
                              "detected": float(np.mean([d.found for d in dets])) if dets else None,
                              "mean_z": float(np.mean([d.z for d in dets])) if dets else None}
            wrong = [detect_tokens(r[:length], b"a wrong key") for r in rows["watermarked"]
                     if len(r) >= length]
            cell["watermarked, wrong key"] = {"texts": len(wrong),
                                              "detected": float(np.mean([d.found for d in wrong]))}
            by_length[str(length)] = cell
        shakespeare = (REPO / "data" / "text" / "tinyshakespeare.txt").read_text()
        human = {"shakespeare (held-out 10%)": shakespeare[int(len(shakespeare) * 0.9):]}
        tang = SHARED / "data" / "text" / "chinese" / "quantangshi.txt"
        if tang.exists():
            human["tang poems"] = tang.read_text(encoding="utf-8")[:200_000]
        false = {}
        for name, text in human.items():
            ids = tok.encode(text, add_special_tokens=False)
            dets = [detect_tokens(w, KEY) for w in _windows(ids, 200, n_windows)]
            false[name] = {"windows": len(dets), "false_positives": int(sum(d.found for d in dets)),
                           "mean_z": float(np.mean([d.z for d in dets])),
                           "max_z": float(np.max([d.z for d in dets]))}
        ppl = {kind: _perplexity(model, [r[: max(lengths)] for r in samples], bos)
               for kind, samples in rows.items()}
    return {"model": "tinystories260K (llama2.c, converted)", "gamma": GAMMA, "delta": DELTA,
            "z_threshold": Z_THRESHOLD, "temperature": 1.0, "by_length": by_length,
            "human_text": false, "perplexity": ppl}


# ------------------------------------------------------------------------------------ report
def print_tables(result: dict) -> None:
    images = result.get("images", {})
    if images:
        attacks = list(next(iter(images.values()))["detection_rate"])
        print("\nImage watermark: detection rate (mean bits matched of 64)")
        print("| size | " + " | ".join(attacks) + " |")
        print("|---" * (len(attacks) + 1) + "|")
        for size, r in images.items():
            cells = [f"{r['detection_rate'][a]:.2f} ({r['mean_bits_matched'][a]:.1f})"
                     for a in attacks]
            print(f"| {size}x{size} | " + " | ".join(cells) + " |")
        print("\nImage watermark: false positives on clean CIFAR-10 test images, quality cost")
        print("| size | false positives | max bits matched | min p | PSNR mean (min) dB | "
              "s/marked image | s/clean detection |")
        print("|---|---|---|---|---|---|---|")
        for size, r in images.items():
            print(f"| {size}x{size} | {r['false_positives']}/{r['clean_images']} | "
                  f"{r['clean_max_bits']} | {r['clean_min_p']:.2g} | {r['psnr_mean']:.1f} "
                  f"({r['psnr_min']:.1f}) | {r['seconds_per_marked_image']:.2f} | "
                  f"{r['seconds_per_clean_detection']:.2f} |")
    text = result.get("text")
    if text:
        print(f"\nText watermark ({text['model']}, gamma {text['gamma']}, delta "
              f"{text['delta']}, z >= {text['z_threshold']}): detection rate (mean z)")
        print("| new tokens | watermarked | plain samples | watermarked, wrong key |")
        print("|---|---|---|---|")
        for length, cell in text["by_length"].items():
            w, p, k = cell["watermarked"], cell["plain"], cell["watermarked, wrong key"]
            print(f"| {length} | {w['detected']:.2f} (z {w['mean_z']:.1f}, n={w['texts']}) | "
                  f"{p['detected']:.2f} (z {p['mean_z']:.1f}) | {k['detected']:.2f} |")
        print("\nText watermark: false positives on human text (200-token windows)")
        print("| text | windows | false positives | mean z | max z |")
        print("|---|---|---|---|---|")
        for name, r in text["human_text"].items():
            print(f"| {name} | {r['windows']} | {r['false_positives']} | {r['mean_z']:.2f} | "
                  f"{r['max_z']:.2f} |")
        ppl = text["perplexity"]
        print(f"\nPerplexity (the model's own) of its samples: plain {ppl['plain']:.2f}, "
              f"watermarked {ppl['watermarked']:.2f} "
              f"(+{100 * (ppl['watermarked'] / ppl['plain'] - 1):.0f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--images", type=int, default=64, help="watermarked hosts per size")
    parser.add_argument("--fpr-images", type=int, default=200, help="clean images per size")
    parser.add_argument("--texts", type=int, default=48, help="samples per kind")
    parser.add_argument("--windows", type=int, default=200, help="human windows per corpus")
    parser.add_argument("--skip", choices=["images", "text"], default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "watermark.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor()
                    or platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "args": vars(args) | {"out": os.path.relpath(args.out, REPO)}}
    t0 = time.perf_counter()
    if args.skip != "images":
        result["images"] = bench_images([int(s) for s in args.sizes.split(",")], args.images,
                                        args.fpr_images)
    if args.skip != "text":
        result["text"] = bench_text(args.texts, [50, 100, 200], args.windows)
    result["seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print_tables(result)
    print(f"\n{result['seconds']:.0f} s; wrote {os.path.relpath(args.out, REPO)}")


if __name__ == "__main__":
    main()
