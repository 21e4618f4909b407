"""Per-request noise and fixed-shape forward passes: what lets one sampling call serve several
seeded requests, each getting exactly the rows it gets alone.

    noise = RowNoise([(7, 3), (9, 1)])       # request A: seed 7, 3 rows; B: seed 9, 1 row
    z = noise.randn(100)                     # (4, 100): A's 3 rows from Generator(7), B's from 9
    y = noise.randint(10)                    # (4,): the labels, drawn after z, per request
    out = fixed_chunks(lambda z, y: G(z, y), [z, y], size=8)   # one (8, ...) pass, padded

Each request's rows come from its own CPU generator seeded by its seed, in the order a lone
call draws them, so the noise does not depend on who shares the call. With one request it
makes exactly the draws of `torch.randn(n, ..., generator=Generator().manual_seed(seed))`.

The floats of a row can still depend on the batch: CPU GEMM/convolution kernels choose their
blocking by shape (measured here: a UNet's rows differ in the last bits between every batch
size below 64 and 64; MLP layers at batch sizes 1-3). `fixed_chunks` runs a network on
chunks of exactly `size` rows, the last padded with zeros and the padding dropped, so every
row sees the same kernel shape whether its request ran alone or with others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class RowNoise:
    """Noise for a call whose rows belong to several requests, each seeded by its own seed."""

    def __init__(self, groups: Sequence[tuple[int, int]]) -> None:
        """`groups`: (seed, rows) per request, in row order."""
        self.sizes = [int(k) for _, k in groups]
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s, _ in groups]
        self.n = sum(self.sizes)

    @classmethod
    def single(cls, seed: int, n: int) -> RowNoise:
        """One request: the same draws as one generator seeded by `seed`."""
        return cls([(seed, n)])

    def randn(self, *shape: int) -> torch.Tensor:
        """(n, *shape) standard normal; each request's rows from its own generator."""
        return torch.cat([torch.randn((k, *shape), generator=g)
                          for k, g in zip(self.sizes, self.generators, strict=True)])

    def randint(self, high: int) -> torch.Tensor:
        """(n,) integers in 0..high-1 (labels), each request's from its own generator."""
        return torch.cat([torch.randint(0, high, (k,), generator=g)
                          for k, g in zip(self.sizes, self.generators, strict=True)])


def fixed_chunks(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor | None],
                 size: int) -> torch.Tensor:
    """fn(*chunk) over the rows of `inputs` (None passes through) in chunks of exactly `size`
    rows: the last chunk is padded with zero rows, whose outputs are dropped."""
    n = next(x.shape[0] for x in inputs if x is not None)
    outs = []
    for start in range(0, n, size):
        m = min(size, n - start)
        outs.append(fn(*[None if x is None else _pad(x[start : start + m], size)
                         for x in inputs])[:m])
    return torch.cat(outs)


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[0] == size:
        return x
    return torch.cat([x, x.new_zeros((size - x.shape[0], *x.shape[1:]))])
