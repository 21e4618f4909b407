"""Audio: folders of WAV files as 1-channel log-mel "images" that image families train on.

    data: {dataset: fsdd}                      # audio/fsdd/recordings/ in a data root
    data: {path: my_wavs/, sample_rate: 16000} # any WAV folder; labels from a CSV, a file-name
                                               # pattern or subfolders, or none

Each clip is read with soundfile, resampled to `sample_rate` (polyphase), peak-normalised,
trimmed or padded at its end to n_mels * hop samples and analysed into an (n_mels, n_mels)
log-mel image (see audio_dsp): square, so that the diffusion UNet and the DCGAN take it as a
1-channel image of that size. Images are kept as uint8 (0.3 dB steps over an 80 dB range, far
below hearing) so the images' resumable BatchStream serves them unchanged. `AudioOutput` turns
model samples back into sound (fast Griffin-Lim) and writes .wav files, a .png spectrogram
grid or an .npz.

FSDD (Free Spoken Digit Dataset): `{digit}_{speaker}_{index}.wav`, 8 kHz; its official test
split is index 0-4. Other folders: a CSV `split` column, else a fixed 10% by file-name hash.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genforge.data.roots import check_root, data_roots, find_in_roots
from genforge.errors import ConfigError, DataError
from genforge.modalities.audio import dsp

FSDD_FOLDER = "audio/fsdd/recordings"
FSDD_PATTERN = r"^(?P<label>\d)_(?P<speaker>[A-Za-z]+)_(?P<index>\d+)$"
PEAK = 10 ** (-1 / 20)  # -1 dBFS: the peak of every clip after normalisation
GAP_SECONDS = 0.25  # silence between clips joined into one .wav


@dataclass
class AudioDataConfig:
    """Which WAV files to read and how they become images (the `data:` section of audio runs).

    The image is n_mels x n_mels: the clip lasts n_mels * hop samples, hop derived from
    `seconds` unless given, and the FFT is the smallest power of two >= 3 hops unless given
    (Griffin-Lim needs overlapping frames). Defaults: 8 kHz, 0.64 s, 32 mels, hop 160 (20 ms),
    512-point FFT (64 ms) -> 32 x 32, the size both the diffusion UNet and a DCGAN take.
    """

    dataset: str = "fsdd"  # fsdd (found in the data roots) or wavs (data.path)
    path: str | None = None  # a WAV folder; when given it is read instead of `dataset`
    root: str | None = None  # data root; else --data-root, GENFORGE_DATA, the bundled data/
    split: str = "train"  # train | test | all
    labels: Literal["auto", "pattern", "csv", "folders", "none"] = "auto"
    label_pattern: str | None = None  # regex on the file stem with a (?P<label>...) group
    labels_csv: str | None = None  # CSV with columns file,label[,split] (file relative to path)
    test_fraction: float = 0.1  # folders without a split rule: this share by file-name hash
    sample_rate: int = 8000
    seconds: float = 0.64
    n_mels: int = 32  # also the number of frames: the image is square
    n_fft: int | None = None  # None: the smallest power of two >= 3 * hop
    hop: int | None = None  # None: round(seconds * sample_rate / n_mels)
    top_db: float = 80.0  # the dB range mapped to [-1, 1]
    normalize: bool = True  # peak-normalise each clip to -1 dBFS
    mixdown: bool = False  # average the channels of stereo files (else they are refused)
    limit: int | None = None  # only the first `limit` clips (files ordered by name hash)

    def __post_init__(self) -> None:
        if self.split not in ("train", "test", "all"):
            raise ConfigError(f"data.split={self.split!r}: allowed values are 'train', 'test', "
                              "'all'")
        if self.dataset not in ("fsdd", "wavs"):
            raise ConfigError(f"data.dataset={self.dataset!r}: allowed values are 'fsdd', "
                              "'wavs' (a folder: set data.path)")
        if self.dataset == "wavs" and not self.path:
            raise ConfigError("data.dataset='wavs' needs data.path (a folder of .wav files)")
        for key in ("sample_rate", "n_mels", "n_fft", "hop", "limit"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"data.{key}={value}: must be a positive integer")
        if self.seconds <= 0 or self.top_db <= 0:
            raise ConfigError("data.seconds and data.top_db must be > 0")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction={self.test_fraction}: must be in [0, 1)")
        if self.fft_size // 2 + 1 < self.n_mels:
            raise ConfigError(f"data.n_fft={self.fft_size} gives {self.fft_size // 2 + 1} "
                              f"frequency bins, fewer than data.n_mels={self.n_mels}")
        if self.hop_length > self.fft_size:
            raise ConfigError(f"data.hop={self.hop_length} exceeds data.n_fft={self.fft_size}: "
                              "frames would leave gaps (raise n_fft or lower seconds)")
        if self.label_pattern is not None:
            try:
                if "label" not in re.compile(self.label_pattern).groupindex:
                    raise ConfigError(f"data.label_pattern={self.label_pattern!r}: needs a "
                                      "(?P<label>...) group")
            except re.error as err:
                raise ConfigError(f"data.label_pattern={self.label_pattern!r}: not a regular "
                                  f"expression ({err})") from None

    @property
    def hop_length(self) -> int:
        return self.hop or max(1, round(self.seconds * self.sample_rate / self.n_mels))

    @property
    def fft_size(self) -> int:
        return self.n_fft or 1 << max(0, 3 * self.hop_length - 1).bit_length()

    def params(self, db_max: float = 0.0) -> dsp.SpecParams:
        return dsp.SpecParams(self.sample_rate, self.fft_size, self.hop_length, self.n_mels,
                              self.n_mels, db_max=db_max, top_db=self.top_db)


@dataclass
class AudioData:
    """A split in memory: `images` uint8 (N, 1, M, M) log-mels, `waves` float32 (N, L) at
    params.sample_rate, `labels` int64 (N,) or None, and the files they came from."""

    name: str
    images: torch.Tensor
    waves: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    params: dsp.SpecParams
    files: list[str] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def info(self) -> dict[str, Any]:
        """What a model needs to be built (channels, image_size, classes) and to be heard
        (the analysis parameters and the dB scaling), saved with it."""
        return {
            "kind": "audio", "dataset": self.name, "channels": 1,
            "image_size": self.params.n_mels, "num_classes": self.num_classes,
            "class_names": list(self.class_names) if self.num_classes else [],
            **self.params.to_dict(), "seconds": self.params.length / self.params.sample_rate,
            "scaling": "x = 2 clip((10 log10(mel power) - db_max) / top_db, -1, 0) + 1",
            "mel_scale": "htk", "window": "hann", "peak_normalised_dbfs": -1.0,
            "split": self.split,
        }

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu", sample_rate: float | None = None) -> Any:
        from genforge.modalities.images.data import (
            BatchStream,  # uint8 images to [-1, 1], resumable
        )

        return BatchStream(self, batch_size=batch_size, seed=seed, rank=rank, world=world,
                           device=device, sample_rate=sample_rate)

    def preview_condition(self, n: int) -> torch.Tensor | None:
        return torch.arange(n) % self.num_classes if self.num_classes else None

    def write_samples(self, samples: torch.Tensor, stem: Path) -> Path:
        """Model samples -> stem.wav (the clips in a row) and stem.png (their spectrograms)."""
        output = AudioOutput()
        waves = output.decode(samples, self.info())
        output.write(waves, Path(stem).with_suffix(".png"), self.info(),
                     nrow=self.num_classes or None)
        return output.write(waves, Path(stem).with_suffix(".wav"), self.info())


# --------------------------------------------------------------------------------------------
# Reading


def read_wav(path: Path, *, mixdown: bool = False) -> tuple[np.ndarray, int]:
    """A mono float32 wave in [-1, 1] and its rate; one-line DataError for anything else."""
    import soundfile as sf

    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (L, channels)
    except (RuntimeError, TypeError, ValueError) as err:  # soundfile's LibsndfileError
        reason = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise DataError(f"{path}: not a readable WAV file ({reason})") from None
    if wave.shape[1] != 1 and not mixdown:
        raise DataError(f"{path}: {wave.shape[1]} channels; audio data must be mono "
                        "(or pass data.mixdown=true to average the channels)")
    if wave.shape[0] == 0:
        raise DataError(f"{path}: empty (no samples)")
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: holds NaN or infinite samples")
    return wave.mean(axis=1), int(rate)


def _name_hash(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)


def _folder(cfg: AudioDataConfig, data_root: str | Path | None) -> tuple[Path, str]:
    if cfg.path:
        folder = find_in_roots(cfg.path, data_root, what="the WAV folder")
        if not folder.is_dir():
            raise DataError(f"data.path={cfg.path}: {folder} is not a folder of .wav files")
        return folder, folder.name
    for root in data_roots(data_root):
        if (root / FSDD_FOLDER).is_dir():
            return root / FSDD_FOLDER, "fsdd"
    where = ", ".join(str(r / FSDD_FOLDER) for r in data_roots(data_root))
    raise DataError(f"fsdd: no recordings found; put the FSDD .wav files in one of: {where} "
                    "(or point --data-root at the folder that holds audio/)")


def _label_source(cfg: AudioDataConfig, is_fsdd: bool, files: list[Path], folder: Path) -> str:
    if cfg.labels != "auto":
        return cfg.labels
    if cfg.labels_csv:
        return "csv"
    if cfg.label_pattern or is_fsdd:
        return "pattern"
    if files and all(f.parent != folder for f in files):
        return "folders"
    return "none"


def _read_csv(cfg: AudioDataConfig, folder: Path,
              data_root: str | Path | None) -> dict[str, dict[str, str]]:
    if not cfg.labels_csv:
        raise ConfigError("data.labels='csv' needs data.labels_csv (columns file,label)")
    path = Path(cfg.labels_csv)
    path = path if path.is_absolute() or path.exists() else folder / path
    if not path.exists():
        path = find_in_roots(cfg.labels_csv, data_root, what="the labels CSV")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DataError(f"{path}: needs a header with columns file,label (and optional split)")
    return {row["file"]: row for row in rows}


def _labels_and_split(cfg: AudioDataConfig, files: list[Path], folder: Path, is_fsdd: bool,
                      data_root: str | Path | None) -> tuple[list[str | None], list[str], str]:
    """Per file: its label text (or None) and split; and how the split was made."""
    source = _label_source(cfg, is_fsdd, files, folder)
    pattern = re.compile(cfg.label_pattern or FSDD_PATTERN)
    rows = _read_csv(cfg, folder, data_root) if source == "csv" else {}
    labels: list[str | None] = []
    splits: list[str] = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        match = pattern.match(f.stem) if source == "pattern" or is_fsdd else None
        if source == "pattern" and match is None:
            raise DataError(f"{f}: file name does not match data.label_pattern "
                            f"{pattern.pattern!r}")
        if source == "csv" and rel not in rows:
            raise DataError(f"{f}: not listed in data.labels_csv={cfg.labels_csv}")
        labels.append(match["label"] if source == "pattern" else rows[rel]["label"]
                      if source == "csv" else f.parent.name if source == "folders" else None)
        if is_fsdd and match is not None and "index" in pattern.groupindex:
            splits.append("test" if int(match["index"]) < 5 else "train")
        elif rows.get(rel, {}).get("split") in ("train", "test"):
            splits.append(rows[rel]["split"])
        else:
            test = _name_hash(rel) % 10_000 < cfg.test_fraction * 10_000
            splits.append("test" if test else "train")
    rule = ("official FSDD split: recording index 0-4 is test" if is_fsdd else
            "the CSV's split column" if any("split" in r for r in rows.values()) else
            f"test = files whose sha1(name) mod 10000 < {cfg.test_fraction} x 10000")
    return labels, splits, rule


def _class_names(labels: list[str]) -> list[str]:
    names = sorted(set(labels))
    return sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else names


def load_audio(cfg: AudioDataConfig, data_root: str | Path | None = None) -> AudioData:
    """Read the split `cfg` names into memory; `data_root` (--data-root) wins over cfg.root."""
    explicit = check_root(data_root or cfg.root)
    folder, name = _folder(cfg, explicit)
    is_fsdd = not cfg.path and cfg.dataset == "fsdd"
    files = sorted((f for f in folder.rglob("*") if f.suffix.lower() == ".wav" and f.is_file()),
                   key=lambda f: (_name_hash(f.name), f.name))  # a mix of classes first
    if not files:
        raise DataError(f"{folder}: no .wav files")
    labels, splits, rule = _labels_and_split(cfg, files, folder, is_fsdd, explicit)
    keep = [i for i, s in enumerate(splits) if cfg.split in ("all", s)]
    if cfg.limit is not None:
        keep = keep[: cfg.limit]
    if not keep:
        raise DataError(f"{folder}: no files in split {cfg.split!r} ({rule})")
    p0 = cfg.params()
    waves = np.stack([_prepare(files[i], cfg, p0.length) for i in keep])  # (N, L)
    tensor = torch.from_numpy(waves)
    db = torch.cat([dsp.mel_db(tensor[i : i + 512], p0) for i in range(0, len(tensor), 512)])
    params = cfg.params(db_max=float(np.ceil(db.max().item())))  # the loudest bin is +1
    unit = dsp.to_unit(db, params)  # (N, M, M) in [-1, 1]
    images = unit.add(1).mul(127.5).round().to(torch.uint8)[:, None]  # (N, 1, M, M)
    kept = [labels[i] for i in keep]
    has_labels = all(label is not None for label in kept)
    names = _class_names([str(x) for x in kept]) if has_labels else []
    label_tensor = torch.tensor([names.index(str(x)) for x in kept]) if has_labels else None
    split = {"split": cfg.split, "rule": rule, "n": len(keep), "of": len(files),
             "limit": cfg.limit, "folder": str(folder)}
    return AudioData(name, images, tensor, label_tensor, names, params,
                     [files[i].relative_to(folder).as_posix() for i in keep], split)


def _prepare(path: Path, cfg: AudioDataConfig, length: int) -> np.ndarray:
    wave, rate = read_wav(path, mixdown=cfg.mixdown)
    wave = dsp.resample(wave, rate, cfg.sample_rate)
    peak = float(np.abs(wave).max())
    if cfg.normalize and peak > 0:
        wave = wave * (PEAK / peak)
    return dsp.fit_length(wave.astype(np.float32), length)


# --------------------------------------------------------------------------------------------
# Output: model samples -> sound and files


class AudioOutput:
    """Spectrogram images (n, 1, M, M) in [-1, 1] -> waves float32 (n, L), written as one .wav
    (clips joined by 0.25 s of silence), a folder of .wav files (a path without suffix), a
    .png spectrogram grid (low frequencies at the bottom) or an .npz (waves and rate)."""

    default_out = "samples.wav"
    default_n = 10
    suffixes = (".wav", ".png", ".npz", "")

    def __init__(self, iterations: int = 64, momentum: float = 0.99) -> None:
        self.iterations, self.momentum = iterations, momentum  # fast Griffin-Lim

    def decode(self, samples: Any, info: dict[str, Any]) -> np.ndarray:
        x = torch.as_tensor(np.asarray(samples) if not torch.is_tensor(samples) else samples)
        if x.dtype == torch.uint8:
            x = x.float().div(127.5).sub(1)
        waves = dsp.unit_to_wave(x, dsp.SpecParams.from_info(info), iterations=self.iterations,
                                 momentum=self.momentum)
        return waves.numpy().astype(np.float32)  # (n, L)

    def write(self, values: Any, path: Path, info: dict[str, Any], *, nrow: int | None = None,
              provenance: dict[str, Any] | None = None) -> Path:
        import soundfile as sf

        path, waves = Path(path), np.asarray(values, dtype=np.float32)
        if waves.ndim == 1:
            waves = waves[None]
        rate = int(info["sample_rate"])
        if path.suffix == ".npz":
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, waves=waves, sample_rate=rate)
            return _label(path, provenance)
        if path.suffix == ".png":
            return _label(_spectrogram_grid(waves, info, path, nrow), provenance)
        if path.suffix == ".wav":
            gap = np.zeros(int(GAP_SECONDS * rate), np.float32)
            joined = np.concatenate([np.concatenate([w, gap]) for w in waves])[: -len(gap)]
            _write_wav(sf, path, joined, rate, provenance)
            return path
        if path.suffix == "":
            path.mkdir(parents=True, exist_ok=True)
            for i, w in enumerate(waves):
                _write_wav(sf, path / f"sample_{i:04d}.wav", w, rate, provenance)
            return path
        raise ConfigError(f"--out {path}: audio goes to a .wav file, a folder (no suffix), a "
                          ".png (spectrograms) or an .npz")


def _write_wav(sf: Any, path: Path, wave: np.ndarray, rate: int,
               provenance: dict[str, Any] | None) -> None:
    """16-bit PCM through a temporary name; provenance (JSON) in the WAV's comment chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.wav")
    with sf.SoundFile(str(tmp), "w", samplerate=rate, channels=1, subtype="PCM_16",
                      format="WAV") as f:
        f.software = "genforge"
        f.write(np.clip(wave, -1.0, 1.0))
    tmp.replace(path)
    _label(path, provenance)


