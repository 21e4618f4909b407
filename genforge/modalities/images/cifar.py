"""CIFAR-10 from the python batches (read without unpickling code) or from an .npz copy."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from genforge.data.limits import check_bytes, npy_header_bytes
from genforge.errors import DataError
from genforge.modalities.images.sources import CIFAR10_BATCH_MD5

BATCH_FOLDER = "cifar-10-batches-py"
NPZ_COPY = "cifar10_test_jpeg.npz"  # the lossy 10k test split in ../shared/data/cifar10


class _BatchUnpickler(pickle.Unpickler):
    """The batches are pickles; allow only what a dict of numpy arrays needs, never code."""

    _allowed: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data batch")


def read_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One python batch -> images (N, 3, 32, 32) uint8 and labels (N,)."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: not a CIFAR-10 python batch ({err})") from None
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels; fetch it again")
    return images, labels


def batch_names(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def load_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the split from `folder/cifar-10-batches-py/` or from `cifar-10-python.tar.gz`."""
    unpacked = folder / BATCH_FOLDER
    parts = []
    if unpacked.is_dir():
        for name in batch_names(split):
            path = unpacked / name
            if not path.exists():
                raise DataError(f"{path}: missing CIFAR-10 batch; the folder is incomplete")
            parts.append(read_batch(path.read_bytes(), str(path)))
    else:
        archive = folder / "cifar-10-python.tar.gz"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for name in batch_names(split):
                    member = tar.extractfile(f"{BATCH_FOLDER}/{name}")
                    if member is None:
                        raise KeyError(name)
                    parts.append(read_batch(member.read(), f"{archive}:{name}"))
        except (tarfile.TarError, EOFError, KeyError, OSError) as err:
            raise DataError(f"{archive}: unreadable CIFAR-10 archive ({err})") from None
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An .npz with `x` (N, H, W, C) or (N, C, H, W) or (N, H, W) uint8 and optional `y`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = "x" if "x" in keys else (keys[0] if keys else None)
            if key is None:
                raise DataError(f"{path}: the .npz holds no arrays")
            for name in [key, "y"] if "y" in keys else [key]:  # headers first: bounded
                with archive.zip.open(f"{name}.npy") as member:
                    check_bytes(npy_header_bytes(member), str(path), f"array {name!r}")
            images = archive[key]
            labels = archive["y"].astype(np.int64) if "y" in keys else None
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, zipfile.BadZipFile,
            zlib.error) as err:  # NotImplementedError: a flipped compression method
        raise DataError(f"{path}: not a readable .npz ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:200]})") from None
    return to_nchw(images, str(path)), labels


def to_nchw(images: np.ndarray, where: str) -> np.ndarray:
    """Accept (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}; return uint8 NCHW."""
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"{where}: images of shape {images.shape}; expected (N, H, W[, C])")
    if images.shape[0] == 0 or images.size == 0:
        raise DataError(f"{where}: no images (shape {images.shape})")
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            bad = int((~np.isfinite(images)).sum())
            raise DataError(f"{where}: {bad} pixel values are NaN or infinite; images must be "
                            "finite numbers")
        low, high = float(images.min()), float(images.max())
        if low >= -1 and high <= 1:
            lo = 0.0 if low >= 0 else -1.0  # [0, 1] or [-1, 1] floats
            return np.round((images - lo) / (1 - lo) * 255).astype(np.uint8)
        if low >= 0 and high <= 255:
            return np.round(images).astype(np.uint8)
        raise DataError(f"{where}: float pixels in [{low:g}, {high:g}]; allowed ranges are "
                        "[0, 1], [-1, 1] or [0, 255]")
    if np.issubdtype(images.dtype, np.integer) and images.min() >= 0 and images.max() <= 255:
        return np.ascontiguousarray(images.astype(np.uint8))
    raise DataError(f"{where}: pixels of dtype {images.dtype} outside 0..255; use uint8 "
                    "images or floats in [0, 1] / [-1, 1]")


def verify_batches(folder: Path) -> list[str]:
    """Names of batches whose md5 differs from the published one (for `genforge list`)."""
    from genforge.data.download import md5sum

    bad = []
    for name, md5 in CIFAR10_BATCH_MD5.items():
        path = folder / BATCH_FOLDER / name
        if path.exists() and md5sum(path) != md5:
            bad.append(name)
    return bad
