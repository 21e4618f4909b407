"""The bad-input matrix (issue 16): every input kind genforge reads x its bad variants.

Each case drives the real CLI (typer's CliRunner) and asserts the one error contract: exit
code 2, ONE line on stderr starting with `error: ` that names the file, field or value, no
traceback, and nothing created or changed in the folder the case works in. Byte-level
variants (random truncation points, corrupt bytes) go through hypothesis against the readers,
whose only allowed failure is a GenforgeError. docs/bad-inputs.md lists what is covered.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from genforge.cli import app
from genforge.errors import GenforgeError

from skips import require

runner = CliRunner()
FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------
# the contract


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def expect_error(args: list[str], where: Path, *names: str, env: dict | None = None) -> str:
    """Run the CLI; assert the contract; return the error line."""
    before = snapshot(where)
    result = runner.invoke(app, [str(a) for a in args], env=env)
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in output
    lines = result.stderr.splitlines()
    assert result.exit_code == 2, output
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in names:
        assert name.lower() in lines[0].lower(), (name, lines[0])
    assert snapshot(where) == before, "the failed command changed files"
    return lines[0]


# ------------------------------------------------------------------------------------------
# bytes of good files, to break


def png_bytes(size: tuple[int, int] = (28, 28), mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()  # noise: the pixel data spans many bytes, so a cut lands inside it
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), np.uint8)
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (28, 28), (1, 2, 3)).save(buf, format="JPEG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (a decompression bomb's header), no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def idx_bytes(n: int = 8, magic: int = 0x803, shape: tuple[int, ...] | None = None) -> bytes:
    """An IDX file; with `shape` given, only the header that claims it."""
    header = shape is not None
    shape = shape if header else ((n, 28, 28) if magic == 0x803 else (n,))
    body = b"" if header else bytes(int(np.prod(shape)))
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in shape) + body


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_header_bytes(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    """An .npy whose header claims `shape`, with no data after it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def huge_npz() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", npy_header_bytes((10**6, 3, 10**4, 10**4)))
    return buf.getvalue()


def flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[p % len(out)] ^= 0xFF
    return bytes(out)


# ------------------------------------------------------------------------------------------
# a tiny trained run, shared by the module


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from genforge.api import train
    from genforge.registry import load_config

    cfg = load_config("mnist-dcgan", [
        "model.width=8", "model.latent_dim=8", "train.max_steps=2", "train.batch_size=8",
        "data.limit=64", "log.progress=false", "log.tensorboard=false", "log.sample_every=0",
        "log.checkpoint_every=1"])
    return train(cfg, out=tmp_path_factory.mktemp("good") / "run").run_dir


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------------
# images given to `complete --input` and `eval --fake`: PNG/JPEG, .npz, .npy

