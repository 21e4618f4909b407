"""Downstream measures (CAS, augmentation gain): checked where the answer is known. Real
training images offered as "generated" ones score about the real reference and help a small
real set; the same images with shuffled labels score chance and hurt. Tiny sizes: a few dozen
classifier steps, 1,000 test images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from genforge.cli import app
from genforge.config import ConfigError, DataConfig
from genforge.eval.images import downstream
from genforge.eval.images.classifier import TrainSettings, save_classifier, train_classifier
from genforge.eval.images.downstream import DownstreamSettings, balanced_subset, downstream_metrics
from genforge.eval.images.pipeline import EvalOptions, evaluate
from genforge.modalities.images.data import load_images

from conftest import tiny

runner = CliRunner()
TINY = {"steps": 25, "test_n": 1000, "real_n": 100}


@pytest.fixture(scope="module", autouse=True)
def one_thread(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:  # the real-only arms are cached: not the user's
        patch.setenv("GENFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train():
    return load_images(DataConfig(dataset="mnist", split="train"))


def test_balanced_subset_is_balanced_seeded_and_distinct(train):
    a = balanced_subset(train.labels, 105, 10, seed=0)
    counts = torch.bincount(train.labels[a], minlength=10)
    assert counts.tolist() == [11] * 5 + [10] * 5 and len(set(a.tolist())) == 105
    assert torch.equal(a, balanced_subset(train.labels, 105, 10, seed=0))
    assert not torch.equal(a, balanced_subset(train.labels, 105, 10, seed=1))
    with pytest.raises(ConfigError, match="class 3"):
        balanced_subset(torch.tensor([0, 1, 2] * 5), 20, 4, seed=0)


def test_real_images_score_like_real_and_shuffled_labels_score_chance(train):
    # "generated" = 500 real training images the real arms do not draw (a far-off seed)
    pick = balanced_subset(train.labels, 500, 10, seed=12345)
    images, labels = train.images[pick], train.labels[pick]
    real = downstream_metrics(images, labels, "mnist", DownstreamSettings(**TINY))
    cas, aug = real["cas"], real["augmentation"]
    assert cas["n"] == 500 and aug["generated_m"] == 500 and aug["real_n"] == 100
    assert 0.7 < cas["real_reference"] < 1 and abs(cas["accuracy"] - cas["real_reference"]) < 0.06
    assert aug["gain"] > 0.1  # 100 real images + 500 more real ones: clearly better

    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    noise = downstream_metrics(images, shuffled, "mnist", DownstreamSettings(**TINY))
    assert noise["cas"]["accuracy"] < 0.25  # chance is 0.1
    assert noise["cas"]["real_reference"] == cas["real_reference"]  # cached, same protocol
    assert noise["augmentation"]["real_only"] == aug["real_only"]
    assert noise["augmentation"]["gain"] < -0.2  # 5 wrong labels for each right one hurt


def test_settings_are_checked(train):
    images, labels = train.images[:50], train.labels[:50]
    for settings, needle in [(DownstreamSettings(n=60), "--downstream-n 60"),
                             (DownstreamSettings(augment_m=5), "--downstream-augment-m 5"),
                             (DownstreamSettings(seeds=0), "seeds")]:
        with pytest.raises(ConfigError, match=needle):
            downstream_metrics(images, labels, "mnist", settings)
    with pytest.raises(ConfigError, match="one label in 0..9"):
        downstream_metrics(images, labels + 10, "mnist", DownstreamSettings())
    with pytest.raises(ConfigError, match="shape"):
        downstream_metrics(images[:, :, :20], labels, "mnist", DownstreamSettings())


# --------------------------------------------------------------------------------------------
# In `genforge eval`: metrics.json, the report, the CLI


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    for preset, family in (("mnist-cdcgan", "gan"), ("mnist-vae", "vae")):
        result = runner.invoke(app, ["train", preset, *tiny(family), "--out",
                                     str(base / preset)])
        assert result.exit_code == 0, result.output
    return base


@pytest.fixture(scope="module")
def clf_file(tmp_path_factory):
    train = load_images(DataConfig(dataset="mnist", split="train", limit=1000))
    test = load_images(DataConfig(dataset="mnist", split="test", limit=200))
    net, meta = train_classifier(train, test, TrainSettings(epochs=1, batch_size=64),
                                 progress=False)
    return save_classifier(net, meta, tmp_path_factory.mktemp("clf") / "tiny.safetensors")


def test_eval_of_a_conditional_run_reports_downstream(runs, clf_file, tmp_path, monkeypatch):
    from genforge.eval.images.report import image_lines

    @dataclass
    class Quick(DownstreamSettings):  # the eval's settings, tested on 1,000 test images
        test_n: int | None = 1000
        use_cache: bool = False  # every arm trained here, whatever ran before

    monkeypatch.setattr("genforge.eval.images.downstream.DownstreamSettings", Quick)
    trained = []  # (arm, its training labels, the net) of each classifier the eval trains
    fit = downstream.fit_net

    def recording_fit(images, labels, *args, **kwargs):
        net = fit(images, labels, *args, **kwargs)
        trained.append((kwargs["desc"], labels, net))
        return net

    monkeypatch.setattr(downstream, "fit_net", recording_fit)

    options = EvalOptions(n=100, classifier=str(clf_file), progress=False, kid_subsets=3,
                          memorisation_queries=50, downstream=True, downstream_steps=10,
                          downstream_m=50, downstream_seeds=2)
    result = evaluate(runs / "mnist-cdcgan", options=options)
    lines, paths = image_lines(result, tmp_path / "eval")
    metrics = json.loads(paths["metrics"].read_text())
    block = metrics["downstream"]
    assert block["cas"]["n"] == 100 and block["augmentation"]["generated_m"] == 50
    assert [s["seed"] for s in block["augmentation"]["per_seed"]] == [0, 1]
    # the arms, in order, and what each was trained on (by hand: the eval samples label
    # i mod 10, so 100 generated images are 10 a class and the first 50 are 5 a class;
    # a real arm of 1,000 is 100 a class)
    cas, reference, mixed, alone = ("CAS (generated)", "CAS real reference",
                                    "augmentation (real + generated)",
                                    "augmentation (real only)")
    assert [arm for arm, _, _ in trained] == [cas, reference, mixed, alone, mixed, alone]
    counts = [torch.bincount(labels, minlength=10).tolist() for _, labels, _ in trained]
    assert counts == [[10] * 10, [10] * 10, [105] * 10, [100] * 10, [105] * 10, [100] * 10]
    # each accuracy in the block is its net's share of the 1,000 test images, by sklearn
    test = load_images(DataConfig(dataset="mnist", split="test", limit=1000))
    with torch.no_grad():
        scores = [accuracy_score(test.labels, net(test.images).argmax(1))
                  for _, _, net in trained]
    assert (block["cas"]["accuracy"], block["cas"]["real_reference"]) == tuple(scores[:2])
    per_seed = block["augmentation"]["per_seed"]
    assert [(s["real_plus_generated"], s["real_only"]) for s in per_seed] == \
        [tuple(scores[2:4]), tuple(scores[4:6])]
    assert block["augmentation"]["gain"] == pytest.approx(
        np.mean([scores[2] - scores[3], scores[4] - scores[5]]), abs=1e-12)
    assert block["protocol"]["steps"] == 10
    assert block["protocol"]["test"] == "mnist:test, the first 1000 images"
    assert metrics["options"]["downstream"] is True and "downstream" in metrics["seconds"]
    assert any(line.startswith("downstream: CAS") for line in lines)
    page = paths["report"].read_text()
    assert "Downstream" in page and "Augmentation gain" in page and "real reference" in page


def test_eval_without_downstream_and_of_an_unconditional_run(runs, clf_file, tmp_path):
    options = EvalOptions(n=20, classifier=str(clf_file), progress=False, kid_subsets=3,
                          memorisation_queries=10)
    assert "downstream" not in evaluate(runs / "mnist-cdcgan", options=options).metrics
    result = runner.invoke(app, ["eval", str(runs / "mnist-vae"), "--n", "20", "--downstream",
                                 "--classifier", str(clf_file), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--downstream needs a conditional image run" in lines[0]
