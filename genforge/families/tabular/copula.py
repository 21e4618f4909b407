"""Gaussian copula: the columns' own marginals joined by one correlation matrix.

    numbers:    u = F_j(x) (quantiles, ties jittered)        categories: u ~ U(F(k-1), F(k))
    z = Phi^-1(u);  R = corr(z) over the training rows;  sample z ~ N(0, R), then invert.

"Training" counts sum z, sum z z^T and rows in float64 buffers, one pass over the batches
the loop hands in (train.max_steps x train.batch_size rows); nothing is learned by gradients.
Imputation is exact for the Gaussian: the empty cells' scores are drawn from N(0, R)
conditioned on the given cells' scores (a category's score at its interval's middle).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genforge.families.tabular.objective import TabularObjective
from genforge.families.tabular.transformer import QuantileMap, _phi, _phi_inv
from genforge.modalities.tables.schema import EncodedTable
from genforge.runtime.precision import full_precision


class CopulaStats(nn.Module):
    """Sums of normal scores: everything the copula learns, saved in model.safetensors."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("sum_z", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("sum_zz", torch.zeros(d, d, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.unused = nn.Parameter(torch.zeros(1))  # the loop's optimizer needs a parameter

    def correlation(self) -> torch.Tensor:
        n = self.count.clamp_min(1)
        mean = self.sum_z / n
        cov = self.sum_zz / n - torch.outer(mean, mean)
        sd = cov.diagonal().clamp_min(1e-12).sqrt()
        corr = cov / torch.outer(sd, sd)
        vals, vecs = torch.linalg.eigh((corr + corr.T) / 2)  # nearest PSD: clip eigenvalues
        corr = vecs @ torch.diag(vals.clamp_min(1e-6)) @ vecs.T
        d = corr.diagonal().sqrt()
        return (corr / torch.outer(d, d)).float()


class CopulaObjective(TabularObjective):
    sampling_nets = ("copula",)

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.qmap = QuantileMap([s["quantiles"] for s in data_info["stats"]["numeric"]])
        freqs = [torch.tensor(s["freq"], dtype=torch.float64)
                 for s in data_info["stats"]["categorical"]]
        self.cum = [torch.cat([torch.zeros(1, dtype=torch.float64), f.cumsum(0)]) for f in freqs]
        self.nets = {"copula": CopulaStats(self.n_num + len(self.cards))}

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        return {"copula": torch.optim.SGD(self.nets["copula"].parameters(), lr=train.lr)}

    def scores(self, num: torch.Tensor, cat: torch.Tensor, jitter: bool = True) -> torch.Tensor:
        """Encoded rows -> normal scores (B, n_num + n_cat)."""
        z_num = self.qmap.to_normal(num.float(), jitter=jitter)
        cols = []
        for j, cum in enumerate(self.cum):
            cum = cum.to(num.device)
            lo, hi = cum[cat[:, j]], cum[cat[:, j] + 1]
            r = torch.rand(len(cat), dtype=torch.float64, device=num.device) if jitter else 0.5
            cols.append(_phi_inv((lo + r * (hi - lo)).float()))
        return torch.cat([z_num, *[c[:, None] for c in cols]], 1)

    def training_step(self, batch: Any, step: Any) -> dict[str, torch.Tensor]:
        stats = step.accelerator.unwrap_model(self.nets["copula"])
        z = self.scores(batch.x, batch.y).double()  # (B, d)
        sums = [z.sum(0), z.T @ z, torch.tensor(float(len(z)), dtype=torch.float64,
                                                    device=z.device)]
        if step.accelerator.num_processes > 1:
            sums = [step.accelerator.reduce(s, reduction="sum") for s in sums]
        with torch.no_grad():
            stats.sum_z += sums[0]
            stats.sum_zz += sums[1]
            stats.count += sums[2]
        step.update("copula", stats.unused.sum() * 0.0)  # keeps the loop's bookkeeping uniform
        return {"rows": stats.count.detach().float()}

    def from_scores(self, z: torch.Tensor) -> EncodedTable:
        num = self.qmap.from_normal(z[:, : self.n_num])
        u = _phi(z[:, self.n_num :].double())
        cat = [torch.searchsorted(cum[1:-1].to(u.device).contiguous(), u[:, j].contiguous(),
                                  right=True) for j, cum in enumerate(self.cum)]
        codes = torch.stack(cat, 1) if cat else torch.zeros(len(z), 0, dtype=torch.long)
        return EncodedTable(num.float(), codes)

    def _generate(self, m: int, cond: dict[int, int]) -> EncodedTable:
        corr = self.nets["copula"].correlation().to(self.device)
        L = torch.linalg.cholesky(corr)
        with full_precision(self.device):  # no network here: nothing is computed in bf16
            z = torch.randn(m, len(corr), device=self.device) @ L.T  # (m, d)
        return self.from_scores(z)

    def _fill(self, enc: EncodedTable, known_num: torch.Tensor, known_cat: torch.Tensor,
              candidates: int = 0) -> EncodedTable:
        """Conditional Gaussian per pattern of given cells: z_m | z_g ~ N(S_mg S_gg^-1 z_g,
        S_mm - S_mg S_gg^-1 S_gm)."""
        corr = self.nets["copula"].correlation().double()
        z = self.scores(enc.num, enc.cat, jitter=False).double()
        known = torch.cat([known_num, known_cat], 1)
        forbid = self._missing_codes()
        out = z.clone()
        for pattern in torch.unique(known, dim=0):
            rows = (known == pattern).all(1)
            g, mis = pattern, ~pattern
            if not mis.any():
                continue
            S_gg, S_mg = corr[g][:, g], corr[mis][:, g]
            A = S_mg @ torch.linalg.pinv(S_gg) if g.any() else torch.zeros(int(mis.sum()), 0,
                                                                             dtype=corr.dtype)
            cov = corr[mis][:, mis] - A @ S_mg.T
            vals, vecs = torch.linalg.eigh((cov + cov.T) / 2)
            root = vecs @ torch.diag(vals.clamp_min(0).sqrt())
            for _ in range(20):  # redraw rows whose category came out 'missing'
                draw = z[rows][:, g] @ A.T + torch.randn(int(rows.sum()), int(mis.sum()),
                                                         dtype=corr.dtype) @ root.T
                block = out[rows]
                block[:, mis] = draw
                out[rows] = block
                decoded = self.from_scores(out.float())
                bad = ((decoded.cat == forbid) & ~known_cat).any(1) & rows
                if not bad.any():
                    break
        filled = self.from_scores(out.float())
        num = torch.where(known_num, enc.num, filled.num)
        cat = torch.where(known_cat, enc.cat, filled.cat)
        return EncodedTable(num, cat)