IMAGE_FILES = {
    "png-truncated": ("bad.png", lambda: png_bytes()[:40]),
    "png-corrupt": ("bad.png", lambda: flip(png_bytes(), [20, 21, 40, 41, 50])),
    "png-empty": ("bad.png", lambda: b""),
    "png-not-an-image": ("bad.png", lambda: b"hello, world\n"),
    "png-100k-x-100k": ("bad.png", lambda: png_header_only(100_000, 100_000)),
    "png-6k-x-6k": ("bad.png", lambda: png_header_only(6000, 6000)),
    "jpeg-truncated": ("bad.jpg", lambda: jpeg_bytes()[:200]),
    "npz-truncated": ("bad.npz", lambda: npz_bytes(x=np.zeros((4, 28, 28), np.uint8))[:100]),
    "npz-corrupt": ("bad.npz", lambda: flip(npz_bytes(x=np.zeros((4, 28, 28), np.uint8)),
                                            [60, 61, 62, 63])),
    "npz-empty-file": ("bad.npz", lambda: b""),
    "npz-no-arrays": ("bad.npz", lambda: npz_bytes()),
    "npz-nan": ("nan.npz", lambda: npz_bytes(x=np.full((4, 28, 28), np.nan, np.float32))),
    "npz-inf": ("inf.npz", lambda: npz_bytes(x=np.full((4, 28, 28), np.inf, np.float32))),
    "npz-strings": ("bad.npz", lambda: npz_bytes(x=np.array(["a", "b"]))),
    "npz-complex": ("bad.npz", lambda: npz_bytes(x=np.zeros((4, 28, 28), np.complex64))),
    "npz-object-pickle": ("bad.npz", lambda: npz_bytes(x=np.array([{}, 1], dtype=object))),
    "npz-5-channels": ("bad.npz", lambda: npz_bytes(x=np.zeros((4, 5, 28, 28), np.uint8))),
    "npz-1d": ("bad.npz", lambda: npz_bytes(x=np.zeros(10, np.uint8))),
    "npz-zero-images": ("bad.npz", lambda: npz_bytes(x=np.zeros((0, 28, 28), np.uint8))),
    "npz-out-of-range": ("bad.npz", lambda: npz_bytes(x=np.full((4, 28, 28), 300, np.int32))),
    "npz-huge-header": ("bad.npz", huge_npz),
    "npy-truncated": ("bad.npy", lambda: npy_header_bytes((4, 28, 28)) + b"\0" * 10),
    "npy-huge-header": ("bad.npy", lambda: npy_header_bytes((10**6, 3, 10**4, 10**4))),
    "missing-file": ("missing.npz", None),
}


@pytest.mark.parametrize("case", sorted(IMAGE_FILES))
def test_complete_input(run, work, case):
    name, make = IMAGE_FILES[case]
    if make is not None:
        (work / name).write_bytes(make())
    expect_error(["complete", run, "--input", name, "--out", "filled.png"], work, name)


@pytest.mark.parametrize("case", ["npz-nan", "npz-inf", "npz-corrupt", "npz-no-arrays",
                                  "npz-object-pickle", "png-100k-x-100k", "missing-file"])
def test_eval_fake(work, case):
    name, make = IMAGE_FILES[case]
    if make is not None:
        (work / name).write_bytes(make())
    expect_error(["eval", "--real", "mnist:test", "--fake", name, "--out", "ev",
                  "--no-progress"], work, name)


@FUZZ
@given(cut=st.integers(0, 10_000), kind=st.sampled_from(["png", "jpg", "npz", "npy"]))
def test_image_readers_truncated(tmp_path, cut, kind):
    from genforge.api import read_images

    good = {"png": png_bytes((9, 7), "RGB"), "jpg": jpeg_bytes(),
            "npz": npz_bytes(x=np.zeros((2, 8, 8), np.uint8)),
            "npy": _npy(np.zeros((2, 8, 8), np.uint8))}[kind]
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(good)
    whole, _ = read_images(path)
    path.write_bytes(good[: cut % len(good)])
    try:  # an error naming the file, or (a PNG cut in its IEND chunk) every pixel intact
        images, _ = read_images(path)
    except GenforgeError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    else:
        assert np.array_equal(images, whole)


@FUZZ
@given(where=st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
       kind=st.sampled_from(["png", "jpg", "npz", "npy"]))
def test_image_readers_corrupt(tmp_path, where, kind):
    """Flipped bytes: an error naming the file, or images that are still valid uint8 NCHW."""
    from genforge.api import read_images

    good = {"png": png_bytes((9, 7), "RGB"), "jpg": jpeg_bytes(),
            "npz": npz_bytes(x=np.zeros((2, 8, 8), np.uint8)),
            "npy": _npy(np.zeros((2, 8, 8), np.uint8))}[kind]
    path = tmp_path / f"flip.{kind}"
    path.write_bytes(flip(good, where))
    try:
        images, _ = read_images(path)
    except GenforgeError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    else:
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[1] in (1, 3)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# training data: IDX (MNIST in a data root), image folders, .npz, text corpora, CSV series

