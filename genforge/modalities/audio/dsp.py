"""Signal processing for audio as images: resampling, log-mel analysis and its inverse.

    wave (B, L) --STFT, Hann, |.|^2--> power (B, F, T) --mel filterbank M--> mel (B, n_mels, T)
    --10 log10--> dB --(dB - db_max) / top_db, clipped to [-1, 0], x 2 + 1--> x in [-1, 1]

The inverse (a vocoder without a network): x -> dB -> mel power -> linear power by
non-negative least squares (min ||M P - mel|| s.t. P >= 0; multiplicative updates started from
the clipped pseudo-inverse) -> magnitude sqrt(P) -> phase by Griffin-Lim (Griffin & Lim 1984)
with momentum ("fast Griffin-Lim", Perraudin, Balazs & Søndergaard 2013): at alpha = 0 it is
the classic algorithm; alpha = 0.99 reaches in 32 iterations what the classic one needs ~100 for.

Clips are `frames * hop` samples; the centred STFT gives frames + 1 columns and the last one
(centred on the clip's end, half outside it) is dropped, so a clip is exactly (n_mels, frames).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

SILENCE_DB = -100.0  # the floor of a dB value: 10 log10(1e-10)


@dataclass(frozen=True)
class SpecParams:
    """Everything that turns a clip into its image and back; saved in a model's data info."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    frames: int
    db_max: float = 0.0  # the dB value that maps to +1 (the loudest mel bin of the data)
    top_db: float = 80.0  # the dB range below db_max that maps to [-1, 1]; quieter is -1
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2

    @property
    def length(self) -> int:
        """Samples in a clip."""
        return self.frames * self.hop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> SpecParams:
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in info.items() if k in keys})


# --------------------------------------------------------------------------------------------
# Resampling and fixed lengths


def resample(wave: np.ndarray, orig: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly: an FIR low-pass with a Kaiser window) by
    the reduced ratio target/orig; (L,) -> (round(L * target / orig),)."""
    if orig == target:
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(orig, target)
    return resample_poly(wave, target // g, orig // g).astype(np.float32)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Trim the end, or pad the end with silence, to exactly `length` samples."""
    if len(wave) >= length:
        return wave[:length]
    return np.pad(wave, (0, length - len(wave)))


