"""The green-list text watermark of Kirchenbauer et al. 2023 ("A Watermark for Large Language
Models"), keyed, with its z-score detector.

Sampling: at every step a keyed hash of the previous token t_{i-1} splits the vocabulary into a
green list (a fraction gamma of it) and a red list, and delta is added to the green logits
before the sampler draws. Detection needs only the key and the token ids (so the tokenizer):
with T scored tokens of which G are green,

    z = (G - gamma T) / sqrt(T gamma (1 - gamma)),   p = P(N(0, 1) >= z)

and text is called watermarked when z >= Z_THRESHOLD (4: p about 3e-5 per text).

Green membership is a keyed pseudo-random function of the pair (t_{i-1}, t_i): a 32-bit mix
(MurmurHash3's finalizer) of the two ids and two 32-bit words of HMAC(secret, purpose), green
when below gamma * 2^32. That gives each token of a list independent membership with
probability gamma, as the paper's seeded permutation does, without drawing a permutation of the
vocabulary per step; it is keyed but not a cryptographic PRF. Repeated (t_{i-1}, t_i) pairs are
scored once by default, so repetitive human text (a chorus, a char model's "the") cannot pile
up green tokens by repetition alone (the paper's and later works' advice for short contexts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from genforge.errors import ConfigError
from genforge.labelling.provenance import derive_key

GAMMA = 0.25
DELTA = 2.0
Z_THRESHOLD = 4.0
SCHEME = "genforge-greenlist-h1-v1"
_M32 = 0xFFFFFFFF


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    """(h * c) mod 2^32 in int64 without overflow (h < 2^32, c < 2^32)."""
    lo, hi = h & 0xFFFF, h >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _M32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


class GreenList:
    """Which (previous token, token) pairs are green under one key."""

    def __init__(self, secret: bytes, gamma: float = GAMMA) -> None:
        if not 0 < gamma < 1:
            raise ConfigError(f"watermark gamma={gamma}: must be between 0 and 1")
        key = derive_key(secret, SCHEME)
        self.k1, self.k2 = int.from_bytes(key[:4], "little"), int.from_bytes(key[4:8], "little")
        self.gamma = gamma
        self.cut = int(gamma * 2**32)

    def _hash(self, prev: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        seed = _fmix32((prev.long() & _M32) ^ self.k1)
        return _fmix32(seed ^ _fmix32((token.long() & _M32) ^ self.k2))

    def mask(self, prev: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(n,) previous tokens -> (n, V) bool, True where green."""
        vocab = torch.arange(vocab_size, device=prev.device)
        return self._hash(prev[:, None], vocab[None, :]) < self.cut

    def is_green(self, prev: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        return self._hash(prev, token) < self.cut


class WatermarkLogitsProcessor:
    """A transformers LogitsProcessor (`__call__(input_ids, scores) -> scores`): adds delta to
    the green logits of each row. Use it in a `LogitsProcessorList` or pass it to
    `model.generate(logits_processor=[...])`; put it before temperature/top-k/top-p so the
    warpers see the biased logits, as in the paper."""

    def __init__(self, secret: bytes, *, gamma: float = GAMMA, delta: float = DELTA) -> None:
        self.green, self.delta = GreenList(secret, gamma), float(delta)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor
                 ) -> torch.FloatTensor:
        mask = self.green.mask(input_ids[:, -1], scores.shape[-1])  # (n, V)
        return scores + self.delta * mask.to(scores.dtype)


@dataclass
class TextDetection:
    found: bool
    z: float
    p_value: float
    green: int
    scored: int

    def line(self) -> str:
        verdict = "watermark FOUND" if self.found else "no watermark"
        return (f"{verdict}: z={self.z:.2f}, p={self.p_value:.2g}, {self.green}/{self.scored} "
                f"scored tokens green (threshold z={Z_THRESHOLD:g})")


def detect_tokens(ids: Sequence[int] | torch.Tensor, secret: bytes, *, gamma: float = GAMMA,
                  threshold: float = Z_THRESHOLD, unique_pairs: bool = True) -> TextDetection:
    """The z-test of Kirchenbauer et al. on a sequence of token ids."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    pairs = torch.stack([ids[:-1], ids[1:]], 1) if ids.numel() > 1 else ids.new_zeros((0, 2))
    if unique_pairs and pairs.numel():
        pairs = torch.unique(pairs, dim=0)
    scored = int(pairs.shape[0])
    if scored == 0:
        return TextDetection(False, 0.0, 1.0, 0, 0)
    green = int(GreenList(secret, gamma).is_green(pairs[:, 0], pairs[:, 1]).sum())
    z = (green - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma))
    p = 0.5 * math.erfc(z / math.sqrt(2))
    return TextDetection(z >= threshold, z, p, green, scored)
