"""Data: real MNIST / Fashion-MNIST / CIFAR-10 files, every error path, downloads, masks, grids."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import threading
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genforge.data.roots as groots
import genforge.modalities.images.data as gimages
from genforge.config import DataConfig
from genforge.data import DataError, data_roots
from genforge.modalities.images.data import from_model_range, load_images, to_model_range
from genforge.modalities.images.grids import make_grid, save_image
from genforge.modalities.images.masks import NAMED, make_mask
from genforge.modalities.images.sources import SOURCES

from skips import skip_because

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MNIST = REPO / "data" / "mnist"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# Published class counts of MNIST (LeCun et al.), digits 0..9.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory):
    """No developer environment leaks in: no GENFORGE_DATA / mirror, an empty download cache."""
    monkeypatch.delenv("GENFORGE_DATA", raising=False)
    monkeypatch.delenv("GENFORGE_MIRROR", raising=False)
    monkeypatch.setattr(groots, "CACHE_ROOT", tmp_path_factory.mktemp("cache"))


@pytest.fixture
def no_bundled(monkeypatch, tmp_path_factory) -> Path:
    """Hide the repo's bundled data/ behind an empty folder; returns that folder."""
    empty = tmp_path_factory.mktemp("bundled")
    monkeypatch.setattr(groots, "BUNDLED_ROOT", empty)
    return empty


@pytest.fixture
def shared_data_root() -> Path:
    if not (SHARED_DATA / "fashion-mnist").is_dir() or not (SHARED_DATA / "cifar10").is_dir():
        skip_because("no-shared-data", f"{SHARED_DATA}/fashion-mnist and cifar10")
    return SHARED_DATA


@pytest.fixture(scope="module")
def mnist_train() -> gimages.ImageData:
    return load_images(DataConfig(dataset="mnist", split="train"), data_root=REPO / "data")


@pytest.fixture(scope="module")
def mnist_test() -> gimages.ImageData:
    return load_images(DataConfig(dataset="mnist", split="test"), data_root=REPO / "data")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of unsigned bytes: magic (0x08 type, ndim), big-endian dims, then the data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    dims = b"".join(struct.pack(">I", d) for d in array.shape)
    return struct.pack(">I", magic) + dims + array.tobytes()


def write_mnist(root: Path, images: np.ndarray, labels: np.ndarray, *, gz: bool = True,
                split: str = "test", image_magic: int | None = None) -> Path:
    """A fake MNIST split under `root/mnist/`; returns that folder."""
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "t10k" if split == "test" else "train"
    for name, array, magic in ((f"{prefix}-images-idx3-ubyte", images, image_magic),
                               (f"{prefix}-labels-idx1-ubyte", labels, None)):
        raw = idx_bytes(array, magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def tiny_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, np.uint8)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- MNIST from the bundled data/


def test_bundled_root_is_the_repo_data_folder_and_holds_mnist():
    assert groots.BUNDLED_ROOT == REPO / "data"
    assert groots.BUNDLED_ROOT in data_roots()
    for split in ("train", "test"):
        for remote in SOURCES["mnist"].files[split]:
            assert md5(BUNDLED_MNIST / remote.name) == remote.md5, remote.name


def test_mnist_default_config_reads_the_bundled_copy():
    data = load_images(DataConfig(dataset="mnist", split="test", limit=3))
    assert data.name == "mnist"
    assert data.labels.tolist() == [7, 2, 1]  # the first three test digits


def test_mnist_train_split(mnist_train):
    assert mnist_train.images.shape == (60000, 1, 28, 28)
    assert mnist_train.images.dtype == torch.uint8
    assert mnist_train.labels.shape == (60000,)
    assert mnist_train.labels.dtype == torch.int64
    assert mnist_train.labels.bincount(minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert mnist_train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert (len(mnist_train), mnist_train.channels, mnist_train.image_size) == (60000, 1, 28)
    assert mnist_train.class_names == [str(d) for d in range(10)]
    assert mnist_train.num_classes == 10
    # Digits are white on black: corners are background, the full 0..255 range is used.
    assert mnist_train.images[:, :, 0, 0].max() == 0
    assert mnist_train.images.min() == 0 and mnist_train.images.max() == 255


def test_mnist_test_split(mnist_test):
    assert mnist_test.images.shape == (10000, 1, 28, 28)
    assert mnist_test.images.dtype == torch.uint8
    assert mnist_test.labels.min() == 0 and mnist_test.labels.max() == 9
    assert mnist_test.labels.bincount(minlength=10).tolist() == MNIST_TEST_COUNTS
    assert mnist_test.images.is_contiguous()


def test_limit_keeps_the_first_examples(mnist_test):
    data = load_images(DataConfig(dataset="mnist", split="test", limit=100))
    assert data.images.shape == (100, 1, 28, 28)
    assert data.labels.shape == (100,)
    assert torch.equal(data.images, mnist_test.images[:100])
    assert torch.equal(data.labels, mnist_test.labels[:100])
    assert len(load_images(DataConfig(dataset="mnist", split="test", limit=10**6))) == 10000


def test_model_range_round_trips_every_byte_exactly():
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    scaled = to_model_range(every)
    assert scaled.dtype == torch.float32
    assert scaled.min().item() == -1.0 and scaled.max().item() == 1.0
    assert torch.all(scaled[..., 1:] > scaled[..., :-1])  # monotone along each row
    back = from_model_range(scaled)
    assert back.dtype == torch.uint8
    assert torch.equal(back, every)
    assert torch.equal(every, torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16))


