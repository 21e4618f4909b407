"""Audio: WAV reading and writing, the log-mel round trip through Griffin-Lim, bad files refused
in one line, and each audio preset trained, sampled, written and evaluated on a few WAVs that
the test writes (FSDD's file layout and naming, three digits)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import genforge
from genforge.cli import app
from genforge.errors import DataError
from genforge.modalities.audio import dsp
from genforge.modalities.audio.data import AudioDataConfig, AudioOutput, load_audio, read_wav
from genforge.registry import PRESET_DIR, load_config

from conftest import SHARED_DATA, tiny
from skips import skip_unless

RATE = 8000
DIGITS = {"0": 300.0, "1": 700.0, "2": 1500.0}  # each "digit" is a tone with harmonics


def tone(freq: float, seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * freq * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
    envelope = np.sin(np.pi * t / t[-1]) ** 2  # rises and falls like a syllable
    return (0.5 * wave * envelope / 1.9).astype(np.float32)


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory):
    """A data root holding audio/fsdd/recordings/{digit}_{speaker}_{index}.wav: 3 digits,
    2 speakers, indices 0-7 (0-4 are the official test split)."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "audio" / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for d, freq in DIGITS.items():
        for s, speaker in enumerate(("ann", "bob")):
            for i in range(8):
                seconds = 0.25 + 0.05 * ((i + s) % 6)
                wave = tone(freq * (1 + 0.05 * s), seconds, seed=i + 10 * s)
                sf.write(folder / f"{d}_{speaker}_{i}.wav", wave, RATE, subtype="PCM_16")
    return root


# --------------------------------------------------------------------------------------------
# WAV files


def test_wav_round_trip(tmp_path):
    waves = np.stack([tone(440, 0.3), tone(880, 0.3, seed=1)])  # (2, L)
    info = {"sample_rate": RATE}
    out = AudioOutput()
    folder = out.write(waves, tmp_path / "clips", info, provenance={"model": "test"})
    for i, wave in enumerate(waves):
        back, rate = read_wav(folder / f"sample_{i:04d}.wav")
        assert rate == RATE and back.shape == wave.shape
        assert np.abs(back - wave).max() <= 1.0 / 32767 + 1e-6  # 16-bit PCM
    joined = out.write(waves, tmp_path / "joined.wav", info, provenance={"model": "test"})
    back, _ = read_wav(joined)
    gap = int(0.25 * RATE)
    assert len(back) == 2 * waves.shape[1] + gap
    assert np.allclose(back[waves.shape[1] + gap:], waves[1], atol=1e-4)
    with sf.SoundFile(joined) as f:
        record = json.loads(f.comment)  # the sealed provenance record (genforge.labelling)
        assert record["model"] == "test" and record["label"] == "AI-generated"
    npz = np.load(out.write(waves, tmp_path / "w.npz", info))
    assert np.array_equal(npz["waves"], waves) and int(npz["sample_rate"]) == RATE


def test_resampled_to_one_rate_and_fixed_length(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(500, 1.2, rate=16000), 16000)  # longer: trimmed
    sf.write(folder / "b.wav", tone(500, 0.2, rate=22050), 22050)  # shorter: padded
    data = load_audio(AudioDataConfig(path=str(folder), split="all"))
    assert data.waves.shape == (2, 32 * 160) and data.labels is None
    long, short = (data.waves[data.files.index(name)] for name in ("a.wav", "b.wav"))
    spectrum = np.abs(np.fft.rfft(long.numpy()))
    peak_hz = np.argmax(spectrum) * RATE / len(long)
    assert abs(peak_hz - 500) < 10  # the tone kept its pitch through the resampler
    assert short[int(0.25 * RATE):].abs().max() == 0  # padded with silence
    assert data.images.dtype == torch.uint8 and data.images.shape == (2, 1, 32, 32)


# --------------------------------------------------------------------------------------------
# Spectrogram -> Griffin-Lim -> spectrogram


