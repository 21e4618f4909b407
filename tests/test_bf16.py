"""Every family x modality of the registry under forced bf16: trained with train.precision=bf16,
then sampled, completed (where the family completes), evaluated and served in bf16, as on an
AVX-512 BF16 machine, where precision=auto picks bf16 (conftest pins auto to fp32 for every
other test). The models are tiny: on a CPU without native bf16 PyTorch emulates it, often ten
times slower. Also: precision=auto under DP-SGD resolves to fp32; an explicit bf16 is refused.

bf16 keeps 8 bits of mantissa (a relative rounding of 2^-9 ~ 0.2 % per operation), so samples
from the same weights and noise agree with fp32 ones to a few percent of their range, not
bit for bit; the tolerances below say how much for each modality.

Cost: about 40 CPU-seconds with bf16 emulated as on an AVX2 machine (ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2, which makes a bf16 matrix product ~30x slower than fp32 here).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_audio import DIGITS, RATE, tone
from test_tables import TINY as TINY_TABLE
from test_tables import toy_frame
from typer.testing import CliRunner

import genforge
from genforge.cli import app
from genforge.modalities.audio import dsp
from genforge.registry import FAMILIES, load_config

from conftest import REPO, tiny

BF16 = ["train.precision=bf16", "train.max_steps=2", "log.sample_every=2", "log.sample_n=4",
        "log.checkpoint_every=2"]

# case -> (family, modality, preset, overrides, sampling options). The tables family is one
# pair of the registry with four synthesizers, each its own case.
CASES = {
    "gan-images": ("gan", "images", "mnist-dcgan", tiny("gan", *BF16), {}),
    "gan-audio": ("gan", "audio", "fsdd-cdcgan", tiny("gan", "train.batch_size=8", *BF16), {}),
    "vae-images": ("vae", "images", "mnist-vae", tiny("vae", *BF16), {}),
    "diffusion-images": ("diffusion", "images", "mnist-ddpm",
                         tiny("diffusion", *BF16), {"scheduler": "ddim", "eta": 0.0}),
    "diffusion-audio": ("diffusion", "audio", "fsdd-diffusion",
                        tiny("diffusion", "train.batch_size=8", *BF16), {"steps": 3}),
    "ar-text": ("ar", "text", "shakespeare-char",
                tiny("ar", "data.limit=2000", f"data.root={REPO / 'data'}", *BF16),
                {"prompt": "ROMEO:", "max_new_tokens": 8}),
    "series-series": ("series", "series", "airline-series", tiny("series", *BF16),
                      {"horizon": 6}),
    **{f"tabular-{kind}": ("tabular", "tables", "tables",
                           [f"model.kind={kind}", *TINY_TABLE, *BF16, "log.sample_every=0"],
                           {}) for kind in ("copula", "tvae", "ctgan", "tabddpm")},
}
COMPLETES = [c for c, (family, modality, *_) in CASES.items()
             if FAMILIES[family].can_complete and modality in ("images", "tables")]


def test_the_cases_cover_every_family_and_modality_of_the_registry():
    offered = {(name, m) for name, spec in FAMILIES.items() for m in spec.modalities}
    assert {(family, modality) for family, modality, *_ in CASES.values()} == offered


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """FSDD's layout with a few tones for the audio cases, and the toy table."""
    root = tmp_path_factory.mktemp("bf16-data")
    folder = root / "audio" / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    import soundfile as sf

    for d, freq in DIGITS.items():
        for s, speaker in enumerate(("ann", "bob")):
            for i in range(8):  # 0-4: the official test split
                wave = tone(freq * (1 + 0.05 * s), 0.25 + 0.05 * ((i + s) % 6), seed=i + 10 * s)
                sf.write(folder / f"{d}_{speaker}_{i}.wav", wave, RATE, subtype="PCM_16")
    toy_frame(200).to_csv(root / "toy.csv", index=False)
    return root