def test_from_model_range_clamps_and_rounds():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 7.0, 2 * 100.4 / 255 - 1], requires_grad=True)
    assert from_model_range(x).tolist() == [0, 0, 128, 255, 255, 100]


def test_data_roots_order_and_dedup(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("GENFORGE_DATA", os.pathsep.join(["", str(a), str(b), str(a)]))
    assert data_roots(b) == [b, a, groots.BUNDLED_ROOT, groots.CACHE_ROOT]
    monkeypatch.delenv("GENFORGE_DATA")
    assert data_roots() == [groots.BUNDLED_ROOT, groots.CACHE_ROOT]


def test_data_root_argument_wins_over_cfg_root(tmp_path):
    write_mnist(tmp_path / "cfg", *tiny_digits(5))
    write_mnist(tmp_path / "cli", *tiny_digits(3))
    cfg = DataConfig(dataset="mnist", split="test", root=str(tmp_path / "cfg"))
    assert len(load_images(cfg)) == 5
    assert len(load_images(cfg, data_root=tmp_path / "cli")) == 3


def test_written_idx_values_arrive_unchanged(tmp_path):
    images, labels = tiny_digits(4, seed=3)
    write_mnist(tmp_path, images, labels, split="train")
    data = load_images(DataConfig(dataset="mnist", split="train"), data_root=tmp_path)
    assert np.array_equal(data.images.numpy(), images[:, None])
    assert np.array_equal(data.labels.numpy(), labels.astype(np.int64))


# ---------------------------------------------------------------- Fashion-MNIST from ../shared


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def test_shared_fashion_files_match_published_md5s(shared_data_root):
    for split in ("train", "test"):
        for remote in SOURCES["fashion-mnist"].files[split]:
            assert md5(shared_data_root / "fashion-mnist" / remote.name) == remote.md5


def test_fashion_mnist_via_data_root(shared_data_root):
    data = load_images(DataConfig(dataset="fashion-mnist", split="test"),
                       data_root=shared_data_root)
    assert data.name == "fashion-mnist"
    assert data.images.shape == (10000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.bincount(minlength=10).tolist() == [1000] * 10
    assert data.labels[0].item() == 9  # the first test item is an ankle boot
    assert data.class_names == FASHION_CLASSES


def test_fashion_mnist_via_genforge_data_env(shared_data_root, monkeypatch, tmp_path):
    # A path list: an empty entry and a folder without the data set come first.
    monkeypatch.setenv("GENFORGE_DATA",
                       os.pathsep.join(["", str(tmp_path), str(shared_data_root)]))
    data = load_images(DataConfig(dataset="fashion-mnist", split="train"))
    assert data.images.shape == (60000, 1, 28, 28)
    assert data.labels.bincount(minlength=10).tolist() == [6000] * 10
    assert data.labels[:3].tolist() == [9, 0, 0]


def test_fashion_mnist_via_cfg_root(shared_data_root):
    cfg = DataConfig(dataset="fashion-mnist", split="test", root=str(shared_data_root), limit=7)
    assert load_images(cfg).images.shape == (7, 1, 28, 28)


# ---------------------------------------------------------------- IDX error paths


def test_missing_files_list_names_folders_and_download(no_bundled, tmp_path):
    root = tmp_path / "empty-root"
    root.mkdir()
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test"), data_root=root)
    message = one_line(err)
    for name in T10K:
        assert name in message
    for folder in (root / "mnist", no_bundled / "mnist", groots.CACHE_ROOT / "mnist"):
        assert str(folder) in message
    assert "data.download" in message


def test_missing_train_split_names_train_files(no_bundled, tmp_path):
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="fashion-mnist", split="train"), data_root=tmp_path)
    message = one_line(err)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "fashion-mnist") in message