IDX_IMAGES = "train-images-idx3-ubyte"
IDX_LABELS = "train-labels-idx1-ubyte"
IDX_CASES = {
    "truncated": lambda: idx_bytes()[:300],
    "empty": lambda: b"",
    "wrong-magic-dtype": lambda: idx_bytes(magic=0x0D03),  # float32 IDX
    "huge-header-1e12": lambda: idx_bytes(shape=(10**6, 1000, 1000)),
    "overflowing-header": lambda: idx_bytes(shape=(2**32 - 1,) * 3),
    "gzip-corrupt": lambda: flip(gzip.compress(idx_bytes()), [30, 31, 32]),
    "gzip-truncated": lambda: gzip.compress(idx_bytes())[:40],
    "labels-mismatch": None,
}


@pytest.mark.parametrize("case", sorted(IDX_CASES))
def test_idx(work, case):
    folder = work / "root" / "mnist"
    folder.mkdir(parents=True)
    make = IDX_CASES[case]
    gz = case.startswith("gzip")
    images = idx_bytes(n=9) if make is None else make()
    (folder / (IDX_IMAGES + (".gz" if gz else ""))).write_bytes(images)
    (folder / IDX_LABELS).write_bytes(idx_bytes(n=8, magic=0x801))
    expect_error(["train", "mnist-dcgan", "data.root=root", "--out", "out"], work,
                 "root/mnist")


@FUZZ
@given(cut=st.integers(0, 2000), flips=st.lists(st.integers(0, 2000), max_size=3))
def test_idx_reader_fuzz(tmp_path, cut, flips):
    from genforge.modalities.images.idx import IMAGES_MAGIC, read_idx

    good = idx_bytes(n=2)
    data = flip(good, flips)[: cut % (len(good) + 1)] if flips else good[: cut % len(good)]
    path = tmp_path / IDX_IMAGES
    path.write_bytes(data)
    try:
        array = read_idx(path, IMAGES_MAGIC)
    except GenforgeError as err:
        assert str(path) in str(err)
    else:  # flips inside the pixels leave a valid file of the same shape
        assert array.shape == (2, 28, 28)


