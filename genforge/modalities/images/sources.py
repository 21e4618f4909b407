"""Known image data sets: which files make them, their checksums and where they come from."""

from __future__ import annotations

from dataclasses import dataclass

from genforge.data.download import RemoteFile


@dataclass(frozen=True)
class Source:
    folder: str  # folder under a data root
    files: dict[str, tuple[RemoteFile, ...]]  # split -> files
    classes: tuple[str, ...]
    licence: str


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR10_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)


def _idx_files(base: str, md5s: dict[str, str], split: str) -> tuple[RemoteFile, ...]:
    prefix = "train" if split == "train" else "t10k"
    names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(n, md5s[n], base + n) for n in names)


_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Members of cifar-10-python.tar.gz, under cifar-10-batches-py/.
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

SOURCES: dict[str, Source] = {
    "mnist": Source(
        folder="mnist",
        files={s: _idx_files(_MNIST_URL, _MNIST_MD5, s) for s in ("train", "test")},
        classes=tuple(str(d) for d in range(10)),
        licence="CC BY-SA 3.0",
    ),
    "fashion-mnist": Source(
        folder="fashion-mnist",
        files={s: _idx_files(_FASHION_URL, _FASHION_MD5, s) for s in ("train", "test")},
        classes=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        licence="MIT",
    ),
    "cifar10": Source(
        folder="cifar10",
        files={"train": (CIFAR10_ARCHIVE,), "test": (CIFAR10_ARCHIVE,)},
        classes=(
            "airplane", "automobile", "bird", "cat", "deer",
            "dog", "frog", "horse", "ship", "truck",
        ),
        licence="no formal licence (Krizhevsky 2009)",
    ),
}
