"""The audio domain classifier: a small CNN on log-mels of waveforms, trained once with a fixed
seed on a labelled WAV data set (FSDD: the spoken digits) and cached.

It listens to waveforms, not to a model's spectrogram images: every clip is resampled to
8 kHz, peak-normalised, trimmed or padded to 0.8 s and analysed with its own front end (40 HTK
mels, 32 ms window, 12.5 ms hop, dB relative to the clip's loudest bin), so that samples of
any route (spectrogram models through a vocoder, waveform models) are judged alike. Its
penultimate layer (128 units) gives the features of the Fréchet distance; its softmax the
class probabilities for the classification accuracy score, the inception-style score and the
class histogram. The file is safetensors with the recipe and test accuracy in its metadata.

    clf = audio_classifier(AudioDataConfig(dataset="fsdd"), data_root)  # trains once (~1 min)
    feats, probs = clf(waves, sample_rate)           # (N, L) -> (N, 128), (N, K)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genforge.errors import ConfigError
from genforge.eval.stats import cache_root
from genforge.modalities.audio import dsp
from genforge.modalities.audio.data import PEAK, AudioDataConfig, load_audio
from genforge.version import __version__

FORMAT = "genforge-audio-classifier-v1"
FRONTEND = dsp.SpecParams(sample_rate=8000, n_fft=256, hop=100, n_mels=40, frames=64)


@dataclass
class AudioTrainSettings:
    """How the classifier is trained; all of it is saved in the file's metadata."""

    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3  # peak of a one-cycle schedule (AdamW)
    weight_decay: float = 1e-4
    width: int = 24  # channels of the first conv; doubled twice
    shift_frames: int = 8  # random time shift (augmentation), up to 0.1 s each way
    seed: int = 0


def frontend(waves: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Waves (N, L) at `sample_rate` -> (N, 1, 40, 64) in [-1, 1], each clip's loudest mel
    bin at +1 and 80 dB below it at -1."""
    rows = []
    for w in np.asarray(waves, dtype=np.float32):
        w = dsp.fit_length(dsp.resample(w, sample_rate, FRONTEND.sample_rate), FRONTEND.length)
        peak = float(np.abs(w).max())
        rows.append(w * (PEAK / peak) if peak > 0 else w)
    db = dsp.mel_db(torch.from_numpy(np.stack(rows)), FRONTEND)  # (N, M, T)
    db = db - db.amax(dim=(1, 2), keepdim=True)
    return (db / 80.0).clamp(-1.0, 0.0).mul(2.0).add(1.0)[:, None]


class AudioNet(nn.Module):
    """Three conv blocks (conv, BN, ReLU, 2x2 max-pool), pooled to 2x2, 128 features, logits."""

    def __init__(self, num_classes: int, width: int = 24) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, width), block(width, 2 * width),
                                  block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten())  # (B, 16 width)
        self.embed = nn.Sequential(nn.Dropout(0.2), nn.Linear(16 * width, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x))  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, K)


class AudioClassifier:
    """A trained AudioNet: waves -> (features, class probabilities)."""

    dim = 128

    def __init__(self, net: AudioNet, meta: dict[str, Any], path: Path | None) -> None:
        self.net, self.meta, self.path = net.eval(), meta, path
        self.num_classes = int(meta["num_classes"])
        self.class_names = list(meta["class_names"])

    def describe(self) -> dict[str, Any]:
        return {"name": f"audio-classifier-v1-{self.meta['dataset']}",
                "file": str(self.path) if self.path else None, "dim": self.dim,
                "frontend": FRONTEND.to_dict() | {"seconds": FRONTEND.length / 8000,
                                                  "db": "relative to each clip's max, 80 dB"},
                "test_accuracy": self.meta.get("test_accuracy"),
                "trained_on": f"{self.meta['dataset']}:train ({self.meta['train_n']} clips)",
                "test_n": self.meta.get("test_n")}

    @torch.no_grad()
    def __call__(self, waves: np.ndarray, sample_rate: int,
                 batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        feats, probs = [], []
        for i in range(0, len(waves), batch_size):
            f = self.net.features(frontend(waves[i : i + batch_size], sample_rate))
            feats.append(f)
            probs.append(self.net.head(f).softmax(dim=1))
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def train_audio_classifier(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                           test_y: torch.Tensor, class_names: list[str], dataset: str,
                           settings: AudioTrainSettings) -> tuple[AudioNet, dict[str, Any]]:
    """Front-end images (N, 1, 40, 64) and labels -> the trained net and its metadata."""
    torch.manual_seed(settings.seed)
    net = AudioNet(len(class_names), settings.width)
    opt = torch.optim.AdamW(net.parameters(), settings.lr / 4, weight_decay=settings.weight_decay)
    per_epoch = max(1, len(train_x) // settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr,
                                                total_steps=settings.epochs * per_epoch)
    g = torch.Generator().manual_seed(settings.seed)
    start = time.perf_counter()
    net.train()
    for _ in range(settings.epochs):
        perm = torch.randperm(len(train_x), generator=g)
        for i in range(per_epoch):
            idx = perm[i * settings.batch_size : (i + 1) * settings.batch_size]
            shift = int(torch.randint(-settings.shift_frames, settings.shift_frames + 1, (1,),
                                      generator=g))
            x = _shift(train_x[idx], shift)  # (B, 1, M, T)
            loss = F.cross_entropy(net(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        test_acc = float((net(test_x).argmax(1) == test_y).float().mean())
    meta = {"format": FORMAT, "dataset": dataset, "num_classes": len(class_names),
            "class_names": class_names, "train_n": len(train_x), "test_n": len(test_x),
            "test_accuracy": test_acc, "train_seconds": round(time.perf_counter() - start, 1),
            "settings": asdict(settings), "torch": torch.__version__, "genforge": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return net, meta


def _shift(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Move the clips `frames` along time, filling with silence (-1)."""
    if frames == 0:
        return x
    out = torch.full_like(x, -1.0)
    if frames > 0:
        out[..., frames:] = x[..., :-frames]
    else:
        out[..., :frames] = x[..., -frames:]
    return out


def save_audio_classifier(net: AudioNet, meta: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"format": FORMAT, "meta": json.dumps(meta)})
    tmp.replace(path)
    return path