FOLDER_CASES = {
    "missing": None,
    "empty": {},
    "a-file-not-a-folder": "file",
    "truncated-png": {"a/x.png": lambda: png_bytes()[:60]},
    "corrupt-png": {"a/x.png": lambda: flip(png_bytes(), [33, 34, 35, 36, 37])},
    "not-an-image": {"a/x.png": lambda: b"GIF89a nonsense"},
    "huge-png": {"a/x.png": lambda: png_header_only(100_000, 100_000)},
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_image_folder(work, case):
    spec = FOLDER_CASES[case]
    path = work / "imgs"
    if spec == "file":
        path.write_text("x")
    elif spec is not None:
        path.mkdir()
        for rel, make in spec.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(make())
    expect_error(["train", "mnist-dcgan", "data.dataset=folder", f"data.path={path}",
                  "data.image_size=28", "data.channels=1", "--out", "out"], work, "imgs")


@pytest.mark.parametrize("case", ["npz-nan", "npz-truncated", "npz-5-channels",
                                  "npz-huge-header", "missing-file"])
def test_npz_training_data(work, case):
    name, make = IMAGE_FILES[case]
    if make is not None:
        (work / name).write_bytes(make())
    expect_error(["train", "mnist-dcgan", "data.dataset=npz", f"data.path={work / name}",
                  "--out", "out"], work, name)


TEXT_CASES = {
    "not-utf8": b"caf\xe9 \xff\xfe\n" * 20,
    "empty": b"",
    "too-short": b"ab\n",
    "missing": None,
    "folder-without-txt": "folder",
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_text_corpus(work, tmp_path_factory, case):
    content = TEXT_CASES[case]
    path = work / "corpus.txt"
    if content == "folder":
        path = work / "corpus"
        path.mkdir()
        (path / "notes.md").write_text("x")
    elif content is not None:
        path.write_bytes(content)
    env = {"GENFORGE_CACHE": str(tmp_path_factory.mktemp("cache"))}
    expect_error(["train", "shakespeare-char", f"data.path={path}", "data.block_size=16",
                  "--out", "out"], work, path.name, env=env)


CSV_CASES = {
    "not-utf8": b"month,value\n1949-01,\xff\xfe\n",
    "empty": b"",
    "header-only": b"month,value\n",
    "text-values": b"month,value\n" + b"".join(b"%d,abc\n" % i for i in range(40)),
    "nan-values": b"month,value\n" + b"".join(b"%d,nan\n" % i for i in range(40)),
    "inf-values": b"month,value\n" + b"".join(b"%d,inf\n" % i for i in range(40)),
    "ragged-rows": b"month,value,other\n" + b"".join(b"%d,1\n" % i for i in range(40)),
    "too-short": b"month,value\n1,2\n2,3\n",
    "missing": None,
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_series_csv(work, case):
    content = CSV_CASES[case]
    path = work / "series.csv"
    if content is not None:
        path.write_bytes(content)
    expect_error(["train", "airline-series", f"data.path={path}", "--out", "out"], work,
                 "series.csv")


# ------------------------------------------------------------------------------------------
# configs: YAML files and key=value overrides

YAML_CASES = {
    "not-utf8": (b"family: gan\n# caf\xe9\n", "cfg.yaml"),
    "invalid-yaml": (b"family: [gan\n", "cfg.yaml"),
    "a-list": (b"- 1\n- 2\n", "cfg.yaml"),
    "empty": (b"", "cfg.yaml"),
    "unknown-family": (b"family: nope\n", "nope"),
    "unknown-key": (b"family: gan\ntrain: {max_stepz: 3}\n", "max_stepz"),
    "wrong-type": (b"family: gan\ntrain: {max_steps: lots}\n", "train.max_steps"),
    "section-not-mapping": (b"family: gan\ntrain: 5\n", "train"),
    "binary": (b"\x00\x01\x02\x03", "cfg.yaml"),
    "a-folder": (None, "cfg.yaml"),
    "missing": ("missing", "cfg.yaml"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_config(work, case):
    content, named = YAML_CASES[case]
    path = work / "cfg.yaml"
    if content is None:
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    expect_error(["validate", "cfg.yaml"], work, named)


OVERRIDE_CASES = {
    "no-equals": "train.max_steps", "unknown-key": "train.max_stepz=3",
    "unknown-section": "nope=1", "wrong-type": "train.max_steps=lots",
    "float-for-int": "train.max_steps=1e30", "negative": "data.limit=-1",
    "nan-lr": "train.lr=nan", "inf-lr": "train.lr=.inf", "nan-ema": "train.ema_decay=nan",
    "bad-choice": "train.precision=fp8", "value-as-section": "train.lr.x=1",
    "list-for-int": "train.batch_size=[1,2]",
}


@pytest.mark.parametrize("case", sorted(OVERRIDE_CASES))
def test_override(work, case):
    text = OVERRIDE_CASES[case]
    expect_error(["validate", "mnist-dcgan", text], work, text.split("=")[0])


@pytest.mark.parametrize("root", ["--data-root", "data.root="])
def test_data_root_that_does_not_exist(work, root):
    args = ["--data-root", "/nonexistent/x"] if root == "--data-root" else \
        ["data.root=/nonexistent/x"]
    expect_error(["train", "mnist-dcgan", *args, "--out", "out"], work, "/nonexistent/x")


# ------------------------------------------------------------------------------------------
# model files and run folders


def _tamper(path: Path, case: str) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    if case == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "header-length-huge":
        path.write_bytes(struct.pack("<Q", 2**60) + raw[8:])
    elif case == "header-not-json":
        path.write_bytes(raw[:8] + b"#" + raw[9:])
    elif case == "header-offsets-out-of-range":
        header = json.loads(raw[8 : 8 + n])
        first = next(k for k in header if k != "__metadata__")
        header[first]["data_offsets"][1] += 10**9
        body = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n:])
    else:
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        if case == "metadata-config-not-json":
            meta["config"] = "{not json"
        elif case == "metadata-missing-data-info":
            meta.pop("data_info")
        elif case == "metadata-unknown-family":
            meta["config"] = meta["config"].replace('"family": "gan"', '"family": "nope"')
        elif case == "tensor-wrong-shape":
            key = next(k for k in tensors if k.endswith("weight"))
            tensors[key] = tensors[key].flatten()[:3].clone()
        elif case == "tensor-missing":
            tensors.pop(next(k for k in tensors if k.endswith("weight")))
        save_file(tensors, str(path), metadata=meta)


MODEL_CASES = ["truncated", "empty", "header-length-huge", "header-not-json",
               "header-offsets-out-of-range", "metadata-config-not-json",
               "metadata-missing-data-info", "metadata-unknown-family", "tensor-wrong-shape",
               "tensor-missing"]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_file(run, work, case):
    copy = work / "run"
    shutil.copytree(run, copy)
    _tamper(copy / "model.safetensors", case)
    expect_error(["sample", "run", "--n", "4", "--out", "x.png"], work, "model.safetensors")


@FUZZ
@given(data=st.data())
def test_model_header_fuzz(run, tmp_path, data):
    """Flipped bytes anywhere in the header (JSON, offsets, metadata): a GenforgeError, or a
    model that still loads."""
    from genforge.api import load

    raw = (run / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    where = data.draw(st.lists(st.integers(0, 8 + n - 1), min_size=1, max_size=3))
    copy = tmp_path / f"m{len(list(tmp_path.iterdir()))}.safetensors"
    copy.write_bytes(flip(raw, where))
    try:
        load(copy)
    except GenforgeError as err:
        assert "\n" not in str(err)


RUN_CASES = {
    "missing": lambda d: shutil.rmtree(d),
    "a-file": lambda d: (shutil.rmtree(d), d.write_text("x")),
    "no-model-file": lambda d: (d / "model.safetensors").unlink(),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_folder_for_sampling(run, work, case):
    copy = work / "run"
    shutil.copytree(run, copy)
    RUN_CASES[case](copy)
    expect_error(["sample", "run", "--n", "4", "--out", "x.png"], work, "run")


RESUME_CASES = {
    "no-config": lambda s: (s.parent / "config.yaml").unlink(),
    "no-state": lambda s: shutil.rmtree(s),
    "optim-truncated": lambda s: (s / "optim.pt").write_bytes((s / "optim.pt").read_bytes()[:99]),
    "optim-missing": lambda s: (s / "optim.pt").unlink(),
    "nets-truncated": lambda s: (s / "nets.safetensors").write_bytes(b"\x10" + b"\0" * 20),
    "trainer-json-corrupt": lambda s: (s / "trainer.json").write_text("{step:"),
    "rng-corrupt": lambda s: (s / "rng_rank0.pt").write_bytes(b"not a zip"),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_half_copied_run_folder_for_resume(run, work, case):
    copy = work / "run"
    shutil.copytree(run, copy)
    RESUME_CASES[case](copy / "state")
    expect_error(["train", "--resume", "run", "train.max_steps=3"], work, "run")


# ------------------------------------------------------------------------------------------
# resource bounds: refused up front with the limit named


def test_sample_request_too_large(run, work):
    line = expect_error(["sample", run, "--n", "1000000000", "--out", "x.png"], work,
                        "1000000000")
    assert "at most" in line


@pytest.mark.parametrize("out", ["/proc/genforge-x.png", "/proc/genforge-x.npz"])
def test_output_where_it_cannot_go(run, work, out):
    expect_error(["sample", run, "--n", "2", "--out", out], work, "x")


def test_model_too_large_for_memory(work):
    line = expect_error(["train", "mnist-dcgan", "model.width=100000", "--out", "out"], work,
                        "model.")
    assert "parameters" in line and "limit" in line


# ------------------------------------------------------------------------------------------
# tables (CSV / Parquet) and audio (WAV folders)


def parquet_bytes() -> bytes:
    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame({"a": list(range(50)), "b": ["x", "y"] * 25}).to_parquet(buf)
    return buf.getvalue()


TABLE_CASES = {
    "csv-not-utf8": ("t.csv", lambda: b"a,b\n" + b"caf\xe9,\xff\n" * 30),
    "csv-empty": ("t.csv", lambda: b""),
    "csv-header-only": ("t.csv", lambda: b"a,b\n"),
    "csv-ragged-rows": ("t.csv", lambda: b"a,b\n" + b"1,2,3,4\n" * 30),
    "csv-binary": ("t.csv", lambda: bytes(range(256)) * 8),
    "parquet-truncated": ("t.parquet", lambda: parquet_bytes()[:200]),
    "parquet-corrupt": ("t.parquet", lambda: flip(parquet_bytes(), list(range(100, 400, 7)))),
    "parquet-empty-file": ("t.parquet", lambda: b""),
    "missing": ("t.csv", None),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_table(work, case):
    require("pandas")
    name, make = TABLE_CASES[case]
    if make is not None:
        (work / name).write_bytes(make())
    expect_error(["train", "tables", f"data.path={work / name}", "--out", "out"], work, name)


def wav_bytes(channels: int = 1, frames: int = 4000, value: float = 0.1,
              subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.full((frames, channels), value, np.float32), 8000, format="WAV",
             subtype=subtype)
    return buf.getvalue()


WAV_CASES = {
    "truncated": lambda: wav_bytes()[:30],
    "corrupt-header": lambda: flip(wav_bytes(), [0, 1, 2, 8, 9]),
    "empty": lambda: b"",
    "no-samples": lambda: wav_bytes(frames=0),
    "stereo": lambda: wav_bytes(channels=2),
    "nan-samples": lambda: wav_bytes(value=float("nan"), subtype="FLOAT"),
    "not-a-wav": lambda: b"RIFF nonsense" * 10,
}


@pytest.mark.parametrize("case", sorted(WAV_CASES))
def test_wav_folder(work, case):
    require("soundfile")
    folder = work / "wavs"
    folder.mkdir()
    for i in range(4):  # good recordings, and one bad one
        (folder / f"{i}_a_{i}.wav").write_bytes(wav_bytes())
    (folder / "9_a_9.wav").write_bytes(WAV_CASES[case]())
    expect_error(["train", "fsdd-cdcgan", "data.dataset=wavs", f"data.path={folder}",
                  "data.split=all", "model.conditional=false", "--out", "out"], work,
                 "9_a_9.wav")


def test_16_bit_png_is_read_as_grey(tmp_path):
    """A 16-bit grey PNG (another dtype) keeps its one channel and its top 8 bits."""
    from PIL import Image

    from genforge.api import read_images

    Image.fromarray(np.full((5, 6), 40000, np.uint16)).save(tmp_path / "deep.png")
    images, _ = read_images(tmp_path / "deep.png")
    assert images.shape == (1, 1, 5, 6) and images.dtype == np.uint8
    assert (images == 40000 >> 8).all()


def test_console_entry_point_prints_one_line_and_no_warning(work):
    """Through genforge.cli.main in a real process, warnings shown: still exactly one line (an
    empty series used to print numpy's RuntimeWarnings before its error)."""
    import subprocess
    import sys

    (work / "s.csv").write_text("month,value\n")
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "genforge", "train",
                           "airline-series", f"data.path={work / 's.csv'}", "--out", "out"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "s.csv" in lines[0]
    assert sorted(p.name for p in work.iterdir()) == ["s.csv"]
