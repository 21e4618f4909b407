"""Labelling: provenance records in every output kind, tamper evidence, image and text
watermarks (detected, not detected with a wrong key, rare on real data), CLI inspect/detect."""

from __future__ import annotations

import gzip
import io
import json
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genforge.cli import app
from genforge.errors import ConfigError, DataError
from genforge.labelling import (
    build_record,
    describe,
    embed_provenance,
    label_bytes,
    read_provenance,
)
from genforge.labelling import image_watermark as wm
from genforge.labelling.formats import PNG_SIGNATURE, _png_chunk, _png_chunks, sidecar_path
from genforge.labelling.text_watermark import (
    GAMMA,
    WatermarkLogitsProcessor,
    detect_tokens,
)

from conftest import REPO, SHARED_DATA, tiny
from skips import require

KEY = b"test-secret"


def _record(**extra):
    return build_record(modality="images", run="run1", config_sha256="a" * 64,
                        weights_sha256="b" * 64, seed=7, extra=extra)


def _image(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _write(kind: str, path: Path) -> Path:
    """A file of each output kind, as a writer would leave it before labelling."""
    if kind in ("png", "jpg"):
        Image.fromarray(_image()).save(path)
    elif kind == "csv":
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(path, index=False)
    elif kind == "parquet":
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(path)
    elif kind == "json":
        path.write_text(json.dumps({"samples": ["once upon a time"]}))
    elif kind in ("txt", "jsonl"):
        path.write_text("=== sample 0 ===\nROMEO: hello\n")
    elif kind == "wav":
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(np.arange(801, dtype=np.int16).tobytes())  # odd size: a pad byte
    return path


KINDS = ["png", "jpg", "csv", "parquet", "json", "txt", "wav", "jsonl"]


@pytest.mark.parametrize("kind", KINDS)
def test_provenance_round_trip(kind, tmp_path):
    if kind == "parquet":
        require("pyarrow")
    path = _write(kind, tmp_path / f"out.{kind}")
    embed_provenance(path, _record(), key=KEY)
    found = read_provenance(path, key=KEY)
    assert found is not None and found.status == "verified", found
    r = found.record
    assert (r["label"], r["run"], r["seed"], r["modality"]) == ("AI-generated", "run1", 7, "images")
    assert r["generator"].startswith("genforge ") and r["created"].endswith("Z")
    assert read_provenance(path).status == "intact"  # no key: not verified, not tampered
    assert read_provenance(path, key=b"another").status == "tampered"
    # the file still reads as its format
    if kind in ("png", "jpg"):
        assert Image.open(path).convert("RGB").size == (64, 64)
    elif kind == "parquet":
        assert pd.read_parquet(path)["a"].tolist() == [1, 2]
    elif kind == "csv":
        assert pd.read_csv(path)["b"].tolist() == ["x", "y"]
    elif kind == "wav":
        with wave.open(str(path)) as w:
            assert w.getnframes() == 801
    elif kind == "json":
        assert json.loads(path.read_text())["samples"] == ["once upon a time"]
    # labelling twice keeps one record, the newer
    embed_provenance(path, _record(note="second"), key=KEY)
    assert read_provenance(path, key=KEY).record["note"] == "second"


def test_csv_header_comment_on_request(tmp_path):
    path = _write("csv", tmp_path / "t.csv")
    embed_provenance(path, _record(), key=KEY, csv_comment=True)
    assert path.read_text().startswith("# provenance: {")
    assert not sidecar_path(path).exists()
    assert read_provenance(path, key=KEY).status == "verified"
    assert pd.read_csv(path, comment="#")["a"].tolist() == [1, 2]


@pytest.mark.parametrize("kind", ["png", "json", "csv"])
def test_label_bytes_is_what_embed_writes(kind, tmp_path):
    """The server's in-memory labelling gives the bytes embed_provenance writes into the file
    (csv: its comment form), and a reader verifies them."""
    path = _write(kind, tmp_path / f"out.{kind}")
    body, record = path.read_bytes(), _record()
    labelled = label_bytes(f".{kind}", body, record, key=KEY)
    embed_provenance(path, record, key=KEY, csv_comment=True)
    assert labelled == path.read_bytes() and labelled != body
    again = tmp_path / f"again.{kind}"
    again.write_bytes(labelled)
    assert read_provenance(again, key=KEY).status == "verified"


def test_label_bytes_leaves_sidecar_forms_to_files(tmp_path):
    assert label_bytes(".json", b'["a list"]', _record(), key=KEY) is None
    assert label_bytes(".txt", b"ROMEO: hello", _record(), key=KEY) is None
    with pytest.raises(DataError, match="PNG body: not a PNG file"):
        label_bytes(".png", b"not a png", _record(), key=KEY)


def _edit_png_record(path: Path, edit) -> None:
    """Rewrite the tEXt record of a labelled PNG (dropping its XMP copy), CRCs right."""
    chunks = _png_chunks(path.read_bytes(), path)
    out = []
    for kind, body in chunks:
        if kind == b"tEXt" and body.startswith(b"genforge:provenance\0"):
            record = edit(json.loads(body.split(b"\0", 1)[1]))
            body = b"genforge:provenance\0" + json.dumps(record).encode()
        elif kind == b"iTXt":
            continue
        out.append(_png_chunk(kind, body))
    path.write_bytes(PNG_SIGNATURE + b"".join(out))


def test_tampered_metadata_is_reported_not_trusted(tmp_path):
    path = _write("png", tmp_path / "a.png")
    embed_provenance(path, _record(), key=KEY)
    _edit_png_record(path, lambda r: {**r, "seed": 8})  # a hand edit
    found = read_provenance(path, key=KEY)
    assert found.status == "tampered" and "edited" in found.detail
    assert describe(path, found).split(": ", 1)[1].startswith("TAMPERED")

    # an editor who recomputes the digest still cannot make the HMAC
    import hashlib

    from genforge.labelling.provenance import canonical_json

    def forge(r):
        r = {**r, "run": "someone-else"}
        body = {k: v for k, v in r.items() if k not in ("digest", "hmac")}
        return {**r, "digest": hashlib.sha256(canonical_json(body)).hexdigest()}

    path2 = _write("png", tmp_path / "b.png")
    embed_provenance(path2, _record(), key=KEY)
    _edit_png_record(path2, forge)
    assert read_provenance(path2, key=KEY).status == "tampered"
    assert "HMAC" in read_provenance(path2, key=KEY).detail


def test_edited_content_is_reported(tmp_path):
    png = _write("png", tmp_path / "a.png")
    embed_provenance(png, _record())
    chunks = _png_chunks(png.read_bytes(), png)
    other = io.BytesIO()
    Image.fromarray(_image(seed=1)).save(other, format="PNG")  # new pixels, old metadata
    new = [c for c in _png_chunks(other.getvalue(), png) if c[0] != b"IEND"]
    ours = [c for c in chunks if c[0] in (b"tEXt", b"iTXt")]
    png.write_bytes(PNG_SIGNATURE + b"".join(_png_chunk(*c) for c in [new[0], *ours, *new[1:]])
                    + _png_chunk(b"IEND", b""))
    assert read_provenance(png).status == "tampered"

    csv = _write("csv", tmp_path / "t.csv")
    embed_provenance(csv, _record())
    csv.write_text(csv.read_text().replace("x", "z"))
    found = read_provenance(csv)
    assert found.status == "tampered" and "content" in found.detail


def test_stripped_and_unknown_files_say_so(tmp_path):
    path = _write("png", tmp_path / "a.png")
    embed_provenance(path, _record())
    Image.open(path).save(tmp_path / "stripped.png")  # PIL drops unknown text on re-save
    assert read_provenance(tmp_path / "stripped.png") is None
    assert "no provenance record" in describe("stripped.png", None)
    txt = _write("txt", tmp_path / "t.txt")
    assert read_provenance(txt) is None  # no sidecar


# ------------------------------------------------------------------------ image watermark
def _real_images(n: int) -> np.ndarray:
    """Real photos (CIFAR-10 test, from ../shared) or bundled MNIST digits, upscaled to 128."""
    npz = SHARED_DATA / "cifar10" / "cifar10_test_jpeg.npz"
    if npz.exists():
        x = np.load(npz)["x"][::997][:n]
    else:
        with gzip.open(REPO / "data" / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[::499][:n]
    return np.stack([np.asarray(Image.fromarray(a).resize((128, 128), Image.Resampling.BICUBIC))
                     for a in x])


def _reencode(array: np.ndarray, fmt: str, **kw) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return np.asarray(Image.open(buf))


def test_image_watermark_survives_png_and_needs_the_key():
    host = _real_images(2)[1]
    marked = wm.embed(host, KEY)
    assert wm.psnr(host, marked) > 30
    found = wm.detect(_reencode(marked, "PNG"), KEY)
    assert found.found and found.bits_matched >= 60 and found.p_value < 1e-10
    assert wm.detect(_reencode(marked, "JPEG", quality=75), KEY).found
    wrong = wm.detect(marked, b"wrong key")
    assert not wrong.found and wrong.p_value > wm.ALPHA


def test_binomial_tail_is_scipys_survival_function():
    from scipy.stats import binom

    tails = [wm.binomial_tail(wm.BITS, k) for k in range(wm.BITS + 1)]
    np.testing.assert_allclose(tails, binom.sf(np.arange(wm.BITS + 1) - 1, wm.BITS, 0.5),
                               rtol=1e-12)


def _null_images(n: int) -> np.ndarray:
    """n unmarked images: CIFAR-10 test photos (from ../shared) upscaled to 128, else 64 x 64
    pink noise (a 1/f spectrum like photos'). Not the bundled MNIST: its flat black
    backgrounds make the band's bits agree across images (bits matched vary with variance
    17.9 over 2,000 digits, not 16), an image kind the binomial p-value over-states."""
    npz = SHARED_DATA / "cifar10" / "cifar10_test_jpeg.npz"
    if npz.exists():
        return np.stack([np.asarray(Image.fromarray(a).resize((128, 128),
                                                              Image.Resampling.BICUBIC))
                         for a in np.load(npz)["x"][:n]])
    g, size = np.random.default_rng(0), 64
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij"))
    f[0, 0] = 1
    shape = (n, size, size // 2 + 1)
    spectrum = (g.standard_normal(shape) + 1j * g.standard_normal(shape)) / f
    x = np.fft.irfft2(spectrum.astype(np.complex64), s=(size, size))
    x = (x - x.mean((1, 2), keepdims=True)) / x.std((1, 2), keepdims=True)
    return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)


def _null_share(threshold: float) -> float:
    """P(p <= threshold) for the full-frame p-value min(1, 2 P(X >= k)), X ~ Bin(64, 1/2)."""
    from scipy.stats import binom

    k = np.arange(wm.BITS + 1)
    p = np.minimum(1.0, 2 * binom.sf(k - 1, wm.BITS, 0.5))
    return float(binom.pmf(k, wm.BITS, 0.5)[p <= threshold].sum())


def test_image_watermark_p_values_are_calibrated_on_unmarked_images():
    """What the stated rate rests on: without the mark, the 64 bits read from an image are fair
    coins, so the p-value is exact. 2,000 full-frame reads: the count of p-values at or under
    each threshold lies in its 99.9 % binomial range (too many: the rate is understated)."""
    from scipy.stats import binom

    n = 2000
    p = np.array([wm.detect(x, KEY, search_crops=False).p_value for x in _null_images(n)])
    for threshold in (0.01, 0.05, 0.2, 0.5):
        share = _null_share(threshold)
        low, high = binom.ppf(0.0005, n, share), binom.isf(0.0005, n, share)
        assert low <= (p <= threshold).sum() <= high, (threshold, (p <= threshold).sum(),
                                                        low, high)


def test_image_watermark_false_positives_with_the_crop_search():
    """Clean images through the full detector (crop search too). A count, not a rate: 0 of 30
    bounds the false-positive rate only below 9.5 % (95 % Clopper-Pearson; a bound at the
    stated 1e-4 needs about 30,000 clean images, left to the p-value's calibration above).
    The crop search reads ~800 hypotheses, so its p-value must stay corrected for them: at
    most as many p-values under 0.05 as the 99.9 % range of Binomial(30, 0.05)."""
    from scipy.stats import beta, binom

    n = 30
    assert beta.ppf(0.95, 1, n) == pytest.approx(0.0950, abs=1e-4)  # (0 of n upper bound)
    results = [wm.detect(x, KEY) for x in _null_images(n)]
    assert not any(r.found for r in results), [r.line() for r in results]
    small = sum(r.p_value < 0.05 for r in results)
    assert small <= binom.isf(0.001, n, 0.05), [r.line() for r in results]


def test_image_watermark_refuses_small_images():
    with pytest.raises(ConfigError, match=r"28x28 is too small.*minimum is 64x64"):
        wm.embed(np.zeros((28, 28), np.uint8), KEY)


# ------------------------------------------------------------------------- text watermark
def _sample(processor, n_tokens: int, vocab: int = 200, seed: int = 0) -> list[int]:
    """Tokens from a random 'language model' (fresh logits each step), as sampling does."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[1]])
    for _ in range(n_tokens):
        logits = torch.randn(1, vocab, generator=g) * 2
        if processor is not None:
            logits = processor(ids, logits)
        token = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
        ids = torch.cat([ids, token], 1)
    return ids[0].tolist()


def test_text_watermark_detects_and_needs_the_key():
    ids = _sample(WatermarkLogitsProcessor(KEY), 200)
    found = detect_tokens(ids, KEY)
    assert found.found and found.z > 6, found.line()
    assert found.green / found.scored > GAMMA + 0.2
    assert not detect_tokens(ids, b"wrong key").found
    plain = detect_tokens(_sample(None, 200), KEY)
    assert not plain.found and abs(plain.z) < 4


def test_text_watermark_low_on_human_text():
    text = (REPO / "data" / "text" / "tinyshakespeare.txt").read_text()[-20000:]
    ids = [ord(c) for c in text]  # a char tokenizer
    zs = [detect_tokens(ids[i : i + 400], KEY).z for i in range(0, 20000, 400)]
    assert max(zs) < 4 and abs(float(np.mean(zs))) < 1.5, zs


# ---------------------------------------------------------------------------------- CLI
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("labelling")
    for preset, family, name in (("mnist-dcgan", "gan", "dc"), ("shakespeare-char", "ar", "gpt")):
        result = cli("train", preset, *tiny(family), "--out", base / name)
        assert result.exit_code == 0, result.output
    return base


@pytest.fixture
def dcgan(runs):
    return runs / "dc"


def test_cli_sample_inspect_detect(dcgan, tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_WATERMARK_KEY", "cli-secret")
    plain, marked = tmp_path / "grid.png", tmp_path / "w.png"
    assert cli("sample", dcgan, "--n", "16", "--out", plain).exit_code == 0
    assert cli("sample", dcgan, "--n", "16", "--watermark", "--out", marked).exit_code == 0
    shown = cli("inspect", plain, marked, tmp_path / "nothing.png").output.splitlines()
    assert shown[0].startswith(f"{plain}: VERIFIED") and "run=dc" in shown[0]
    assert "watermark=genforge-dct64-v1" in shown[1]
    assert shown[2] == f"{tmp_path / 'nothing.png'}: no such file"
    found = cli("detect", marked, plain).output.splitlines()
    assert "watermark FOUND" in found[0] and "no watermark" in found[1]

    bare = tmp_path / "bare.npz"
    assert cli("sample", dcgan, "--n", "2", "--no-provenance", "--out", bare).exit_code == 0
    assert "no provenance record" in cli("inspect", bare).output

    small = cli("sample", dcgan, "--n", "1", "--watermark", "--out", tmp_path / "one.png")
    assert small.exit_code == 2 and len(small.output.strip().splitlines()) == 1
    assert "minimum is 64x64" in small.output and not (tmp_path / "one.png").exists()


def test_cli_text_watermark_through_ar_sampling(runs, tmp_path, monkeypatch):
    # the processor goes into the ar family's sampler (a transformers LogitsProcessorList)
    monkeypatch.setenv("GENFORGE_WATERMARK_KEY", "cli-secret")
    gpt, marked, plain = runs / "gpt", tmp_path / "t.txt", tmp_path / "h.txt"
    for out, flags in ((marked, ["--watermark"]), (plain, [])):
        result = cli("sample", gpt, "--prompt", "ROMEO:", "--max-new-tokens", "120", *flags,
                     "--out", out)
        assert result.exit_code == 0, result.output
    lines = cli("detect", "--text", marked, "--text", plain, "--run", gpt).output.splitlines()
    assert "watermark FOUND" in lines[0] and "no watermark" in lines[1], lines
    shown = cli("inspect", marked).output
    assert "VERIFIED" in shown and "modality=text" in shown and "genforge-greenlist" in shown
    monkeypatch.setenv("GENFORGE_WATERMARK_KEY", "another key")
    assert "no watermark" in cli("detect", "--text", marked, "--run", gpt).output