def test_griffin_lim_error_is_bounded():
    p = dsp.SpecParams(RATE, 512, 160, 32, 32)
    t = np.arange(p.length) / RATE
    chirp = np.sin(2 * np.pi * (200 * t + 900 * t**2)) * np.hanning(p.length)  # 200 -> 1350 Hz
    wave = torch.from_numpy(np.stack([chirp, tone(600, p.length / RATE)])).float()
    magnitude = dsp.stft(wave, p).abs()
    fast = dsp.griffin_lim(magnitude, p, iterations=64, momentum=0.99)
    plain = dsp.griffin_lim(magnitude, p, iterations=64, momentum=0.0)
    sc_fast, sc_plain = (dsp.spectral_convergence(w, magnitude, p) for w in (fast, plain))
    assert sc_fast < 0.08 and sc_fast < sc_plain  # momentum helps at the same cost
    # the whole chain: log-mel image -> mel -> linear (NNLS) -> Griffin-Lim -> log-mel image
    db = dsp.mel_db(wave, p)
    p = dsp.SpecParams(RATE, 512, 160, 32, 32, db_max=math.ceil(db.max().item()), top_db=80.0)
    x = dsp.to_unit(db, p)
    again = dsp.to_unit(dsp.mel_db(dsp.unit_to_wave(x, p), p), p)
    loud = x > -0.5  # bins within 40 dB of the top
    error_db = (again - x)[loud].abs().mean() * p.top_db / 2
    # pure tones are the hard case for mel -> linear (a band's energy is spread over its bins):
    # about 3.8 dB here; speech clips come back within about 1.7 dB
    assert error_db < 4.5, f"mean log-mel error {error_db:.2f} dB"


# --------------------------------------------------------------------------------------------
# Reading FSDD's layout; bad files


def test_fsdd_labels_and_official_split(fsdd_root):
    train = load_audio(AudioDataConfig(split="train"), fsdd_root)
    test = load_audio(AudioDataConfig(split="test"), fsdd_root)
    assert (len(train), len(test)) == (3 * 2 * 3, 3 * 2 * 5)  # index 0-4 is test
    assert train.class_names == ["0", "1", "2"] and train.labels.bincount().tolist() == [6] * 3
    assert all(int(f.rsplit("_", 1)[1][:-4]) >= 5 for f in train.files)
    info = train.info()
    assert info["kind"] == "audio" and info["image_size"] == 32 and info["num_classes"] == 3
    assert info["split"]["rule"].startswith("official FSDD split")
    x = train.images.float() / 127.5 - 1
    assert 1 - 2 / 80 <= x.max() <= 1 and x.min() == -1  # loudest bin within 1 dB of +1
    few = load_audio(AudioDataConfig(split="test", limit=6), fsdd_root)
    assert len(set(few.labels.tolist())) > 1  # `limit` takes a mix, not one class


def _bad_files(folder):
    folder.mkdir()
    (folder / "text.wav").write_text("this is not audio\n")
    sf.write(folder / "stereo.wav", np.zeros((800, 2), np.float32), RATE)
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), RATE)
    good = folder / "good.wav"
    sf.write(good, tone(440, 0.2), RATE)
    (folder / "truncated.wav").write_bytes(good.read_bytes()[:30])
    return folder


@pytest.mark.parametrize("name, needle", [("text.wav", "not a readable WAV"),
                                          ("stereo.wav", "2 channels"),
                                          ("empty.wav", "empty"),
                                          ("truncated.wav", "not a readable WAV")])