class _Runs(dict):
    """Each case trained in bf16 when a test first asks for it, once per module."""

    def __init__(self, root, base) -> None:
        super().__init__()
        self.root, self.base = root, base

    def __missing__(self, case: str):
        family, modality, preset, extra, _ = CASES[case]
        if modality == "tables":
            extra = [f"data.path={self.root / 'toy.csv'}", "data.target=income", *extra]
        cfg = load_config(preset, extra)
        assert (cfg.family, cfg.modality or FAMILIES[family].modalities[0]) == (family, modality)
        root = self.root if modality == "audio" else None
        self[case] = genforge.train(cfg, out=self.base / case, data_root=root).run_dir
        return self[case]


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    return _Runs(data_root, tmp_path_factory.mktemp("bf16-runs"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def check_decoded(model, samples, n: int, options: dict) -> None:
    """The decoded samples of `model` have the modality's type, shape and a finite range."""
    info = model.data_info
    if model.modality == "images":
        assert samples.dtype == torch.uint8
        assert tuple(samples.shape) == (n, info["channels"], info["image_size"],
                                        info["image_size"])
    elif model.modality == "audio":
        assert samples.dtype == np.float32 and samples.shape == (n, info["frames"] * info["hop"])
        assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    elif model.modality == "text":
        assert len(samples) == n and all(s.startswith(options["prompt"]) for s in samples)
        assert all(len(s) > len(options["prompt"]) for s in samples)
    elif model.modality == "series":
        assert samples.dtype == torch.float32
        assert tuple(samples.shape) == (n, options["horizon"], len(info["columns"]))
        assert torch.isfinite(samples).all()
    else:
        assert isinstance(samples, pd.DataFrame) and len(samples) == n
        assert list(samples.columns) == list(toy_frame().columns)
        assert samples["age"].notna().all() and samples["sex"].isin(["Female", "Male"]).all()


# --------------------------------------------------------------------------------------------
# train, sample, complete, eval, serve


@pytest.mark.parametrize("case", list(CASES))
def test_train_in_bf16_records_it(runs, case):
    run = runs[case]
    record = json.loads((run / "run.json").read_text())
    assert record["precision"]["requested"] == "bf16" and record["precision"]["chosen"] == "bf16"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [v for row in rows for k, v in row.items() if isinstance(v, float)]
    assert rows[-1]["step"] == 2 and logged and all(math.isfinite(v) for v in logged)
    assert any(k.startswith("loss") for k in rows[-1]) or case == "tabular-copula"  # fitted


@pytest.mark.parametrize("case", list(CASES))
def test_sample_in_bf16_agrees_with_fp32(runs, case):
    """The same weights and seed in bf16 and fp32: the right outputs, close to each other."""
    options = CASES[case][4]
    model = genforge.load(runs[case])
    label = 1 if model.num_classes else None
    bf16 = model.sample(4, seed=3, label=label, precision="bf16", **options)
    check_decoded(model, bf16, 4, options)
    fp32 = model.sample(4, seed=3, label=label, precision="fp32", **options)
    if model.modality == "images":  # uint8 pixels: bf16 rounding moves a few by a few levels
        gap = (bf16.int() - fp32.int()).abs().float()
        assert gap.mean() <= 4.0 and gap.max() <= 64
    elif model.modality == "audio":  # Griffin-Lim's phases differ: compare the log-mels
        p = dsp.SpecParams.from_info(model.data_info)
        low, high = (dsp.to_unit(dsp.mel_db(torch.as_tensor(w), p), p) for w in (bf16, fp32))
        assert float((low - high).abs().mean()) <= 0.05  # 2.5 % of the [-1, 1] range
    elif model.modality == "series":  # paths of the same draws, in the data's units
        scale = float(fp32.abs().max())
        assert float((bf16 - fp32).abs().max()) <= 0.05 * scale
    elif model.modality == "text":  # the next-token log-probabilities of one text
        ids = torch.tensor([model.prompt_ids(fp32[0])])
        with model._autocast("bf16"):
            low = model.token_logprobs(ids)
        high = model.token_logprobs(ids)
        assert low.dtype == torch.float32 and torch.allclose(low, high, atol=0.05)
    elif model.config.model.kind == "copula":  # no network: nothing runs in bf16
        pd.testing.assert_frame_equal(bf16, fp32)
    else:  # tables: the same column types; draws of categories may differ
        assert (bf16.dtypes == fp32.dtypes).all()


@pytest.mark.parametrize("case", COMPLETES)
def test_complete_in_bf16_keeps_what_was_given(runs, case, data_root):
    model = genforge.load(runs[case])
    model.precision = "bf16"
    if model.modality == "tables":
        rows = toy_frame(6, seed=1)
        rows.loc[1, "city"], rows.loc[2, "age"], rows.loc[3, "sex"] = None, None, None
        filled = model.complete_rows(rows)
        given = rows.notna()
        assert filled["age"].notna().all() and filled["sex"].notna().all()
        assert (filled[given["age"]]["age"] == rows[given["age"]]["age"]).all()
        assert (filled["customer_id"] == rows["customer_id"]).all()
        return
    images = model.sample(3, seed=0, precision="fp32")
    filled = model.complete(images, "bottom-half", seed=0)
    assert filled.dtype == torch.uint8 and filled.shape == images.shape
    top = images.shape[-1] // 2
    assert torch.equal(filled[..., :top, :], images[..., :top, :])  # the known half


@pytest.mark.parametrize("case", [c for c, (_, modality, *_) in CASES.items()
                                  if modality != "images"])  # images: the test below
def test_eval_in_bf16_records_it(runs, case, data_root, tmp_path, monkeypatch):
    from genforge.eval.images.pipeline import EvalOptions
    from genforge.eval.runs import evaluate_run

    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    modality = CASES[case][1]
    options = EvalOptions(n=12, precision="bf16", seed=0, progress=False,
                          data_root=str(data_root) if modality == "audio" else None)
    lines, paths = evaluate_run(str(runs[case]), options, out=str(tmp_path / "eval"))
    metrics = json.loads(paths["metrics"].read_text())
    assert lines and paths["report"].exists()
    if modality == "tables":
        assert metrics["run"]["precision"] == "bf16" and metrics["run"]["rows_sampled"] == 12
    else:
        assert metrics["precision"] == {"chosen": "bf16", "reason": "asked for"}
    if modality == "series":  # the paths scored are the bf16 ones, not fp32 ones
        from genforge.eval.series.evaluate import evaluate_series

        model, crps = genforge.load(runs[case]), {}
        for precision in ("bf16", "fp32"):
            model.precision = precision
            crps[precision] = evaluate_series(model, n_paths=12, seed=0)["metrics"]["crps"]
        assert metrics["metrics"]["crps"] == crps["bf16"] != crps["fp32"]
    if modality == "audio":
        assert 0.0 <= metrics["metrics"]["accuracy"]["accuracy"] <= 1.0


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    from genforge.config import DataConfig
    from genforge.eval.images.classifier import TrainSettings, save_classifier, train_classifier
    from genforge.modalities.images.data import load_images

    train = load_images(DataConfig(dataset="mnist", split="train", limit=300))
    test = load_images(DataConfig(dataset="mnist", split="test", limit=100))
    net, meta = train_classifier(train, test, TrainSettings(epochs=1, batch_size=64, limit=300),
                                 progress=False)
    return save_classifier(net, meta, tmp_path_factory.mktemp("clf") / "tiny.safetensors")


@pytest.mark.parametrize("case", ["gan-images", "vae-images", "diffusion-images"])
def test_eval_images_in_bf16(runs, case, classifier_file, tmp_path, monkeypatch):
    from genforge.eval.images.pipeline import EvalOptions
    from genforge.eval.runs import evaluate_run

    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    options = EvalOptions(n=16, precision="bf16", classifier=str(classifier_file),
                          kid_subsets=3, progress=False)
    evaluate_run(str(runs[case]), options, out=str(tmp_path / "eval"))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["options"]["precision"] == "bf16"
    assert metrics["protocol"]["fake"]["precision"] == "bf16"
    assert metrics["features"]["domain"]["extractor"]["precision"] == "bf16"
    assert math.isfinite(metrics["features"]["domain"]["metrics"]["fid"])
    from genforge.eval.stats import images_sha256

    model = genforge.load(runs[case])
    sha = {p: images_sha256(model.sample(16, seed=0, precision=p)) for p in ("bf16", "fp32")}
    assert metrics["protocol"]["fake"]["images_sha256"] == sha["bf16"]  # sampled in bf16


SERVE_BODY = {"images": {"n": 2, "seed": 5, "format": "array"}, "series": {"n": 2, "seed": 5,
              "format": "json", "horizon": 6}, "text": {"n": 1, "seed": 5, "prompt": "ROMEO:",
              "max_new_tokens": 8}, "tables": {"n": 3, "seed": 5, "format": "json"},
              "audio": {"n": 2, "seed": 5}}


@pytest.mark.parametrize("case", list(CASES))
def test_serve_one_request_in_bf16(runs, case, monkeypatch):
    """precision=auto on a bf16 machine (pinned here): the server's answer is the bf16 one."""
    from fastapi.testclient import TestClient

    from genforge.serve import Limits, create_app

    from conftest import SMALL

    monkeypatch.setenv("GENFORGE_AUTO_PRECISION", "bf16")
    model = genforge.load(runs[case])
    body = {"model": case, **SERVE_BODY[model.modality]}
    with TestClient(create_app(models={case: model}, limits=Limits(**SMALL))) as client:
        answer = client.post("/v1/generate", json=body)
    assert answer.status_code == 200, answer.text
    request = {k: v for k, v in body.items() if k not in ("model", "format")}
    want = model.sample_batch([request], precision="bf16")[0]
    got = answer.json()
    if model.modality == "images":
        assert got["shape"] == list(want.shape) and np.array_equal(got["data"], want.numpy())
    elif model.modality == "series":
        assert np.allclose(got["paths"], want.numpy(), rtol=1e-6)
    elif model.modality == "text":
        assert len(got["texts"]) == 1 and got["texts"][0].startswith("ROMEO:")
    elif model.modality == "tables":
        assert len(got["rows"]) == 3 and set(got["rows"][0]) == set(toy_frame().columns)
    else:
        assert got["sample_rate"] == RATE and np.allclose(got["waves"], want, atol=1e-6)


# --------------------------------------------------------------------------------------------
# privacy: DP-SGD computes in fp32


DP_TINY = ["model.hidden=32", "model.latent_dim=4", "train.max_steps=2", "train.batch_size=16",
           "data.limit=128", "train.warmup_steps=0", "log.progress=false",
           "log.tensorboard=false", "log.sample_every=0", "log.checkpoint_every=2"]


def test_auto_precision_under_privacy_is_fp32_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_AUTO_PRECISION", "bf16")  # what auto picks on a bf16 machine
    cfg = load_config("mnist-dp-vae", DP_TINY)
    assert cfg.train.precision == "auto" and cfg.privacy.enabled
    run = genforge.train(cfg, out=tmp_path / "dp").run_dir
    chosen = json.loads((run / "run.json").read_text())["precision"]
    assert chosen["requested"] == "auto" and chosen["chosen"] == "fp32"
    assert "DP-SGD" in chosen["reason"]


def test_explicit_bf16_under_privacy_is_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "mnist-dp-vae", *DP_TINY, "train.precision=bf16",
                                      "--out", str(tmp_path / "dp")])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: train.precision=bf16 with privacy: use fp32 or "
                                      "auto (per-sample gradients and their clipping are checked "
                                      "in fp32 only)")
    assert not (tmp_path / "dp").exists()