def load_audio_classifier(path: str | Path) -> AudioClassifier:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--classifier {path}: no such file")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if header.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a genforge audio classifier ({FORMAT}) file")
    meta = json.loads(header["meta"])
    net = AudioNet(meta["num_classes"], meta["settings"]["width"])
    net.load_state_dict(load_file(str(path)))
    return AudioClassifier(net, meta, path)


def classifier_key(cfg: AudioDataConfig) -> str:
    """The data set's identity in the cache file name: fsdd, or a folder's path and labels."""
    if not cfg.path:
        return cfg.dataset
    record = json.dumps({"path": str(Path(cfg.path).resolve()), "labels": cfg.labels,
                         "pattern": cfg.label_pattern, "csv": cfg.labels_csv,
                         "test_fraction": cfg.test_fraction}, sort_keys=True)
    return f"{Path(cfg.path).name}-{hashlib.sha256(record.encode()).hexdigest()[:12]}"


def audio_classifier(cfg: AudioDataConfig, data_root: str | Path | None = None, *,
                     path: str | Path | None = None,
                     settings: AudioTrainSettings | None = None) -> AudioClassifier:
    """The cached classifier for the labelled data set `cfg` reads (or the file `path`);
    trained on its train split and tested on its test split on first use."""
    if path is not None:
        return load_audio_classifier(path)
    settings = settings or AudioTrainSettings()
    tag = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:8]
    target = cache_root() / "classifiers" / f"{classifier_key(cfg)}-{tag}-{FORMAT}.safetensors"
    if target.is_file():
        return load_audio_classifier(target)
    base = dataclasses.replace(cfg, sample_rate=FRONTEND.sample_rate, seconds=0.8, hop=None,
                               limit=None)
    train = load_audio(dataclasses.replace(base, split="train"), data_root)
    test = load_audio(dataclasses.replace(base, split="test"), data_root)
    if train.labels is None or test.labels is None or train.num_classes < 2:
        raise ConfigError(f"{train.name}: an audio classifier needs labelled clips (data.labels"
                          " from a pattern, CSV or subfolders) in both splits")
    if test.class_names != train.class_names:
        raise ConfigError(f"{train.name}: the test split's classes {test.class_names} differ "
                          f"from the train split's {train.class_names}")
    rate = FRONTEND.sample_rate
    net, meta = train_audio_classifier(frontend(train.waves.numpy(), rate), train.labels,
                                       frontend(test.waves.numpy(), rate), test.labels,
                                       train.class_names, train.name, settings)
    save_audio_classifier(net, meta, target)
    return load_audio_classifier(target)