def test_bad_files_are_refused_in_one_line(tmp_path, name, needle):
    folder = _bad_files(tmp_path / "bad")
    with pytest.raises(DataError) as err:
        read_wav(folder / name)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(folder / name) in message and needle in message
    only = tmp_path / "only"
    only.mkdir()
    (only / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(DataError, match=name):  # a folder holding it is refused, naming it
        load_audio(AudioDataConfig(path=str(only), split="all"))


def test_stereo_mixdown_and_empty_folder(tmp_path):
    folder = tmp_path / "st"
    folder.mkdir()
    sf.write(folder / "s.wav", np.stack([tone(440, 0.3), tone(440, 0.3)], 1), RATE)
    assert len(load_audio(AudioDataConfig(path=str(folder), split="all", mixdown=True))) == 1
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no .wav files"):
        load_audio(AudioDataConfig(path=str(tmp_path / "none"), split="all"))


# --------------------------------------------------------------------------------------------
# The presets: train, sample, write, evaluate


PRESETS = [("fsdd-diffusion", "diffusion"), ("fsdd-cdcgan", "gan"),
           ("configs/audio.yaml", "diffusion")]


class _Runs(dict):
    """Each preset trained (tiny, 4 steps) on first use, once per module."""

    def __init__(self, root, base) -> None:
        super().__init__()
        self.root, self.base = root, base

    def __missing__(self, preset: str):
        family = dict(PRESETS)[preset]
        spec = str(PRESET_DIR / preset.split("/")[-1]) if preset.endswith(".yaml") else preset
        cfg = load_config(spec, tiny(family, "train.batch_size=8", "log.sample_n=4"))
        assert cfg.modality == "audio"
        self[preset] = genforge.train(cfg, out=self.base / preset.replace("/", "-"),
                                      data_root=self.root).run_dir
        return self[preset]


@pytest.fixture(scope="module")
def audio_runs(fsdd_root, tmp_path_factory):
    return _Runs(fsdd_root, tmp_path_factory.mktemp("audio-runs"))


@pytest.mark.parametrize("preset", [p for p, _ in PRESETS])
def test_preset_contract(audio_runs, preset, tmp_path):
    run = audio_runs[preset]
    assert (run / "samples" / "step_000004.wav").exists()
    assert (run / "samples" / "step_000004.png").exists()
    model = genforge.load(run)
    assert model.modality == "audio" and model.data_info["kind"] == "audio"
    label = 1 if model.num_classes else None
    waves = model.sample(3, seed=5, label=label)
    length = model.data_info["frames"] * model.data_info["hop"]
    assert waves.shape == (3, length) and np.isfinite(waves).all()
    assert np.abs(waves).max() <= 1.0
    assert np.array_equal(waves, model.sample(3, seed=5, label=label))  # seeded
    for out in ("s.wav", "s.png", "s.npz", "clips"):
        assert model.write(waves, tmp_path / out).exists()
    assert len(list((tmp_path / "clips").glob("*.wav"))) == 3


def test_cli_sample_and_eval(audio_runs, fsdd_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    run = audio_runs["fsdd-diffusion"]
    result = runner.invoke(app, ["sample", str(run), "--n", "4", "--label", "2", "--steps", "3",
                                 "--out", str(tmp_path / "twos.wav")])
    assert result.exit_code == 0, result.output
    wave, rate = read_wav(tmp_path / "twos.wav")
    assert rate == RATE and len(wave) == 4 * 32 * 160 + 3 * int(0.25 * RATE)
    result = runner.invoke(app, ["sample", str(run), "--n", "4", "--out", str(tmp_path / "g.txt")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["eval", str(run), "--n", "12", "--data-root", str(fsdd_root),
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "CAS" in result.output and "FD" in result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    _check_against_sklearn_and_numpy(metrics, genforge.load(run), fsdd_root)
    page = (tmp_path / "ev" / "report.html").read_text()
    assert page.count("<audio") == 3 * 3 and "data:audio/wav;base64," in page


def _frechet_by_eigenvalues(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook Fréchet distance of two feature sets' Gaussians, with Tr (S1 S2)^½ as the
    sum of the square roots of the eigenvalues of S1 S2 (real and >= 0 up to rounding)."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    root_eigenvalues = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * root_eigenvalues.sum())


def _check_against_sklearn_and_numpy(metrics, model, root) -> None:
    """The eval's CAS and FDs recomputed from the clips the eval used (its seed, its labels
    i mod 3, the first 12 training clips, all test clips) through the same cached
    classifier, with sklearn's accuracy and recall and numpy's eigenvalues of S1 S2."""
    import dataclasses

    from sklearn.metrics import accuracy_score, recall_score

    from genforge.eval.audio.classifier import audio_classifier

    n, cfg = metrics["n"], model.config.data
    clf = audio_classifier(cfg, root)
    labels = np.arange(n) % 3
    fake = np.asarray(model.sample(n, seed=metrics["seed"], label=labels), np.float32)
    fake_feats, fake_probs = clf(fake, RATE)
    test = load_audio(dataclasses.replace(cfg, split="test", limit=None), root)
    train = load_audio(dataclasses.replace(cfg, split="train", limit=n), root)
    test_feats, _ = clf(test.waves.numpy(), RATE)
    train_feats, train_probs = clf(train.waves.numpy(), RATE)
    heard = fake_probs.argmax(1)
    m, floor = metrics["metrics"], metrics["baselines"]["real_vs_real"]
    assert m["accuracy"]["accuracy"] == accuracy_score(labels, heard)
    np.testing.assert_allclose(m["accuracy"]["per_class"],
                               recall_score(labels, heard, labels=[0, 1, 2], average=None))
    assert floor["accuracy"]["accuracy"] == accuracy_score(train.labels.numpy(),
                                                           train_probs.argmax(1))
    assert m["fd"] == pytest.approx(_frechet_by_eigenvalues(fake_feats, test_feats), rel=1e-5)
    assert floor["fd"] == pytest.approx(_frechet_by_eigenvalues(train_feats, test_feats),
                                        rel=1e-5)


@skip_unless((SHARED_DATA / "audio" / "fsdd").is_dir(), "no-shared-data",
             f"{SHARED_DATA}/audio/fsdd")
def test_real_fsdd_test_split():
    test = load_audio(AudioDataConfig(split="test"), SHARED_DATA)
    assert len(test) == 300 and test.labels.bincount().tolist() == [30] * 10
    assert test.class_names == [str(d) for d in range(10)]