def test_one_of_two_files_is_not_enough(no_bundled, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(BUNDLED_MNIST / T10K[1], folder / T10K[1])
    with pytest.raises(DataError, match=r"data\.download"):
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)


def test_truncated_gzip(no_bundled, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    whole = (BUNDLED_MNIST / T10K[0]).read_bytes()
    (folder / T10K[0]).write_bytes(whole[: len(whole) // 2])
    shutil.copy(BUNDLED_MNIST / T10K[1], folder / T10K[1])
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert str(folder / T10K[0]) in message
    assert "truncated or corrupt gzip" in message and "fetch it again" in message


def test_not_gzip_at_all(no_bundled, tmp_path):
    images, labels = tiny_digits(2)
    folder = write_mnist(tmp_path, images, labels)
    (folder / T10K[1]).write_bytes(idx_bytes(labels))  # plain bytes under a .gz name
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: truncated or corrupt"):
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)


def test_wrong_magic_number(no_bundled, tmp_path):
    images, labels = tiny_digits(4)
    folder = write_mnist(tmp_path, images, labels, image_magic=0x0801)
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert str(folder / T10K[0]) in message
    assert "0x00000801" in message and "expected 0x00000803" in message
    assert "images" in message and "right file" in message


def test_labels_file_given_as_images(no_bundled, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in T10K:  # both names hold the labels file
        shutil.copy(BUNDLED_MNIST / T10K[1], folder / name)
    with pytest.raises(DataError, match=r"magic number 0x00000801, expected 0x00000803"):
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)


def test_header_longer_than_data(no_bundled, tmp_path):
    images, labels = tiny_digits(4)
    folder = write_mnist(tmp_path, images, labels, gz=False)
    raw = (folder / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert "t10k-images-idx3-ubyte" in message and "(4, 28, 28)" in message
    assert "truncated or corrupt" in message


def test_image_and_label_counts_differ(no_bundled, tmp_path):
    images, _ = tiny_digits(5)
    _, labels = tiny_digits(3)
    folder = write_mnist(tmp_path, images, labels)
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert str(folder) in message and "5 images but 3 labels" in message


@pytest.mark.parametrize("gz_images", [False, True])
def test_uncompressed_idx_files_are_accepted(no_bundled, tmp_path, gz_images):
    images, labels = tiny_digits(6, seed=1)
    folder = write_mnist(tmp_path, images, labels, gz=False)
    if gz_images:  # a mix: images gzipped, labels plain
        raw = (folder / "t10k-images-idx3-ubyte").read_bytes()
        (folder / T10K[0]).write_bytes(gzip.compress(raw))
        (folder / "t10k-images-idx3-ubyte").unlink()
    data = load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)
    assert np.array_equal(data.images.numpy()[:, 0], images)
    assert data.labels.tolist() == labels.tolist()


def test_real_mnist_uncompressed(no_bundled, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in T10K:
        (folder / name.removesuffix(".gz")).write_bytes(
            gzip.decompress((BUNDLED_MNIST / name).read_bytes()))
    data = load_images(DataConfig(dataset="mnist", split="test"), data_root=tmp_path)
    assert data.images.shape == (10000, 1, 28, 28)
    assert data.labels.bincount(minlength=10).tolist() == MNIST_TEST_COUNTS


def test_unknown_dataset():
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="svhn"))
    message = one_line(err)
    assert "data.dataset='svhn'" in message
    assert "mnist, fashion-mnist, cifar10, folder, npz" in message


# ---------------------------------------------------------------- downloads from a local mirror


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


@pytest.fixture
def mirror(tmp_path_factory, monkeypatch):
    """A local HTTP mirror on 127.0.0.1 serving the real MNIST test files; GENFORGE_MIRROR set."""
    served = tmp_path_factory.mktemp("mirror")
    for name in T10K:
        shutil.copy(BUNDLED_MNIST / name, served / name)
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GENFORGE_MIRROR", url + "/")
    for var in ("no_proxy", "NO_PROXY"):  # never send local requests through a proxy
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    yield served, requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_from_mirror(mirror, no_bundled, tmp_path):
    _, requests = mirror
    root = tmp_path / "root"
    data = load_images(DataConfig(dataset="mnist", split="test", download=True), data_root=root)
    assert data.images.shape == (10000, 1, 28, 28)
    assert data.labels.bincount(minlength=10).tolist() == MNIST_TEST_COUNTS
    folder = root / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(T10K)  # no temp files left
    for remote in SOURCES["mnist"].files["test"]:
        assert md5(folder / remote.name) == remote.md5
    assert sorted(requests) == sorted(f"/{name}" for name in T10K)
    # Present now: a second load reads the files and asks the mirror for nothing.
    again = load_images(DataConfig(dataset="mnist", split="test", download=True), data_root=root)
    assert torch.equal(again.images, data.images)
    assert len(requests) == 2


def test_download_goes_to_first_genforge_data_entry(mirror, no_bundled, tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("GENFORGE_DATA", os.pathsep.join(["", str(first), str(second)]))
    load_images(DataConfig(dataset="mnist", split="test", download=True, limit=1))
    assert sorted(p.name for p in (first / "mnist").iterdir()) == sorted(T10K)
    assert not second.exists()


def test_download_without_root_goes_to_cache(mirror, no_bundled):
    load_images(DataConfig(dataset="mnist", split="test", download=True, limit=1))
    assert sorted(p.name for p in (groots.CACHE_ROOT / "mnist").iterdir()) == sorted(T10K)


def test_download_only_fetches_what_is_missing(mirror, no_bundled, tmp_path):
    _, requests = mirror
    (tmp_path / "mnist").mkdir()
    shutil.copy(BUNDLED_MNIST / T10K[0], tmp_path / "mnist" / T10K[0])
    load_images(DataConfig(dataset="mnist", split="test", download=True), data_root=tmp_path)
    assert requests == [f"/{T10K[1]}"]


@pytest.mark.parametrize("tampered", T10K)
def test_tampered_download_leaves_nothing_behind(mirror, no_bundled, tmp_path, tampered):
    served, _ = mirror
    raw = bytearray((served / tampered).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (served / tampered).write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test", download=True), data_root=tmp_path)
    message = one_line(err)
    assert "md5" in message and tampered in message and "nothing was saved" in message
    remote = {r.name: r for r in SOURCES["mnist"].files["test"]}[tampered]
    assert remote.md5 in message
    left = sorted(p.name for p in (tmp_path / "mnist").iterdir())
    # Files before the tampered one arrived intact; the tampered one left no file or temp file.
    assert left == sorted(T10K[: T10K.index(tampered)])


def test_download_of_a_file_the_mirror_lacks(mirror, no_bundled, tmp_path):
    served, _ = mirror
    (served / T10K[1]).unlink()
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="mnist", split="test", download=True), data_root=tmp_path)
    message = one_line(err)
    assert "download failed" in message and T10K[1] in message
    assert str(tmp_path / "mnist") in message
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [T10K[0]]


def test_cifar10_download_checks_the_archive(mirror, no_bundled, tmp_path):
    served, _ = mirror
    build_cifar_archive(served / "cifar-10-python.tar.gz", fake_cifar_batches())
    with pytest.raises(DataError, match=r"md5 \w+ does not match the published"):
        load_images(DataConfig(dataset="cifar10", split="test", download=True),
                    data_root=tmp_path)
    assert list((tmp_path / "cifar10").iterdir()) == []


def test_missing_data_never_touches_the_network(mirror, no_bundled, tmp_path, monkeypatch):
    _, requests = mirror

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used without data.download=true")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    for dataset in ("mnist", "fashion-mnist", "cifar10"):
        with pytest.raises(DataError, match=r"data\.download=true"):
            load_images(DataConfig(dataset=dataset, split="test"), data_root=tmp_path)
    assert requests == []
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- CIFAR-10


def fake_cifar_batches(per_batch: int = 4, test_n: int = 3) -> dict[str, dict]:
    """Batches as in the real archive: uint8 rows of 3072 (1024 R, 1024 G, 1024 B) + labels."""
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        n = test_n if name == "test_batch" else per_batch
        data = rng.integers(0, 200, (n, 3072), dtype=np.uint8)
        data[0, 2 * 1024 + 5 * 32 + 17] = 250 + (i % 6)  # blue channel, row 5, column 17
        labels = [(i + j) % 10 for j in range(n)]
        batches[name] = {b"batch_label": f"batch {i}".encode(), b"data": data,
                         b"labels": labels, b"filenames": [b"x.png"] * n}
    return batches


def write_cifar_folder(base: Path, batches: dict[str, dict], protocol: int = 2) -> Path:
    folder = base / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


def build_cifar_archive(path: Path, batches: dict[str, dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def check_cifar(data: gimages.ImageData, batches: dict[str, dict], split: str) -> None:
    names = ["test_batch"] if split == "test" else [f"data_batch_{k}" for k in range(1, 6)]
    rows = np.concatenate([batches[n][b"data"] for n in names])
    assert data.images.shape == (len(rows), 3, 32, 32) and data.images.dtype == torch.uint8
    assert np.array_equal(data.images.numpy(), rows.reshape(-1, 3, 32, 32))
    assert data.labels.tolist() == [y for n in names for y in batches[n][b"labels"]]
    assert data.class_names[0] == "airplane" and data.class_names[9] == "truck"
    # The marked pixel of each batch's first image: channel 2 (blue), row 5, column 17.
    for k, name in enumerate(names):
        first = sum(len(batches[n][b"labels"]) for n in names[:k])
        expected = batches[name][b"data"][0, 2 * 1024 + 5 * 32 + 17]
        assert expected >= 250
        assert data.images[first, 2, 5, 17].item() == expected
        assert data.images[first].flatten().tolist() == batches[name][b"data"][0].tolist()


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_from_batch_folder(tmp_path, split):
    batches = fake_cifar_batches()
    write_cifar_folder(tmp_path / "cifar10", batches)
    data = load_images(DataConfig(dataset="cifar10", split=split, root=str(tmp_path)))
    check_cifar(data, batches, split)
    assert len(data) == (20 if split == "train" else 3)


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_from_tar_gz(tmp_path, split):
    batches = fake_cifar_batches()
    build_cifar_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", batches)
    data = load_images(DataConfig(dataset="cifar10", split=split, root=str(tmp_path)))
    check_cifar(data, batches, split)


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 `str` (BINSTRING), as the real CIFAR-10 batches are."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def test_cifar10_python2_style_batches(tmp_path):
    batches = fake_cifar_batches()
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, batch in batches.items():
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(batch)
        # The real archive names numpy's pre-2.0 module.
        raw = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(raw)
    data = load_images(DataConfig(dataset="cifar10", split="test"), data_root=tmp_path)
    check_cifar(data, batches, "test")


class _Payload:
    """A pickle whose loading runs code that would create `marker`."""

    def __init__(self, how: str, marker: Path):
        self.how, self.marker = how, marker

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch '{self.marker}'",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_malicious_payload_is_live_for_plain_pickle(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload("exec", marker), protocol=2))
    assert marker.exists()  # so the refusals below are meaningful


@pytest.mark.parametrize("how", ["os.system", "exec"])
@pytest.mark.parametrize("container", ["folder", "archive"])
def test_malicious_batch_is_refused_without_running(tmp_path, how, container):
    marker = tmp_path / "pwned"
    batches = fake_cifar_batches()
    batches["test_batch"] = {b"data": _Payload(how, marker), b"labels": [0]}
    if container == "folder":
        write_cifar_folder(tmp_path / "cifar10", batches)
    else:
        build_cifar_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", batches)
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="cifar10", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert "test_batch" in message and "not a CIFAR-10 python batch" in message
    assert "refusing" in message
    assert not marker.exists()


@pytest.mark.parametrize(("batch", "expected"), [
    ({b"labels": [0]}, "not a CIFAR-10 python batch"),  # no b"data"
    ([1, 2, 3], "not a CIFAR-10 python batch"),  # not a dict
    ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "not a CIFAR-10"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
])
def test_malformed_batches(tmp_path, batch, expected):
    batches = fake_cifar_batches()
    batches["test_batch"] = batch
    folder = write_cifar_folder(tmp_path / "cifar10", batches)
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="cifar10", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert str(folder / "test_batch") in message and expected in message


def test_truncated_batch(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar10", fake_cifar_batches())
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="test_batch: not a CIFAR-10 python batch"):
        load_images(DataConfig(dataset="cifar10", split="test"), data_root=tmp_path)


def test_incomplete_batch_folder(tmp_path):
    batches = fake_cifar_batches()
    del batches["data_batch_3"]
    folder = write_cifar_folder(tmp_path / "cifar10", batches)
    assert len(load_images(DataConfig(dataset="cifar10", split="test"), data_root=tmp_path)) == 3
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="cifar10", split="train"), data_root=tmp_path)
    message = one_line(err)
    assert str(folder / "data_batch_3") in message and "incomplete" in message


@pytest.mark.parametrize("damage", ["not gzip", "member missing"])
def test_bad_cifar_archive(tmp_path, damage):
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    batches = fake_cifar_batches()
    if damage == "not gzip":
        archive.parent.mkdir(parents=True)
        archive.write_bytes(b"this is not an archive")
    else:
        del batches["test_batch"]
        build_cifar_archive(archive, batches)
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="cifar10", split="test"), data_root=tmp_path)
    message = one_line(err)
    assert str(archive) in message and "unreadable CIFAR-10 archive" in message


