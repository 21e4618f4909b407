"""An invisible keyed image watermark: spread-spectrum bits in the DCT of a canonical frame.

Scheme (numpy + PIL only):
  1. The luminance Y of an image (H x W, at least MIN_SIZE on the short side) is resized to a
     canonical N x N frame (N = 64, area averaging) and transformed with an orthonormal 2-D DCT.
  2. A key (HMAC of the user's secret) picks K = 64 payload bits b_i in {-1, +1}, splits the
     mid-frequency band (BAND_LO <= u + v <= BAND_HI) into K random groups S_i and gives each
     coefficient a random chip c in {-1, +1}. Bit i is read as r_i = <D[S_i], c_i> / sqrt|S_i|.
  3. Informed embedding (Cox et al.): only where b_i * r_i is below the target margin tau does
     the embedder add (tau - b_i r_i) along c_i; the change is inverse-transformed, resized to
     H x W and added to R, G and B alike (so to Y). The measurement is repeated on the written
     uint8 image and the remaining deficit added again, so rounding, clipping and resampling
     are paid for.
  4. Detection reads the K bits; bits matched ~ Binomial(K, 1/2) without the watermark, so the
     p-value is the binomial tail. A resize keeps the canonical frame; for a crop the detector
     also tries the frame sizes and offsets of crops keeping 80-100 % of each side, with a
     Bonferroni correction: p = min(2 p_full, 2 * hypotheses * p_best_crop).

A wrong key reads 64 unrelated bits (about 32 match). Not robust to rotation, flips or crops
keeping less than 80 % of a side; images under MIN_SIZE are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
from PIL import Image

from genforge.errors import ConfigError
from genforge.labelling.provenance import derive_key

N = 64  # canonical frame side
MIN_SIZE = 64  # the short side of an image must hold the canonical frame
BITS = 64
BAND_LO, BAND_HI = 16, 44  # DCT band (u + v) of the canonical frame that carries the bits
TAU = 6.0  # target margin per bit, in DCT units of the 0..255 canonical frame
ALPHA = 1e-4  # decision threshold on the p-value (the false-positive rate it states)
CROP_MIN = 0.8  # smallest kept fraction of a side that the crop search tries
CROP_REFINE = 8  # crop hypotheses read by masked least squares
SCHEME = "genforge-dct64-v1"


@lru_cache(maxsize=2)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: D = C @ X @ C.T, X = C.T @ D @ C."""
    k = np.arange(n)[:, None]
    c = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    c[0] /= np.sqrt(2)
    return c


@lru_cache(maxsize=1)
def _band() -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    keep = (u + v >= BAND_LO) & (u + v <= BAND_HI)
    return u[keep], v[keep]


@dataclass(frozen=True, eq=False)
class Layout:
    """What a key decides: the payload bits and, per bit, its spreading pattern."""

    bits: np.ndarray  # (K,) of -1/+1
    patterns: np.ndarray  # (K, N * N) float32: bit i's unit pattern, the inverse DCT of
    # c_i / sqrt|S_i| on its coefficient group; r_i = <frame, pattern_i> = <DCT(frame), ...>

    @classmethod
    def from_secret(cls, secret: bytes) -> Layout:
        return _layout(bytes(secret))


@lru_cache(maxsize=8)
def _layout(secret: bytes) -> Layout:
    key = derive_key(secret, SCHEME)
    rng = np.random.default_rng(np.frombuffer(key, dtype=np.uint32))
    u, v = _band()
    bits = rng.choice([-1.0, 1.0], size=BITS)
    group = rng.permutation(len(u)) % BITS  # group[j]: the bit that coefficient j carries
    chips = rng.choice([-1.0, 1.0], size=len(u))
    spread = np.zeros((BITS, N, N))
    spread[group, u, v] = chips
    spread /= np.sqrt((spread != 0).sum((1, 2), keepdims=True))
    c = _dct_matrix(N)
    patterns = (c.T @ spread @ c).reshape(BITS, N * N)  # orthonormal: patterns stay unit
    return Layout(bits, patterns.astype(np.float32))


