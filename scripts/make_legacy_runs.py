"""Train tiny run folders with the current code and record what they sample, so that a later
change to genforge can be checked against them (tests/test_legacy_runs.py).

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/make_legacy_runs.py [--out tests/legacy_runs]

One run per family x modality of the registry (tables: one per synthesizer, AIM and MST too),
a conditional GAN, and runs rewritten into an older on-disk format (no modality, privacy,
labelling or preset in their config). Each folder keeps what `genforge.load` reads
(model.safetensors, its config and data_info in the metadata) plus config.yaml and run.json;
next to it expected.npz / expected.json / expected_*.csv hold the outputs of the seeded calls
that MANIFEST.json lists. The training data is made in a temporary folder (or read from the
repo's bundled data/); paths in the configs are relative, so no machine path is committed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GENFORGE_AUTO_PRECISION", "fp32")

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from test_audio import DIGITS, RATE, tone  # noqa: E402
from test_legacy_runs import call as run_call  # noqa: E402  the replay the test makes
from test_marginal import SCHEMA as MARGINAL_SCHEMA  # noqa: E402
from test_marginal import known_frame  # noqa: E402
from test_tables import TINY as TINY_TABLE  # noqa: E402
from test_tables import toy_frame  # noqa: E402

import genforge  # noqa: E402
from genforge.registry import load_config  # noqa: E402
from genforge.training.checkpoint import MODEL_FILE  # noqa: E402

from conftest import tiny  # noqa: E402

FP32 = ["train.precision=fp32", "train.max_steps=2", "log.sample_every=0",
        "log.checkpoint_every=2"]
MARGINAL = ["log.progress=false", "log.tensorboard=false", "log.sample_n=0",
            "model.estimation_iters=300", "model.round_iters=50", "model.bins=8",
            "data.path=marginal.csv", "data.target=b", "data.schema=marginal.schema.yaml",
            "privacy.epsilon=20", "privacy.delta=1e-6"]
LONGER_GAN = ["train.max_steps=100", "model.width=4", "log.every=50",
              "log.checkpoint_every=100"]
TABLE = ["data.path=toy.csv", "data.target=income", *TINY_TABLE, "train.precision=fp32"]
# the keys that runs saved before modalities, DP-SGD, labelling and presets lack; the loader
# reads them as defaults (genforge.registry.build_run_config)
OLD_KEYS = ["modality", "privacy", "labelling", "preset"]

# name -> (preset, overrides); the family and modality are read from the trained run
RUNS: dict[str, tuple[str, list[str]]] = {
    # a DCGAN's last layer starts near zero: after 2 steps every pixel is 127 or 128
    "gan-images": ("mnist-dcgan", tiny("gan", *FP32, *LONGER_GAN)),
    "gan-images-conditional": ("mnist-cdcgan", tiny("gan", *FP32, *LONGER_GAN)),
    "gan-audio": ("fsdd-cdcgan", tiny("gan", "train.batch_size=8", *FP32, *LONGER_GAN)),
    "vae-images": ("mnist-vae", tiny("vae", "model.hidden=8", *FP32)),
    "diffusion-images": ("mnist-ddpm", tiny("diffusion", *FP32)),
    "diffusion-audio": ("fsdd-diffusion", tiny("diffusion", "train.batch_size=8", *FP32)),
    # long enough that greedy texts are not one repeated character
    "ar-text": ("shakespeare-char", tiny("ar", *FP32, "data.limit=20000", "train.max_steps=300",
                                         "train.lr=1e-2", "train.batch_size=32",
                                         "log.every=100", "log.checkpoint_every=300")),
    "series-series": ("airline-series", tiny("series", *FP32)),
    **{f"tabular-{kind}": ("tables", [f"model.kind={kind}", *TABLE])
       for kind in ("copula", "tvae", "ctgan", "tabddpm")},
    "tabular-mst": ("tables", ["model.kind=mst", *MARGINAL]),
    "tabular-aim": ("tables", ["model.kind=aim", "model.rounds=4", "model.max_model_size=1",
                               *MARGINAL]),
}
OLD_FORMAT = {"gan-images-v0": "gan-images", "vae-images-v0": "vae-images"}


def calls_for(name: str, model: Any) -> list[dict[str, Any]]:
    """The seeded calls whose outputs a run keeps: sample (with options where the family has
    them) and complete where the family completes."""
    family, modality = model.family, model.modality
    calls: list[dict[str, Any]] = [{"name": "sample_seed0", "method": "sample", "n": 6,
                                    "seed": 0, "options": {}}]
    if modality == "tables":
        calls[0]["n"] = 20
        calls.append({"name": "sample_seed1", "method": "sample", "n": 20, "seed": 1,
                      "options": {}})
        where = "a=x" if name in ("tabular-mst", "tabular-aim") else "sex=Female"
        calls.append({"name": "sample_where", "method": "sample", "n": 10, "seed": 2,
                      "options": {"where": where}})
        if name == "tabular-tabddpm":
            calls.append({"name": "sample_temperature", "method": "sample", "n": 10,
                          "seed": 3, "options": {"temperature": 0.5}})
        calls.append({"name": "complete_rows", "method": "complete_rows", "seed": 4})
        return calls
    if modality == "text":  # greedy: argmax is robust to another CPU's last bits
        calls[0]["options"] = {"prompt": "ROMEO:", "max_new_tokens": 16, "temperature": 0.0}
        calls.append({"name": "sample_first", "method": "sample", "n": 1, "seed": 1,
                      "options": {"prompt": "First ", "max_new_tokens": 16, "temperature": 0.0}})
        # sampled: a token flips only where a uniform draw lands within float rounding of a
        # boundary of the cumulative probabilities (about 1e-6 a token)
        calls.append({"name": "sample_temperature1", "method": "sample", "n": 3, "seed": 7,
                      "options": {"max_new_tokens": 16, "temperature": 1.0}})
        return calls
    if modality == "series":
        calls[0]["options"] = {"horizon": 6}
        calls.append({"name": "sample_synthetic", "method": "sample", "n": 3, "seed": 1,
                      "options": {"synthetic": True, "length": 10}})
        return calls
    if modality == "audio":  # waves of 5120 floats: few of them
        calls[0]["n"] = 2
        calls.append({"name": "sample_label", "method": "sample", "n": 2, "seed": 2,
                      "label": 1, "options": {}})
        if family == "diffusion":
            calls.append({"name": "sample_guided", "method": "sample", "n": 2, "seed": 3,
                          "label": 2, "options": {"scheduler": "ddim", "eta": 0.0, "steps": 3,
                                                  "guidance": 2.0}})
        return calls
    calls.append({"name": "sample_seed1", "method": "sample", "n": 4, "seed": 1, "options": {}})
    if model.num_classes and getattr(model.config.model, "conditional", False):
        calls.append({"name": "sample_label", "method": "sample", "n": 4, "seed": 2,
                      "label": 3, "options": {}})
    if family == "diffusion":
        calls.append({"name": "sample_ddim", "method": "sample", "n": 4, "seed": 3,
                      "options": {"scheduler": "ddim", "eta": 0.0, "steps": 3}})
        calls.append({"name": "sample_ddpm", "method": "sample", "n": 4, "seed": 4,
                      "options": {"scheduler": "ddpm", "steps": 3}})
    if modality == "images" and family in ("vae", "diffusion"):
        calls.append({"name": "complete_bottom", "method": "complete", "mask": "bottom-half",
                      "seed": 5})
    return calls


def completion_inputs(model: Any, calls: list[dict[str, Any]], folder: Path,
                      arrays: dict[str, np.ndarray]) -> None:
    """Fixed inputs of the completion calls: images of the model's own seed-99 samples, rows
    of its seed-98 sample with a few cells emptied."""
    for call in calls:
        if call["method"] == "complete":
            arrays[call["name"] + "_input"] = model.sample(3, seed=99, precision="fp32").numpy()
        if call["method"] == "complete_rows":
            rows = model.sample(6, seed=98, precision="fp32")
            rng = np.random.default_rng(0)
            target = model.data_info.get("target")
            for column in rows.columns:
                if column != target:
                    rows[column] = rows[column].mask(rng.random(len(rows)) < 0.4)
            rows.to_csv(folder / f"{call['name']}_input.csv", index=False)


def record_outputs(model: Any, calls: list[dict[str, Any]], folder: Path) -> None:
    """Run each call and write its output: arrays to expected.npz, texts to expected.json,
    tables to expected_<call>.csv."""
    arrays: dict[str, np.ndarray] = {}
    completion_inputs(model, calls, folder, arrays)
    if arrays:
        np.savez_compressed(folder / "expected.npz", **arrays)
    texts: dict[str, list[str]] = {}
    for call in calls:
        out = run_call(model, call, folder)
        if isinstance(out, pd.DataFrame):
            out.to_csv(folder / f"expected_{call['name']}.csv", index=False)
        elif isinstance(out, list):
            texts[call["name"]] = out
        else:
            arrays[call["name"]] = np.asarray(out.numpy() if torch.is_tensor(out) else out)
    if arrays:
        np.savez_compressed(folder / "expected.npz", **arrays)
    if texts:
        (folder / "expected.json").write_text(json.dumps(texts, indent=1, ensure_ascii=False)
                                              + "\n")


def make_data(work: Path) -> None:
    """The training data that the repo does not bundle: FSDD-like tones, two toy tables."""
    import soundfile as sf

    folder = work / "audio" / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for d, freq in DIGITS.items():
        for s, speaker in enumerate(("ann", "bob")):
            for i in range(8):
                wave = tone(freq * (1 + 0.05 * s), 0.25 + 0.05 * ((i + s) % 6), seed=i + 10 * s)
                sf.write(folder / f"{d}_{speaker}_{i}.wav", wave, RATE, subtype="PCM_16")
    toy_frame(200).to_csv(work / "toy.csv", index=False)
    known_frame(2000).to_csv(work / "marginal.csv", index=False)
    (work / "marginal.schema.yaml").write_text(MARGINAL_SCHEMA)


def keep_only_loadable(run: Path) -> None:
    """Drop what loading does not read: training state, logs, sample images."""
    for child in run.iterdir():
        if child.name not in (MODEL_FILE, "config.yaml", "run.json"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    info = json.loads((run / "run.json").read_text())
    info["argv"] = ["scripts/make_legacy_runs.py"]  # not the machine's path
    (run / "run.json").write_text(json.dumps(info, indent=1) + "\n")


def to_old_format(source: Path, run: Path) -> None:
    """A copy of `source` whose config (model metadata and config.yaml) lacks OLD_KEYS."""
    import yaml
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, run)
    tensors = load_file(run / MODEL_FILE)
    from safetensors import safe_open

    with safe_open(run / MODEL_FILE, "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    for key in OLD_KEYS:
        config.pop(key)
    meta["config"] = json.dumps(config)
    save_file(tensors, run / MODEL_FILE, metadata=meta)
    raw = yaml.safe_load((run / "config.yaml").read_text())
    for key in OLD_KEYS:
        raw.pop(key)
    (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


EVAL_RUN = "series-series"  # its eval takes a second (the bundled airline series)
EVAL_ARGS = ["--n", "20", "--seed", "0", "--precision", "fp32", "--no-progress"]


def record_eval(run: Path) -> dict[str, Any]:
    """`genforge eval RUN` once; its metrics go to expected_eval.json."""
    from typer.testing import CliRunner

    from genforge.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        result = CliRunner().invoke(app, ["eval", str(run), *EVAL_ARGS, "--out", tmp + "/eval"])
        if result.exit_code != 0:
            raise RuntimeError(result.output)
        metrics = json.loads((Path(tmp) / "eval" / "metrics.json").read_text())["metrics"]
    (run / "expected_eval.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return {"cli": ["eval", "RUN", *EVAL_ARGS], "file": "expected_eval.json"}


def has_avx512_bf16() -> bool:
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "legacy_runs")
    args = parser.parse_args()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.set_num_threads(1)  # float reductions then do not depend on the core count
    manifest: dict[str, Any] = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.strip(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"avx512_bf16": has_avx512_bf16(), "torch": torch.__version__,
                    "threads": 1},
        "command": "PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/make_legacy_runs.py",
        "runs": {},
    }
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_data(work)
        os.chdir(work)  # the configs keep relative data paths
        try:
            for name, (preset, overrides) in RUNS.items():
                cfg = load_config(preset, overrides)
                run = genforge.train(cfg, out=out / name, data_root=".").run_dir
                keep_only_loadable(run)
                model = genforge.load(run)
                model.precision = "fp32"
                calls = calls_for(name, model)
                record_outputs(model, calls, run)
                manifest["runs"][name] = {
                    "family": model.family, "modality": model.modality, "preset": preset,
                    "overrides": overrides, "format": "current", "calls": calls}
                print(f"{name}: {sum(f.stat().st_size for f in run.iterdir())} bytes")
        finally:
            os.chdir(here)
    for name, source in OLD_FORMAT.items():
        to_old_format(out / source, out / name)
        for file in (out / name).iterdir():
            if file.name.startswith("expected"):
                file.unlink()
        model = genforge.load(out / name)
        model.precision = "fp32"
        calls = manifest["runs"][source]["calls"]
        record_outputs(model, calls, out / name)
        manifest["runs"][name] = {**manifest["runs"][source], "format": "old",
                                  "copy_of": source, "dropped_keys": OLD_KEYS}
    manifest["runs"][EVAL_RUN]["eval"] = record_eval(out / EVAL_RUN)
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