def test_cifar10_missing(no_bundled, tmp_path):
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="cifar10", split="train"), data_root=tmp_path)
    message = one_line(err)
    assert "cifar-10-python.tar.gz" in message and "cifar-10-batches-py/" in message
    assert str(tmp_path / "cifar10") in message and "data.download=true" in message
    assert "data.split=test" not in message


def test_cifar10_npz_copy_from_shared(shared_data_root):
    data = load_images(DataConfig(dataset="cifar10", split="test"), data_root=shared_data_root)
    assert data.images.shape == (10000, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.images.is_contiguous()
    assert data.labels.bincount(minlength=10).tolist() == [1000] * 10
    assert data.class_names == list(SOURCES["cifar10"].classes)
    with np.load(shared_data_root / "cifar10" / "cifar10_test_jpeg.npz") as raw:
        assert np.array_equal(data.images[123].numpy(), raw["x"][123].transpose(2, 0, 1))
        assert list(raw["classes"]) == data.class_names


def test_cifar10_npz_copy_has_no_train_split(shared_data_root):
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="cifar10", split="train"), data_root=shared_data_root)
    message = one_line(err)
    assert "data.split=test" in message and "'train'" in message


def test_npz_dataset_lossless_cifar_images(shared_data_root):
    path = shared_data_root / "cifar10" / "cifar10_foolbox20_lossless.npz"
    data = load_images(DataConfig(dataset="npz", path=str(path)))
    assert data.images.shape == (20, 3, 32, 32) and data.labels.shape == (20,)
    assert data.name == "cifar10_foolbox20_lossless"


