"""CLI smoke runs on tiny configs: the artifacts exist and are right; errors are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import genforge
from genforge.cli import app

from conftest import tiny

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    for preset, family in (("mnist-dcgan", "gan"), ("mnist-cdcgan", "gan"), ("mnist-vae", "vae")):
        result = cli("train", preset, *tiny(family), "--out", base / preset)
        assert result.exit_code == 0, result.output
        assert f"run folder {base / preset}" in result.output
    return base


def test_sample_png_and_npz(runs, tmp_path):
    result = cli("sample", runs / "mnist-dcgan", "--n", 16, "--seed", 0,
                 "--out", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (4 * 30 + 2, 4 * 30 + 2)  # 4x4 grid of 28 px with 2 px padding
    cli("sample", runs / "mnist-dcgan", "--n", 16, "--seed", 0, "--out", tmp_path / "g.npz")
    arrays = np.load(tmp_path / "g.npz")["x"]
    expected = genforge.load(runs / "mnist-dcgan").sample(16, seed=0).numpy()
    assert arrays.dtype == np.uint8 and np.array_equal(arrays, expected)


def test_conditional_labels(runs, tmp_path):
    ok = cli("sample", runs / "mnist-cdcgan", "--n", 8, "--label", 3, "--out", tmp_path / "3.png")
    assert ok.exit_code == 0, ok.output
    one_line_error(cli("sample", runs / "mnist-dcgan", "--label", 3, "--out", tmp_path / "x.png"),
                   "not conditional")
    one_line_error(cli("sample", runs / "mnist-cdcgan", "--label", 10, "--out", tmp_path / "x.png"),
                   "allowed are 0..9")


def test_complete_keeps_known_pixels(runs, tmp_path):
    from genforge.config import DataConfig
    from genforge.modalities.images.data import load_images

    digits = load_images(DataConfig(split="test", limit=8)).images.numpy()
    np.savez(tmp_path / "digits.npz", x=digits[:, 0])  # (N, H, W) is accepted too
    result = cli("complete", runs / "mnist-vae", "--input", tmp_path / "digits.npz",
                 "--mask", "bottom-half", "--out", tmp_path / "filled.npz")
    assert result.exit_code == 0, result.output
    filled = np.load(tmp_path / "filled.npz")["x"]
    assert filled.shape == digits.shape
    assert np.array_equal(filled[:, :, :14], digits[:, :, :14])  # known top half kept exactly
    assert not np.array_equal(filled[:, :, 14:], digits[:, :, 14:])
    shown = cli("complete", runs / "mnist-vae", "--input", "mnist:test", "--n", 4, "--mask",
                "center", "--show-input", "--method", "iterate", "--out", tmp_path / "f.png")
    assert shown.exit_code == 0, shown.output
    with Image.open(tmp_path / "f.png") as im:
        assert im.size == (4 * 30 + 2, 3 * 30 + 2)  # original, masked, filled rows


def test_errors_are_one_line_and_write_nothing(runs, tmp_path):
    one_line_error(cli("complete", runs / "mnist-dcgan", "--input", "mnist:test",
                       "--out", tmp_path / "x.png"), "cannot complete")
    one_line_error(cli("sample", tmp_path / "nothing"), "no model.safetensors")
    one_line_error(cli("complete", runs / "mnist-vae", "--input", tmp_path / "missing.npz"),
                   "no such input file")
    one_line_error(cli("complete", runs / "mnist-vae", "--input", "mnist:test", "--mask", "half",
                       "--out", tmp_path / "x.png"), "allowed are bottom-half")
    one_line_error(cli("complete", runs / "mnist-vae", "--input", "mnist:test", "--jump", 2,
                       "--out", tmp_path / "x.png"), "--jump does not apply to vae models")
    one_line_error(cli("sample", runs / "mnist-dcgan", "--out", tmp_path / "x.jpg"), ".png")
    one_line_error(cli("sample", runs / "mnist-dcgan", "--prompt", "hi", "--out",
                       tmp_path / "x.png"), "--prompt does not apply to gan models")
    out = tmp_path / "new"
    one_line_error(cli("train", "mnist-dcgan", "train.batch_size=-1", "--out", out),
                   "train.batch_size=-1")
    one_line_error(cli("train", "mnist-dcgan", "data.dataset=fashion-mnist", "--data-root",
                       tmp_path, "--out", out), "missing")
    assert not out.exists()  # bad input leaves no run folder behind
    before = (runs / "mnist-vae" / "model.safetensors").read_bytes()
    one_line_error(cli("train", "mnist-vae", *tiny("vae"), "--out", runs / "mnist-vae"),
                   "--overwrite")
    assert (runs / "mnist-vae" / "model.safetensors").read_bytes() == before
    one_line_error(cli("train", "--resume", tmp_path / "nothing"), "no config.yaml")


def test_list_shows_presets_and_bundled_mnist():
    result = cli("list")
    assert result.exit_code == 0
    assert "mnist-dcgan" in result.output and "mnist-vae" in result.output
    mnist_line = next(x for x in result.output.splitlines() if x.strip().startswith("mnist "))
    assert "missing" not in mnist_line


def test_sample_matches_python_api_for_conditional(runs):
    model = genforge.load(runs / "mnist-cdcgan")
    a = model.sample(5, seed=2, label=[0, 1, 2, 3, 4])
    assert torch.equal(a, model.sample(5, seed=2, label=[0, 1, 2, 3, 4]))
