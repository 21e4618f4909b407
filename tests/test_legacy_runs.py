"""Run folders written by earlier code still load and sample what they sampled then.

tests/legacy_runs/ holds tiny runs of every family x modality (scripts/make_legacy_runs.py
trained them, at the commit MANIFEST.json names), two of them rewritten into the older format
whose config lacks modality, privacy, labelling and preset, and the outputs of seeded calls
made when they were written. Each call is made again through the public API and compared:
images uint8 within 1 (all but 0.5 % of pixels, for another CPU's float kernels), floats to
rtol 1e-4 / atol 1e-5, greedy texts equal, tables' categories equal and numbers close. Audio
waves to a relative L2 error of 5e-3: with AVX2 kernels (ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 on the AVX-512 machine that recorded them) the diffusion-audio waves
moved by up to 1.6e-3 (relative L2 7.4e-4; another seed: 1.48), everything else stayed within
the bounds above. The CLI samples two of the runs once and evaluates the series run once.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import genforge
from genforge.cli import app

from skips import require

LEGACY = Path(__file__).resolve().parent / "legacy_runs"
MANIFEST = json.loads((LEGACY / "MANIFEST.json").read_text())
RUNS = MANIFEST["runs"]
CASES = [(name, call["name"]) for name, run in RUNS.items() for call in run["calls"]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runs were recorded (float sums follow the blocking)
    yield
    torch.set_num_threads(threads)


_models: dict[str, genforge.GenerativeModel] = {}
# the optional packages a run needs (pyproject's extras); a partial install skips it
NEEDS = {"diffusion": "diffusers", "ar": "transformers", "tabular": "pandas",
         "audio": "soundfile", "tabular-mst": "mbi", "tabular-aim": "mbi"}


def model_of(name: str) -> genforge.GenerativeModel:
    run = RUNS[name]
    for key in (run["family"], run["modality"], name, run.get("copy_of")):
        if key in NEEDS:
            require(NEEDS[key])
    if name not in _models:
        model = genforge.load(LEGACY / name)
        model.precision = "fp32"  # complete and complete_rows compute in the model's
        _models[name] = model
    return _models[name]


def call(model, spec: dict, folder: Path):
    """The public API call that `spec` (a MANIFEST.json entry) records; the script that
    wrote the runs (scripts/make_legacy_runs.py) records its outputs through this too."""
    if spec["method"] == "sample":
        return model.sample(spec["n"], seed=spec["seed"], label=spec.get("label"),
                            precision="fp32", **spec["options"])
    if spec["method"] == "complete":
        images = np.load(folder / "expected.npz")[spec["name"] + "_input"]
        return model.complete(images, spec["mask"], seed=spec["seed"])
    assert spec["method"] == "complete_rows", spec
    return model.complete_rows(folder / f"{spec['name']}_input.csv", seed=spec["seed"])


def assert_images_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Within 1 on all but 0.5 % of the pixels, and at most 5 % of them changed at all: a
    last-bit difference moves a pixel only where its float lies at a rounding boundary,
    while a changed model moves most pixels (even by 1, where its images are faint)."""
    assert got.dtype == np.uint8 and got.shape == expected.shape
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert (diff > 1).mean() <= 0.005, f"{(diff > 1).sum()} of {diff.size} pixels differ by > 1"
    assert (diff > 0).mean() <= 0.05, f"{(diff > 0).sum()} of {diff.size} pixels differ"