@pytest.mark.parametrize(("x", "expected"), [
    (np.full((2, 8, 8), 7, np.uint8), 7),  # (N, H, W)
    (np.full((2, 3, 8, 8), 7, np.uint8), 7),  # already NCHW
    (np.full((2, 8, 8, 3), 1.0, np.float32), 255),  # floats in [0, 1]
    (np.full((2, 8, 8, 3), -1.0, np.float32), 0),  # floats in [-1, 1]
])
def test_npz_layouts(tmp_path, x, expected):
    path = tmp_path / "images.npz"
    np.savez(path, x=x)
    data = load_images(DataConfig(dataset="npz", path=str(path)))
    assert data.images.shape[0] == 2 and data.images.shape[2:] == (8, 8)
    assert data.images.dtype == torch.uint8 and data.labels is None and data.num_classes == 0
    assert torch.all(data.images == expected)


def test_npz_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(DataError, match=r"bad\.npz: not a readable \.npz"):
        load_images(DataConfig(dataset="npz", path=str(bad)))
    odd = tmp_path / "odd.npz"
    np.savez(odd, x=np.zeros((2, 5, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"odd.npz: images of shape \(2, 5, 8, 8\)"):
        load_images(DataConfig(dataset="npz", path=str(odd)))


# ---------------------------------------------------------------- a folder of images

COLOURS = {"cats": [(255, 0, 0), (0, 255, 0)], "dogs": [(0, 0, 255), (10, 20, 30), (200, 100, 50)]}


def write_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    root = tmp_path / "pets"
    for cls, colours in COLOURS.items():
        for i, colour in enumerate(colours):
            write_png(root / cls / f"{i}.png", colour)
    (root / "cats" / "notes.txt").write_text("not an image, ignored")
    (root / "empty-class").mkdir()  # a sub-folder without images is no class
    return root


def test_folder_labels_classes_and_pixels(image_folder):
    data = load_images(DataConfig(dataset="folder", path=str(image_folder)))
    assert data.name == "pets"
    assert data.images.shape == (5, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert data.class_names == ["cats", "dogs"] and data.num_classes == 2
    colours = [c for cs in COLOURS.values() for c in cs]
    for image, colour in zip(data.images, colours, strict=True):
        assert image[:, 3, 4].tolist() == list(colour)
        assert torch.all(image == image[:, :1, :1])


def test_folder_grey_channels(image_folder):
    data = load_images(DataConfig(dataset="folder", path=str(image_folder), channels=1))
    assert data.images.shape == (5, 1, 8, 8)
    colours = [c for cs in COLOURS.values() for c in cs]
    for image, colour in zip(data.images, colours, strict=True):
        grey = Image.new("RGB", (1, 1), colour).convert("L").getpixel((0, 0))
        assert torch.all(image == grey)
    rgb = load_images(DataConfig(dataset="folder", path=str(image_folder), channels=3))
    assert rgb.images.shape == (5, 3, 8, 8)


def test_folder_resizes_with_centre_crop(tmp_path):
    root = tmp_path / "shapes"
    wide = np.zeros((8, 12, 3), np.uint8)  # H 8, W 12: red 2-pixel borders left and right
    wide[:, :2] = wide[:, 10:] = (255, 0, 0)
    wide[:, 2:10] = (0, 0, 255)
    (root / "a").mkdir(parents=True)
    Image.fromarray(wide).save(root / "a" / "wide.png")
    write_png(root / "a" / "small.png", (0, 255, 0), (5, 5))
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="folder", path=str(root)))
    message = one_line(err)
    assert str(root) in message and "differ in size" in message and "data.image_size" in message
    data = load_images(DataConfig(dataset="folder", path=str(root), image_size=4))
    assert data.images.shape == (2, 3, 4, 4)
    assert torch.all(data.images[1] == torch.tensor([0, 0, 255], dtype=torch.uint8)[:, None, None])
    assert torch.all(data.images[0] == torch.tensor([0, 255, 0], dtype=torch.uint8)[:, None, None])
    grey = load_images(DataConfig(dataset="folder", path=str(root), image_size=6, channels=1))
    assert grey.images.shape == (2, 1, 6, 6)


def test_folder_of_loose_files_is_one_class(tmp_path):
    root = tmp_path / "faces"
    for i in range(3):
        write_png(root / f"{i}.jpg", (i * 40, 0, 0))
    data = load_images(DataConfig(dataset="folder", path=str(root), limit=2))
    assert data.images.shape == (2, 3, 8, 8)
    assert data.labels.tolist() == [0, 0] and data.class_names == ["faces"]


@pytest.mark.parametrize("junk", [b"not an image", b"", "half"])
def test_folder_unreadable_file(image_folder, junk):
    bad = image_folder / "dogs" / "broken.png"
    if junk == "half":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(
            buf, "PNG")
        junk = buf.getvalue()[: len(buf.getvalue()) // 2]
    bad.write_bytes(junk)
    with pytest.raises(DataError) as err:
        load_images(DataConfig(dataset="folder", path=str(image_folder)))
    message = one_line(err)
    assert str(bad) in message and "not a readable image" in message


def test_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match=r"no such folder of images \(data.path\)"):
        load_images(DataConfig(dataset="folder", path=str(tmp_path / "nope")))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty: no images \(.*\.png"):
        load_images(DataConfig(dataset="folder", path=str(tmp_path / "empty")))


# ---------------------------------------------------------------- masks


def test_named_masks_mark_exactly_their_region():
    shape = (2, 3, 8, 6)
    rows, cols = torch.arange(8)[:, None], torch.arange(6)[None, :]
    expected = {
        "bottom-half": (rows >= 4).expand(8, 6),
        "top-half": (rows < 4).expand(8, 6),
        "left-half": (cols < 3).expand(8, 6),
        "right-half": (cols >= 3).expand(8, 6),
        "center": (rows >= 2) & (rows < 6) & (cols >= 1) & (cols < 5),
    }
    assert set(expected) == set(NAMED)
    for spec, region in expected.items():
        mask = make_mask(spec, shape)
        assert mask.shape == (2, 1, 8, 6) and mask.dtype == torch.bool, spec
        assert torch.equal(mask[0, 0], region) and torch.equal(mask[1, 0], region), spec
    assert make_mask("bottom-half", (1, 1, 8, 8)).float().mean() == 0.5
    assert make_mask("center", (1, 1, 8, 8)).float().mean() == 0.25
    assert torch.equal(make_mask("top-half", shape), ~make_mask("bottom-half", shape))
    assert torch.equal(make_mask("left-half", shape), ~make_mask("right-half", shape))


def test_odd_sizes_split_at_floor():
    mask = make_mask("bottom-half", (1, 1, 7, 5))
    assert mask[0, 0, :, 0].tolist() == [False] * 3 + [True] * 4


def test_random_mask_is_seeded_and_about_the_share():
    shape = (4, 3, 32, 32)
    a = make_mask("random:0.5", shape, seed=1)
    assert a.shape == (4, 1, 32, 32) and a.dtype == torch.bool
    assert torch.equal(a, make_mask("random:0.5", shape, seed=1))
    assert not torch.equal(a, make_mask("random:0.5", shape, seed=2))
    assert 0.45 < a.float().mean().item() < 0.55
    assert 0.15 < make_mask("random:0.2", shape, seed=1).float().mean().item() < 0.25


@pytest.mark.parametrize("spec", ["bottom", "middle-half", "", "mask.txt"])
def test_unknown_mask_lists_allowed_values(spec):
    with pytest.raises(DataError) as err:
        make_mask(spec, (1, 1, 8, 8))
    message = one_line(err)
    assert repr(spec) in message
    for allowed in (*NAMED, "random:P", ".png/.npy"):
        assert allowed in message


@pytest.mark.parametrize("spec", ["random:0", "random:1", "random:1.5", "random:-0.1", "random:x"])
def test_bad_random_share(spec):
    with pytest.raises(DataError, match=r"random:P needs 0 < P < 1, e\.g\. random:0\.5"):
        make_mask(spec, (1, 1, 8, 8))


def test_png_mask_file(tmp_path):
    pixels = np.zeros((8, 6), np.uint8)
    pixels[:3, 2:] = 255
    Image.fromarray(pixels).convert("RGB").save(tmp_path / "mask.png")
    mask = make_mask(str(tmp_path / "mask.png"), (3, 1, 8, 6))
    assert mask.shape == (3, 1, 8, 6) and mask.dtype == torch.bool
    assert torch.equal(mask[2, 0], torch.from_numpy(pixels == 255))
    mask[0] = False  # a real tensor, not a view shared between images
    assert mask[1].any()


@pytest.mark.parametrize("array", [
    np.eye(8, dtype=bool),
    np.eye(8, dtype=np.float32),
    np.eye(8, dtype=np.uint8)[None] * 255,  # (1, H, W) is squeezed
])
def test_npy_mask_file(tmp_path, array):
    np.save(tmp_path / "mask.npy", array)
    mask = make_mask(str(tmp_path / "mask.npy"), (2, 3, 8, 8))
    assert mask.shape == (2, 1, 8, 8)
    assert torch.equal(mask[1, 0], torch.eye(8, dtype=torch.bool))


def test_mask_file_errors(tmp_path):
    np.save(tmp_path / "small.npy", np.ones((4, 4), bool))
    with pytest.raises(DataError) as err:
        make_mask(str(tmp_path / "small.npy"), (1, 1, 8, 8))
    message = one_line(err)
    assert "small.npy" in message and "(4, 4)" in message and "8x8" in message
    Image.new("L", (8, 6)).save(tmp_path / "wide.png")
    with pytest.raises(DataError, match=r"wide\.png: mask of shape \(6, 8\), images are 8x6"):
        make_mask(str(tmp_path / "wide.png"), (1, 1, 8, 6))
    with pytest.raises(DataError, match=r"missing\.png: no such mask file"):
        make_mask(str(tmp_path / "missing.png"), (1, 1, 8, 8))


@pytest.mark.parametrize("name", ["junk.png", "junk.npy", "objects.npy"])
def test_unreadable_mask_file(tmp_path, name):
    path = tmp_path / name
    if name == "objects.npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(b"junk")
    with pytest.raises(DataError) as err:
        make_mask(str(path), (1, 1, 8, 8))
    message = one_line(err)
    assert str(path) in message and "not a readable mask" in message


# ---------------------------------------------------------------- image grids


def test_make_grid_places_each_image():
    images = np.stack([np.full((3, 4, 5), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = make_grid(images, nrow=3, padding=1, pad_value=7)
    assert grid.shape == (2 * (4 + 1) + 1, 3 * (5 + 1) + 1, 3) and grid.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 1 + r * 5, 1 + c * 6
        assert np.all(grid[top : top + 4, left : left + 5] == 10 * (i + 1)), i
    assert np.all(grid[0] == 7) and np.all(grid[:, 0] == 7) and np.all(grid[5] == 7)
    assert np.all(grid[6:10, 13:18] == 7)  # the empty sixth cell is padding


def test_make_grid_keeps_layout_and_defaults():
    image = torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(1, 2, 3, 4).expand(4, 2, 3, 4)
    rgb = torch.cat([image[:, :1], image], 1)  # (4, 3, 3, 4)
    grid = make_grid(rgb)  # nrow = ceil(sqrt(4)) = 2, padding 2, pad 0
    assert grid.shape == (2 * 5 + 2, 2 * 6 + 2, 3)
    assert np.array_equal(grid[2:5, 2:6], rgb[0].numpy().transpose(1, 2, 0))
    assert np.array_equal(grid[7:10, 8:12], rgb[3].numpy().transpose(1, 2, 0))
    assert make_grid(np.zeros((10, 1, 2, 2), np.uint8)).shape == (3 * 4 + 2, 4 * 4 + 2, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_save_image_writes_a_readable_png(tmp_path, channels, mnist_test):
    images = mnist_test.images[:6].expand(6, channels, 28, 28)
    path = save_image(images, tmp_path / "out" / "grid.png", nrow=3)
    assert path == tmp_path / "out" / "grid.png"
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == ("L" if channels == 1 else "RGB")
        assert im.size == (3 * 30 + 2, 2 * 30 + 2)
        pixels = np.asarray(im)
    grid = make_grid(images, nrow=3)
    assert np.array_equal(pixels, grid[..., 0] if channels == 1 else grid)
    assert np.array_equal(pixels[32:60, 62:90] if channels == 1 else pixels[32:60, 62:90, 1],
                          mnist_test.images[5, 0].numpy())
