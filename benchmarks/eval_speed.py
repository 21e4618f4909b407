"""Evaluation on CPU: feature-extraction speed, FID against sample size, and the baselines.

    .venv/bin/python benchmarks/eval_speed.py                     # full run (an hour or more)
    .venv/bin/python benchmarks/eval_speed.py --sizes 200,500 --speed-n 200 --inception-speed-n 8 \
        --inception-sizes 50,100 --inception-real-n 100 --out /tmp/eval_speed.json   # smoke

Measures, in this order:
1. the cached domain classifiers (MNIST, Fashion-MNIST): test accuracy against the bar
   (training them first if they are missing, as `genforge eval` would);
2. images/s of feature extraction for the domain classifier and InceptionV3, fp32 and bf16
   (median of --repeats timed passes after one warm-up batch);
3. FID (and KID) of n MNIST training images against the MNIST test split, for n in --sizes:
   a real-vs-real FID is what a perfect generator would score, and its fall with n is FID's
   bias (FID is not comparable across sample sizes);
4. real-vs-real baselines in domain features: two disjoint halves of the MNIST test split, and
   MNIST test vs Fashion-MNIST test (when ../shared/data/fashion-mnist exists).
Prints a table and writes every number to benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from genforge.config import DataConfig
from genforge.eval import metrics as M
from genforge.eval.images.classifier import ACCURACY_BAR, accuracy, domain_classifier
from genforge.eval.images.features import InceptionExtractor, extract, find_inception
from genforge.modalities.images.data import load_images

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def classifier_checks(datasets: list[str]) -> list[dict[str, Any]]:
    rows = []
    for dataset in datasets:
        root = SHARED_DATA if dataset == "fashion-mnist" else None
        if root is not None and not (root / dataset).is_dir():
            continue
        clf = domain_classifier(dataset, root)
        test = load_images(DataConfig(dataset=dataset, split="test"), root)
        measured = accuracy(clf.net, test)
        rows.append({"dataset": dataset, "file": str(clf.path), "test_accuracy": measured,
                     "bar": ACCURACY_BAR[dataset], "meets_bar": measured >= ACCURACY_BAR[dataset],
                     "epochs": clf.meta["settings"]["epochs"],
                     "train_seconds": clf.meta["train_seconds"]})
    return rows


def throughput(extractor: Any, images: torch.Tensor, batch_size: int, repeats: int) -> dict:
    extractor(images[:batch_size])  # warm-up: allocator, oneDNN kernels, first-call overheads
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        extract(extractor, images, batch_size=batch_size, progress=False)
        rates.append(len(images) / (time.perf_counter() - start))
    return {"images": len(images), "batch_size": batch_size,
            "images_per_s": statistics.median(rates), "all": rates}


def fid_vs_n(extractor: Any, train: torch.Tensor, test: torch.Tensor, sizes: list[int],
             batch_size: int, seed: int) -> list[dict[str, Any]]:
    """n training images (nested prefixes of one seeded permutation) against `test`."""
    real = extract(extractor, test, batch_size=batch_size, desc="test").features
    mu_r, sigma_r = M.mean_cov(real)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    fake_all = extract(extractor, train[order[: max(sizes)]], batch_size=batch_size,
                       desc="train").features
    rows = []
    for n in sizes:
        fake = fake_all[:n]
        kid = M.kid(real, fake, subsets=100, subset_size=min(1000, n, len(real)), seed=seed)
        rows.append({"n": n, "real_n": len(real),
                     "fid": M.frechet_distance(*M.mean_cov(fake), mu_r, sigma_r),
                     "kid": kid["mean"], "kid_se": kid["se"]})
    return rows


def baselines(clf: Any, test: torch.Tensor, batch_size: int) -> dict[str, float]:
    f = extract(clf, test, batch_size=batch_size, desc="mnist test").features
    out = {"mnist_test_halves_fid": M.frechet_distance(*M.mean_cov(f[0::2]),
                                                       *M.mean_cov(f[1::2]))}
    out.update({f"mnist_test_halves_{k}": v
                for k, v in M.precision_recall_density_coverage(f[0::2], f[1::2]).items()})
    if (SHARED_DATA / "fashion-mnist").is_dir():
        fashion = load_images(DataConfig(dataset="fashion-mnist", split="test"), SHARED_DATA)
        g = extract(clf, fashion.images, batch_size=batch_size, desc="fashion test").features
        out["mnist_vs_fashion_fid"] = M.frechet_distance(*M.mean_cov(f), *M.mean_cov(g))
    return out


class PlainInception:
    """The reference: what one writes by hand over the same TorchScript file, one forward pass
    per batch (the issue's "plain TorchScript loop")."""

    name = "plain-torchscript-loop"
    dim = 2048

    def __init__(self, path: Path) -> None:
        self.net = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = images.float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear",
                                            align_corners=False)
        return self.net((x - 128) / 128), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="n for domain FID vs n")
    parser.add_argument("--inception-sizes", default="1000,5000,10000")
    parser.add_argument("--inception-real-n", type=int, default=10000,
                        help="MNIST test images as the Inception reference")
    parser.add_argument("--speed-n", type=int, default=5000, help="images, domain speed")
    parser.add_argument("--inception-speed-n", type=int, default=100)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-inception", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/eval_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    from genforge.runtime.precision import bf16_native

    result: dict[str, Any] = {"args": vars(args), "torch": torch.__version__,
                              "bf16_native": bf16_native("cpu")[1],
                              "cpu": platform.processor() or platform.machine(),
                              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result["classifiers"] = classifier_checks(["mnist", "fashion-mnist"])
    train = load_images(DataConfig(dataset="mnist", split="train")).images
    test = load_images(DataConfig(dataset="mnist", split="test")).images
    clf = domain_classifier("mnist")
    inception_path = None if args.skip_inception else find_inception()

    speed = []
    for precision in args.precisions.split(","):
        clf.precision = precision
        speed.append({"features": "domain", "precision": precision,
                      **throughput(clf, test[: args.speed_n], 500, args.repeats)})
        if inception_path is not None:
            net = InceptionExtractor(inception_path, precision=precision)
            speed.append({"features": "inception", "precision": precision,
                          **throughput(net, test[: args.inception_speed_n], args.batch_size,
                                       args.repeats)})
            if precision == "fp32":  # side by side: the same file, batch and threads
                plain = PlainInception(inception_path)
                speed.append({"features": "inception-plain", "precision": "fp32",
                              **throughput(plain, test[: args.inception_speed_n],
                                           args.batch_size, args.repeats)})
    clf.precision = "fp32"
    result["speed"] = speed
    result["fid_vs_n"] = {"domain": fid_vs_n(clf, train, test, ints(args.sizes), 500, args.seed)}
    if inception_path is not None and ints(args.inception_sizes):  # "" skips it (slow on a CPU)
        net = InceptionExtractor(inception_path)
        result["fid_vs_n"]["inception"] = fid_vs_n(
            net, train, test[: args.inception_real_n], ints(args.inception_sizes),
            args.batch_size, args.seed)
    result["baselines_domain"] = baselines(clf, test, 500)
    result["seconds"] = round(time.perf_counter() - started, 1)

    report(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


def report(result: dict[str, Any]) -> None:
    print(f"\nthreads {result['args']['threads']}, torch {result['torch']}")
    print("\ndomain classifiers")
    for row in result["classifiers"]:
        print(f"  {row['dataset']:<14} test accuracy {row['test_accuracy']:.4f} (bar "
              f"{row['bar']:.2f}: {'meets' if row['meets_bar'] else 'MISSES'}), "
              f"{row['epochs']} epochs, trained in {row['train_seconds']} s")
    print("\nfeature extraction            images/s")
    for row in result["speed"]:
        print(f"  {row['features']:<10} {row['precision']:<5} {row['images_per_s']:>12.1f}"
              f"   ({row['images']} images)")
    for name, rows in result["fid_vs_n"].items():
        print(f"\nreal vs real, {name} features: n MNIST train images vs "
              f"{rows[0]['real_n']} test images")
        print("         n        FID        KID     KID se")
        for r in rows:
            print(f"  {r['n']:>8} {r['fid']:>10.4f} {r['kid']:>10.5f} {r['kid_se']:>10.5f}")
    print("\nbaselines (domain features)")
    for key, value in result["baselines_domain"].items():
        print(f"  {key:<32} {value:.4f}")
    print(f"\ntotal {result['seconds']} s")


if __name__ == "__main__":
    main()