def as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """A table as its CSV cells read back as text: both sides compared in one form."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype=str,
                       keep_default_na=False)


def assert_tables_close(got: pd.DataFrame, expected_csv: Path) -> None:
    expected = pd.read_csv(expected_csv, dtype=str, keep_default_na=False)
    cells = as_strings(got)
    assert list(cells.columns) == list(expected.columns) and len(cells) == len(expected)
    for column in expected.columns:
        kind = got[column].dtype
        if pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind):
            a = pd.to_numeric(cells[column].replace("", np.nan)).to_numpy(float)
            b = pd.to_numeric(expected[column].replace("", np.nan)).to_numpy(float)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True,
                                       err_msg=column)
        else:
            assert cells[column].tolist() == expected[column].tolist(), column


@pytest.mark.parametrize(("name", "call_name"), CASES)
def test_legacy_run_loads_and_reproduces_its_recorded_samples(name, call_name):
    run, folder = RUNS[name], LEGACY / name
    spec = next(c for c in run["calls"] if c["name"] == call_name)
    model = model_of(name)
    assert (model.family, model.modality) == (run["family"], run["modality"])
    got = call(model, spec, folder)
    if isinstance(got, pd.DataFrame):
        assert_tables_close(got, folder / f"expected_{call_name}.csv")
    elif isinstance(got, list):  # greedy texts
        assert got == json.loads((folder / "expected.json").read_text())[call_name]
    else:
        got = got.numpy() if torch.is_tensor(got) else np.asarray(got)
        expected = np.load(folder / "expected.npz")[call_name]
        if expected.dtype == np.uint8:
            assert_images_close(got, expected)
        else:
            assert got.shape == expected.shape and got.dtype == expected.dtype
            if run["modality"] == "audio":  # a diffusion chain, then Griffin-Lim: see above
                error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
                assert error <= 5e-3, f"relative L2 error {error:.2e}"
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_runs_cover_every_family_and_modality_and_an_older_format():
    from genforge.registry import FAMILIES

    offered = {(name, m) for name, spec in FAMILIES.items() for m in spec.modalities}
    assert {(r["family"], r["modality"]) for r in RUNS.values()} == offered
    kinds = {RUNS[n]["overrides"][0] for n in RUNS if RUNS[n]["family"] == "tabular"}
    assert kinds >= {f"model.kind={k}" for k in ("copula", "tvae", "ctgan", "tabddpm", "mst")}
    old = [n for n, r in RUNS.items() if r["format"] == "old"]
    assert old
    for name in old:  # the older format really lacks the keys, in the weights' metadata too
        from safetensors import safe_open

        with safe_open(LEGACY / name / "model.safetensors", "pt") as f:
            config = json.loads(f.metadata()["config"])
        assert not set(RUNS[name]["dropped_keys"]) & set(config)
        # and sampled, when recorded, what the run it was copied from sampled
        source = LEGACY / RUNS[name]["copy_of"]
        mine, theirs = np.load(LEGACY / name / "expected.npz"), np.load(source / "expected.npz")
        assert set(mine) == set(theirs)
        assert all(np.array_equal(mine[k], theirs[k]) for k in mine)


runner = CliRunner()


@pytest.mark.parametrize(("name", "call_name"), [("gan-images-conditional", "sample_label"),
                                                 ("gan-images-v0", "sample_seed0")])
def test_cli_sample_of_a_legacy_run(name, call_name, tmp_path):
    spec = next(c for c in RUNS[name]["calls"] if c["name"] == call_name)
    label = ["--label", str(spec["label"])] if spec.get("label") is not None else []
    result = runner.invoke(app, ["sample", str(LEGACY / name), "--n", str(spec["n"]),
                                 "--seed", str(spec["seed"]), *label, "--precision", "fp32",
                                 "--out", str(tmp_path / "s.npz")])
    assert result.exit_code == 0, result.output
    assert_images_close(np.load(tmp_path / "s.npz")["x"],
                        np.load(LEGACY / name / "expected.npz")[call_name])


def test_cli_eval_of_a_legacy_series_run(tmp_path):
    """`genforge eval` of the series run gives the metrics it gave when it was recorded."""
    run = LEGACY / "series-series"
    args = [a.replace("RUN", str(run)) for a in RUNS["series-series"]["eval"]["cli"]]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert_same_numbers(metrics, json.loads((run / "expected_eval.json").read_text()))


def assert_same_numbers(got, expected, where: str = "metrics") -> None:
    """Nested metrics: the same keys and texts, numbers to rtol 1e-4."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), where
        for key in expected:
            assert_same_numbers(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_numbers(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-8, nan_ok=True), where
    else:
        assert got == expected, where
