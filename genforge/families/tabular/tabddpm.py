"""TabDDPM-style diffusion (Kotelnikov et al. 2023): Gaussian diffusion on the numeric columns
(in quantile-normal space), multinomial diffusion (Hoogeboom et al. 2021) on each categorical
column, one MLP denoiser for both.

    numbers:    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps;          loss ||eps - eps_hat||^2
    categories: q(x_t | x_0) = Cat(abar_t x_0 + (1 - abar_t) / K)
                q(x_t-1 | x_t, x_0) ~ (a_t x_t + (1 - a_t) / K)
                                       * (abar_t-1 x_0 + (1 - abar_t-1) / K)
                the net predicts x_0's probabilities p0; p(x_t-1 | x_t) puts p0 in place of x_0;
                loss KL(q(x_t-1 | x_t, x_0) || p(x_t-1 | x_t)) (at t = 1 the NLL of x_0)
    loss = mse + sum of the columns' KL / n_cat

Conditions and imputation replace the known cells at every step by a draw from q(x_t | x_0)
(RePaint without resampling), and by the values themselves at the end.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from genforge.data.table_schema import EncodedTable
from genforge.families.tabular.nets import Denoiser
from genforge.families.tabular.objective import TabularObjective
from genforge.families.tabular.transformer import QuantileMap


def alpha_bars(T: int, schedule: str) -> torch.Tensor:
    """abar_0 = 1, abar_1..abar_T (T + 1,) for a cosine (Nichol & Dhariwal) or linear schedule."""
    if schedule == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2)
        abar = (f / f[0]) ** 2
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    else:
        betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


class TabDDPMObjective(TabularObjective):
    sampling_nets = ("denoiser",)

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.qmap = QuantileMap([s["quantiles"] for s in data_info["stats"]["numeric"]])
        self.T = cfg.timesteps
        self.abar = alpha_bars(self.T, cfg.schedule).float()  # (T + 1,)
        self.alpha = torch.cat([torch.ones(1), self.abar[1:] / self.abar[:-1]])  # a_t
        self.d = self.n_num + sum(self.cards)
        self.nets = {"denoiser": Denoiser(self.d, cfg.hidden, cfg.layers, cfg.dropout)}
        self.offsets = [0, *torch.tensor(self.cards).cumsum(0).tolist()] if self.cards else [0]

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": torch.optim.AdamW(self.nets["denoiser"].parameters(), lr=train.lr,
                                              betas=train.betas, weight_decay=train.weight_decay)}

    # --- the two forward processes --------------------------------------------------------

    def _onehots(self, cat: torch.Tensor) -> list[torch.Tensor]:
        return [F.one_hot(cat[:, j], k).float() for j, k in enumerate(self.cards)]

    def _q_probs(self, x0: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
        a = self.abar.to(x0.device)[t][:, None]
        return a * x0 + (1 - a) / k

    def _posterior(self, xt: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, k: int
                   ) -> torch.Tensor:
        """q(x_t-1 | x_t, x_0) for one column; x0 may be a probability vector (B, K)."""
        a = self.alpha.to(xt.device)[t][:, None]
        prev = self._q_probs(x0, t - 1, k)
        p = (a * xt + (1 - a) / k) * prev
        return p / p.sum(1, keepdim=True)

    def _net_in(self, xnum: torch.Tensor, xcat: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([xnum, *xcat], 1)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        eps = out[:, : self.n_num]
        logits = [out[:, self.n_num + a : self.n_num + b]
                  for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]
        return eps, logits

    def training_step(self, batch: Any, step: Any) -> dict[str, torch.Tensor]:
        net = self.nets["denoiser"]
        B, dev = batch.x.shape[0], batch.x.device
        x0 = self.qmap.to_normal(batch.x.float())  # (B, n_num)
        t = torch.randint(1, self.T + 1, (B,), device=dev)
        a = self.abar.to(dev)[t][:, None]
        eps = torch.randn_like(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        onehots = self._onehots(batch.y)
        cat_t = [F.one_hot(torch.multinomial(self._q_probs(o, t, k), 1).squeeze(1), k).float()
                 for o, k in zip(onehots, self.cards, strict=True)]
        eps_hat, logits = self._split(net(self._net_in(xt, cat_t), t).float())
        mse = F.mse_loss(eps_hat, eps) if self.n_num else torch.zeros((), device=dev)
        kl = torch.zeros((), device=dev)
        for o, xk, lg, k in zip(onehots, cat_t, logits, self.cards, strict=True):
            true = self._posterior(xk, o, t, k)
            pred = self._posterior(xk, lg.softmax(1), t, k)
            kl = kl + (true * (true.clamp_min(1e-30).log() - pred.clamp_min(1e-30).log())).sum(1
                                                                                           ).mean()
        kl = kl / max(len(self.cards), 1)
        loss = mse + kl
        step.update("denoiser", loss)
        return {"loss": loss.detach(), "loss/mse": mse.detach(), "loss/kl": kl.detach()}

    # --- sampling ---------------------------------------------------------------------------

    def _reverse(self, m: int, known: EncodedTable | None = None,
                 known_num: torch.Tensor | None = None, known_cat: torch.Tensor | None = None
                 ) -> EncodedTable:
        """Ancestral sampling from t = T to 0; cells marked known are held to q(x_t | x_0)."""
        net, dev = self.nets["denoiser"], self.device
        was_training = net.training
        net.eval()
        ab = self.abar.to(dev)
        xnum = torch.randn(m, self.n_num, device=dev)
        xcat = [F.one_hot(torch.randint(0, k, (m,), device=dev), k).float() for k in self.cards]
        if known is not None:
            k0 = self.qmap.to_normal(known.num.to(dev).float(), jitter=False)
            kc = self._onehots(known.cat.to(dev))
            known_num, known_cat = known_num.to(dev), known_cat.to(dev)
        for step in range(self.T, 0, -1):
            t = torch.full((m,), step, device=dev, dtype=torch.long)
            if known is not None:  # 0. the known cells, noised to level t
                xnum = torch.where(known_num, ab[step].sqrt() * k0 + (1 - ab[step]).sqrt()
                                   * torch.randn_like(k0), xnum)
                xcat = [torch.where(known_cat[:, j : j + 1], _draw(self._q_probs(o, t, k)), x)
                        for j, (o, x, k) in enumerate(zip(kc, xcat, self.cards, strict=True))]
            eps, logits = self._split(net(self._net_in(xnum, xcat), t).float())
            # 1. numbers: x0_hat, then the posterior mean and variance of x_t-1
            a_t, a_prev = ab[step], ab[step - 1]
            x0_hat = ((xnum - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-6, 6)
            beta = 1 - a_t / a_prev
            mean = (a_prev.sqrt() * beta * x0_hat + (a_t / a_prev).sqrt() * (1 - a_prev) * xnum
                    ) / (1 - a_t)
            var = beta * (1 - a_prev) / (1 - a_t)
            xnum = mean + (var.sqrt() * torch.randn_like(xnum) if step > 1 else 0)
            # 2. categories: p(x_t-1 | x_t) with the predicted x0 probabilities
            xcat = [_draw(self._posterior(x, lg.softmax(1), t, k))
                    for x, lg, k in zip(xcat, logits, self.cards, strict=True)]
        net.train(was_training)
        num = self.qmap.from_normal(xnum)
        cat = torch.stack([x.argmax(1) for x in xcat], 1) if xcat else \
            torch.zeros(m, 0, dtype=torch.long, device=dev)
        return EncodedTable(num.cpu(), cat.cpu())

    def _generate(self, m: int, cond: dict[int, int]) -> EncodedTable:
        if not cond:
            return self._reverse(m)
        known = EncodedTable(torch.zeros(m, self.n_num), torch.zeros(m, len(self.cards),
                                                                     dtype=torch.long))
        known_cat = torch.zeros(m, len(self.cards), dtype=torch.bool)
        for j, code in cond.items():
            known.cat[:, j], known_cat[:, j] = code, True
        return self._reverse(m, known, torch.zeros(m, self.n_num, dtype=torch.bool), known_cat)

    def _fill(self, enc: EncodedTable, known_num: torch.Tensor, known_cat: torch.Tensor,
              candidates: int = 0) -> EncodedTable:
        forbid = self._missing_codes()
        num, cat = enc.num.clone(), enc.cat.clone()
        todo = torch.ones(len(enc), dtype=torch.bool)
        for _ in range(20):  # redraw rows whose empty category came out 'missing'
            idx = todo.nonzero().squeeze(1)
            out = self._reverse(len(idx), EncodedTable(enc.num[idx], enc.cat[idx]),
                                known_num[idx], known_cat[idx])
            num[idx] = torch.where(known_num[idx], enc.num[idx], out.num)
            cat[idx] = torch.where(known_cat[idx], enc.cat[idx], out.cat)
            todo = ((cat == forbid) & ~known_cat).any(1)
            if not todo.any():
                break
        return EncodedTable(num, cat)


def _draw(probs: torch.Tensor) -> torch.Tensor:
    """One-hot draws from rows of probabilities (B, K)."""
    return F.one_hot(torch.multinomial(probs, 1).squeeze(1), probs.shape[1]).float()