def _label(path: Path, provenance: dict[str, Any] | None) -> Path:
    """The provenance record into the file (WAV: a LIST/INFO chunk; PNG: text chunks + XMP;
    .npz: a sidecar), sealed by genforge.labelling."""
    if provenance is not None:
        from genforge.labelling import embed_provenance

        embed_provenance(path, provenance)
    return path


def spectrogram_images(waves: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Waves (n, L) -> uint8 (n, 1, M, T) log-mels as the model sees them, low bins at the
    bottom (row 0 is the highest mel band)."""
    p = dsp.SpecParams.from_info(info)
    w = torch.from_numpy(np.stack([dsp.fit_length(x, p.length) for x in waves]))
    unit = dsp.to_unit(dsp.mel_db(w, p), p).flip(1)  # (n, M, T)
    return unit.add(1).mul(127.5).round().to(torch.uint8)[:, None].numpy()


def _spectrogram_grid(waves: np.ndarray, info: dict[str, Any], path: Path,
                      nrow: int | None) -> Path:
    from PIL import Image

    from genforge.modalities.images.grids import make_grid

    grid = make_grid(spectrogram_images(waves, info), nrow=nrow, pad_value=255)[..., 0]
    scale = max(1, 768 // max(grid.shape))  # small spectrograms, enlarged pixel for pixel
    picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                           Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    picture.save(tmp, format="PNG")
    tmp.replace(path)
    return path