# --------------------------------------------------------------------------------------------
# Analysis


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(p: SpecParams) -> torch.Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1), peak 1, centres equally spaced in mel
    between fmin and fmax; each filter's triangle is evaluated at the FFT bin frequencies."""
    fmax = p.fmax if p.fmax is not None else p.sample_rate / 2
    bins = np.linspace(0.0, p.sample_rate / 2, p.n_fft // 2 + 1)  # (F,) Hz
    edges = mel_to_hz(np.linspace(hz_to_mel(p.fmin), hz_to_mel(fmax), p.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    rising = (bins - lower) / (centre - lower)  # (M, F)
    falling = (upper - bins) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None)).float()


def _window(p: SpecParams) -> torch.Tensor:
    return torch.hann_window(p.n_fft, periodic=True)


def stft(wave: torch.Tensor, p: SpecParams) -> torch.Tensor:
    """(B, L) -> complex (B, F, frames): centred, zero-padded, the end column dropped."""
    spec = torch.stft(wave, p.n_fft, p.hop, window=_window(p), center=True, pad_mode="constant",
                      return_complex=True)  # (B, F, L // hop + 1)
    return spec[..., : p.frames]


def istft(spec: torch.Tensor, p: SpecParams) -> torch.Tensor:
    """complex (B, F, frames) -> (B, length): the dropped end column is taken as silence."""
    spec = torch.cat([spec, torch.zeros_like(spec[..., :1])], dim=-1)  # (B, F, frames + 1)
    return torch.istft(spec, p.n_fft, p.hop, window=_window(p), center=True, length=p.length)


def mel_db(wave: torch.Tensor, p: SpecParams) -> torch.Tensor:
    """(B, L) float waves -> (B, n_mels, frames) mel power in dB (floor SILENCE_DB)."""
    power = stft(wave.float(), p).abs().square()  # (B, F, T)
    mel = mel_filterbank(p) @ power  # (B, M, T)
    return 10.0 * torch.log10(mel.clamp_min(1e-10))


def to_unit(db: torch.Tensor, p: SpecParams) -> torch.Tensor:
    """dB -> [-1, 1]: db_max is +1, db_max - top_db (and anything quieter) is -1."""
    return ((db - p.db_max) / p.top_db).clamp(-1.0, 0.0).mul(2.0).add(1.0)


def from_unit(x: torch.Tensor, p: SpecParams) -> torch.Tensor:
    """[-1, 1] -> mel power; values at the floor (-1) become true silence, not a hiss."""
    x = x.float().clamp(-1.0, 1.0)
    db = (x - 1.0) / 2.0 * p.top_db + p.db_max
    return torch.where(x <= -0.999, torch.zeros_like(db), 10.0 ** (db / 10.0))


# --------------------------------------------------------------------------------------------
# Synthesis: mel -> linear -> Griffin-Lim


def mel_to_linear(mel: torch.Tensor, p: SpecParams, iterations: int = 100) -> torch.Tensor:
    """Mel power (B, M, T) -> linear power (B, F, T) >= 0 minimising ||M P - mel||²:
    multiplicative updates P <- P * (Mᵀ mel) / (Mᵀ M P) (Lee & Seung's NNLS step), started
    from the pseudo-inverse clipped at a small positive value."""
    fb = mel_filterbank(p)  # (M, F)
    power = (torch.linalg.pinv(fb) @ mel).clamp_min(1e-10)  # (B, F, T)
    numerator = fb.T @ mel  # (B, F, T)
    gram = fb.T @ fb  # (F, F)
    for _ in range(iterations):
        power = power * numerator / (gram @ power).clamp_min(1e-12)
    return power


def griffin_lim(magnitude: torch.Tensor, p: SpecParams, *, iterations: int = 64,
                momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """A waveform (B, length) whose STFT magnitude is close to `magnitude` (B, F, frames).

    Each iteration projects onto consistent spectrograms (istft then stft) and back onto the
    given magnitude; `momentum` alpha extrapolates the phase: c_n = t_n + alpha (t_n - t_{n-1})
    (fast Griffin-Lim). Phases start random from `seed`, so results are reproducible.
    """
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=g) * (2 * math.pi)
    angles = torch.polar(torch.ones_like(magnitude), phase)  # (B, F, T) unit complex
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = stft(istft(magnitude * angles, p), p)  # the nearest consistent spectrogram
        angles = rebuilt - previous * (momentum / (1 + momentum)) if momentum else rebuilt
        previous = rebuilt
        angles = angles / angles.abs().clamp_min(1e-16)
    return istft(magnitude * angles, p)


def unit_to_wave(x: torch.Tensor, p: SpecParams, *, iterations: int = 64,
                 momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] (B, 1, M, T) or (B, M, T) -> waves (B, length), peak at most 0.99."""
    mel = from_unit(x.reshape(-1, p.n_mels, p.frames), p)  # (B, M, T)
    magnitude = mel_to_linear(mel, p).sqrt()  # (B, F, T)
    wave = griffin_lim(magnitude, p, iterations=iterations, momentum=momentum, seed=seed)
    peak = wave.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)  # (B, 1)
    return wave * torch.clamp(0.99 / peak, max=1.0)  # never clip, never amplify


def spectral_convergence(wave: torch.Tensor, magnitude: torch.Tensor, p: SpecParams) -> float:
    """|| |STFT(wave)| - magnitude ||_F / || magnitude ||_F: 0 for a perfect inversion."""
    return float((stft(wave, p).abs() - magnitude).norm() / magnitude.norm().clamp_min(1e-12))