def _luma(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    return (rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def _resize(x: np.ndarray, h: int, w: int, box: bool = True) -> np.ndarray:
    if x.shape == (h, w):
        return x.astype(np.float32)
    im = Image.fromarray(x.astype(np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.Resampling.BOX if box else
                                Image.Resampling.BICUBIC), dtype=np.float32)


def _project(frames: np.ndarray, layout: Layout) -> np.ndarray:
    """(F, N, N) canonical frames -> (F, K) bit projections r (the band's DCT coefficients
    against each bit's chips, computed as one product with the patterns)."""
    return frames.reshape(len(frames), -1).astype(np.float32) @ layout.patterns.T


def _as_hwc(image: np.ndarray | Image.Image) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ConfigError(f"watermark: images must be uint8 (H, W) or (H, W, C), got "
                          f"{array.dtype} {array.shape}")
    return array


def check_size(height: int, width: int) -> None:
    if min(height, width) < MIN_SIZE:
        raise ConfigError(f"image {height}x{width} is too small to watermark: the minimum is "
                          f"{MIN_SIZE}x{MIN_SIZE} (generate larger images, or upscale first)")


def embed(image: np.ndarray | Image.Image, secret: bytes, *, tau: float = TAU,
          rounds: int = 6) -> np.ndarray:
    """The image (uint8, H x W or H x W x C) with the keyed watermark added."""
    array = _as_hwc(image)
    h, w = array.shape[:2]
    check_size(h, w)
    layout = Layout.from_secret(secret)
    delta = np.zeros((N, N), np.float32)  # the change, in the canonical frame
    out = array
    for _ in range(rounds):
        r = _project(_resize(_luma(out), N, N)[None], layout)[0]
        need = np.clip(tau - layout.bits * r, 0, None)  # margin still missing per bit
        if need.max() < 0.05 * tau:
            break
        # along each short bit's pattern; 1.2: overshoot for what resampling loses
        delta += ((layout.bits * need) @ layout.patterns).reshape(N, N) * 1.2
        change = _resize(delta, h, w, box=False)
        change = change if array.ndim == 2 else change[..., None]
        out = array.astype(np.float32)
        if array.ndim == 3 and array.shape[2] == 4:  # RGBA: the alpha channel stays
            out[..., :3] += change
        else:
            out += change
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out


@dataclass
class Detection:
    found: bool
    bits_matched: int
    bits: int
    p_value: float
    where: str  # "full frame" or the crop hypothesis that matched best

    def line(self) -> str:
        verdict = "watermark FOUND" if self.found else "no watermark"
        return (f"{verdict}: {self.bits_matched}/{self.bits} bits matched, "
                f"p={self.p_value:.2g} ({self.where}; threshold {ALPHA:g})")


def binomial_tail(n: int, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    return sum(comb(n, j) for j in range(k, n + 1)) / 2**n


def _matches(r: np.ndarray, layout: Layout) -> np.ndarray:
    return ((np.sign(r) * layout.bits) > 0).sum(-1)  # (F,)


def _crop_frames(luma: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    """Canonical frames for the hypothesis 'this image is a crop keeping m/N of each side of
    a watermarked image, at offset (y, x)'. The crop is high-passed (less its 5 x 5 local mean)
    and the rest of the frame left 0, so the frame's edge leaks little host energy into the
    band (the band's frequencies pass the high-pass nearly whole)."""
    frames, names = [], []
    for m in range(int(np.ceil(CROP_MIN * N)), N):
        small = _resize(luma, m, m)
        small = small - _box_blur(small, 2)
        offsets = [(y, x) for y in range(N - m + 1) for x in range(N - m + 1)]
        batch = np.zeros((len(offsets), N, N), np.float32)
        for i, (y, x) in enumerate(offsets):
            batch[i, y : y + m, x : x + m] = small
            names.append((m, y, x))
        frames.append(batch)
    return frames, names


def _box_blur(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1) x (2r+1) window, edges replicated."""
    padded = np.pad(x, r, mode="edge")
    sums = np.cumsum(np.cumsum(np.pad(padded, ((1, 0), (1, 0))), 0), 1)
    k = 2 * r + 1
    h, w = x.shape
    return (sums[k:k + h, k:k + w] - sums[:h, k:k + w] - sums[k:k + h, :w] + sums[:h, :w]) / k**2


def detect(image: np.ndarray | Image.Image, secret: bytes, *,
           search_crops: bool = True) -> Detection:
    """Look for the watermark of `secret`: bits matched, binomial p-value, decision."""
    array = _as_hwc(image if not isinstance(image, Image.Image) else
                    image.convert("L" if image.mode in ("L", "1", "LA", "I;16") else "RGB"))
    layout = Layout.from_secret(secret)
    luma = _luma(array)
    full = int(_matches(_project(_resize(luma, N, N)[None], layout), layout)[0])
    p_full = min(1.0, 2 * binomial_tail(BITS, full))
    if p_full < ALPHA or not search_crops:
        return Detection(p_full < ALPHA, full, BITS, p_full, "full frame")
    # the crop search: rank every hypothesis by its plain projections, then read the bits of
    # the best few by masked least squares. Reporting any hypothesis' count with a Bonferroni
    # factor of all hypotheses is valid whichever one is reported (a union bound).
    frames, hypotheses = _crop_frames(luma)
    stacked = np.concatenate(frames)
    r = _project(stacked, layout)  # (F, K)
    matched, best = 0, hypotheses[0]
    for i in np.argsort(-(r * layout.bits).sum(1))[:CROP_REFINE]:
        count = int(_matches(_masked_fit(stacked[i], hypotheses[i], layout)[None], layout)[0])
        if count > matched:
            matched, best = count, hypotheses[i]
    p_crop = min(1.0, 2 * len(hypotheses) * binomial_tail(BITS, matched))
    if p_crop < p_full:
        m, y, x = best
        return Detection(p_crop < ALPHA, matched, BITS, p_crop,
                         f"as a crop of {m / N:.2f} per side at ({y / N:.2f}, {x / N:.2f})")
    return Detection(False, full, BITS, p_full, "full frame")


def _masked_fit(frame: np.ndarray, hypothesis: tuple[int, int, int],
                layout: Layout) -> np.ndarray:
    """Bit amplitudes (K,) that best explain the visible window of a crop hypothesis: where
    part of the frame is missing the patterns stop being orthogonal, and plain projections
    pick up the other bits' patterns (cross-talk)."""
    m, y, x = hypothesis
    w = layout.patterns.reshape(BITS, N, N)[:, y : y + m, x : x + m].reshape(BITS, -1)  # (K, P)
    f = frame[y : y + m, x : x + m].reshape(-1)  # (P,)
    # einsum, not BLAS: this small product ran 20x slower through threaded OpenBLAS on busy
    # cores (measured), and it is the detector's inner loop
    gram = np.einsum("ip,jp->ij", w, w) + 1e-3 * np.eye(BITS, dtype=np.float32)
    return np.linalg.solve(gram, w @ f)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
