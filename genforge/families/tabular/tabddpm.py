"""TabDDPM-style diffusion (Kotelnikov et al. 2023): Gaussian diffusion on the numeric columns
(in quantile-normal space), multinomial diffusion (Hoogeboom et al. 2021) on each categorical
column, one MLP denoiser for both.

    numbers:    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps;          loss ||eps - eps_hat||^2
    categories: q(x_t | x_0) = Cat(abar_t x_0 + (1 - abar_t) / K)
                q(x_t-1 | x_t, x_0) ~ (a_t x_t + (1 - a_t) / K)
                                       * (abar_t-1 x_0 + (1 - abar_t-1) / K)
                the net predicts x_0's probabilities p0; p(x_t-1 | x_t) puts p0 in place of x_0;
                loss KL(q(x_t-1 | x_t, x_0) || p(x_t-1 | x_t)) (at t = 1 the NLL of x_0)
    loss = mse + sum of the columns' KL / n_cat (+ aux_weight * mean CE of the x0 logits)

Conditions and imputation replace the known cells at every step by a draw from q(x_t | x_0)
(RePaint without resampling), and by the values themselves at the end.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from genforge.errors import ConfigError
from genforge.families.tabular.nets import Denoiser
from genforge.families.tabular.objective import TabularObjective
from genforge.families.tabular.transformer import QuantileMap
from genforge.modalities.tables.schema import EncodedTable
from genforge.runtime.precision import full_precision


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


class CategorySpans:
    """The categorical columns side by side in one flat one-hot vector (B, S), S = sum K, so
    that every column's multinomial step is a few tensor ops instead of a Python loop over
    columns (the loop's small ops were most of a CPU step). Per-column sums go through a
    (S, C) indicator matrix; per-column max and argmax through a padded (B, C, Kmax) view."""

    def __init__(self, cards: list[int]) -> None:
        self.cards, self.C = list(cards), len(cards)
        self.S, self.kmax = sum(cards), max(cards, default=1)
        self.offsets = torch.tensor([0, *torch.tensor(cards).cumsum(0).tolist()][:-1]
                                    if cards else [], dtype=torch.long)
        self.column = torch.repeat_interleave(torch.arange(self.C), torch.tensor(cards,
                                                                                  dtype=torch.long))
        self.k = torch.tensor([float(k) for k in cards for _ in range(k)])  # (S,) each entry's K
        self.indicator = F.one_hot(self.column, self.C).float() if cards else torch.zeros(0, 0)
        # position of flat entry s in the padded (C * Kmax) layout
        within = torch.arange(self.S) - self.offsets[self.column] if cards else self.column
        self.padded_pos = self.column * self.kmax + within

    def to(self, device: torch.device) -> CategorySpans:
        for name in ("offsets", "column", "k", "indicator", "padded_pos"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def onehot(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, C) -> flat one-hots (B, S)."""
        out = torch.zeros(codes.shape[0], self.S, device=codes.device)
        return out.scatter_(1, codes + self.offsets, 1.0)

    def _padded(self, v: torch.Tensor, fill: float) -> torch.Tensor:
        out = torch.full((v.shape[0], self.C * self.kmax), fill, device=v.device, dtype=v.dtype)
        out[:, self.padded_pos] = v
        return out.view(-1, self.C, self.kmax)

    def codes(self, v: torch.Tensor) -> torch.Tensor:
        """Per-column argmax of flat scores (B, S) -> codes (B, C)."""
        return self._padded(v, -torch.inf).argmax(2)

    def normalise(self, p: torch.Tensor) -> torch.Tensor:
        with full_precision(p.device):  # sums of probabilities: fp32 under bf16 autocast
            return p / (p.float() @ self.indicator @ self.indicator.T)

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        top = self._padded(logits.detach(), -torch.inf).amax(2)  # (B, C), a stabiliser
        z = logits - top[:, self.column]
        with full_precision(z.device):  # the normaliser in fp32 under bf16 autocast
            return z - (z.float().exp() @ self.indicator).log()[:, self.column]

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        """One-hot draws per column from flat probabilities (B, S) (Gumbel-max)."""
        u = torch.rand_like(probs).clamp_(1e-20, 1.0)
        return self.onehot(self.codes(probs.clamp_min(1e-30).log() - (-u.log()).log()))


class TabDDPMObjective(TabularObjective):
    learned_conditioning = False  # conditions by inpainting (see objective.py)
    sample_options = ("where", "temperature")
    sampling_nets = ("denoiser",)

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.qmap = QuantileMap([s["quantiles"] for s in data_info["stats"]["numeric"]])
        self.T = cfg.timesteps
        self.abar = alpha_bars(self.T, cfg.schedule).float()  # (T + 1,)
        self.alpha = torch.cat([torch.ones(1), self.abar[1:] / self.abar[:-1]])  # a_t
        self.spans = CategorySpans(self.cards)
        self.d = self.n_num + self.spans.S
        self.target = self._target_column() if cfg.condition_on_target else None
        classes = 0 if self.target is None else self.cards[self.target]
        self.target_freq = None if self.target is None else torch.tensor(
            data_info["stats"]["categorical"][self.target]["freq"])  # what sampling draws from
        self.nets = {"denoiser": Denoiser(self.d, cfg.hidden, cfg.layers, cfg.dropout, classes)}

    def _target_column(self) -> int:
        """The categorical column index of data.target, which the denoiser is told."""
        name = self.info.get("target")
        if name not in self.codec.index:
            raise ConfigError(f"model.condition_on_target=true: data.target={name} must name a "
                              "categorical column of the table")
        return self.codec.index[name]

    def steers(self, cond: dict[str, Any]) -> bool:
        return self.target is not None and not cond["num"] and set(cond["cat"]) == {self.target}

    def _labels(self, cat: torch.Tensor) -> torch.Tensor | None:
        return None if self.target is None else cat[:, self.target]

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        return {"denoiser": torch.optim.AdamW(self.nets["denoiser"].parameters(), lr=train.lr,
                                              betas=train.betas, weight_decay=train.weight_decay,
                                              foreach=True)}

    def _spans(self, device: torch.device) -> CategorySpans:
        if self.spans.k.device != device:
            self.spans.to(device)
        return self.spans

    # --- the two forward processes, all categorical columns at once -------------------------

    def _q_probs(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) (B, S); x0 flat one-hots or probabilities."""
        a = self.abar.to(x0.device)[t][:, None]
        return a * x0 + (1 - a) / self._spans(x0.device).k

    def _posterior(self, xt: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t-1 | x_t, x_0) (B, S); x0 may be probabilities."""
        spans = self._spans(xt.device)
        a = self.alpha.to(xt.device)[t][:, None]
        return spans.normalise((a * xt + (1 - a) / spans.k) * self._q_probs(x0, t - 1))

    def training_step(self, batch: Any, step: Any) -> dict[str, torch.Tensor]:
        net = self.nets["denoiser"]
        B, dev = batch.x.shape[0], batch.x.device
        spans = self._spans(dev)
        x0 = self.qmap.to_normal(batch.x.float())  # (B, n_num)
        t = torch.randint(1, self.T + 1, (B,), device=dev)
        a = self.abar.to(dev)[t][:, None]
        eps = torch.randn_like(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        onehot = spans.onehot(batch.y)
        cat_t = spans.draw(self._q_probs(onehot, t)) if spans.C else onehot
        out = net(torch.cat([xt, cat_t], 1), t, self._labels(batch.y)).float()
        eps_hat, logits = out[:, : self.n_num], out[:, self.n_num :]
        mse = F.mse_loss(eps_hat, eps) if self.n_num else torch.zeros((), device=dev)
        logs = {"loss/mse": mse.detach()}
        loss = mse
        if self.cards:
            log_p0 = spans.log_softmax(logits)
            true = self._posterior(cat_t, onehot, t)
            pred = self._posterior(cat_t, log_p0.exp(), t)
            kl = (true * (true.clamp_min(1e-30).log() - pred.clamp_min(1e-30).log())).sum(1)
            kl = kl.mean() / spans.C
            loss = loss + kl
            logs["loss/kl"] = kl.detach()
            if self.cfg.aux_weight:
                # the KL between posteriors is small at most t, so its gradient teaches the
                # joint of the categories slowly; a direct cross-entropy on x0 (D3PM) helps
                ce = -(onehot * log_p0).sum(1).mean() / spans.C
                loss = loss + self.cfg.aux_weight * ce
                logs["loss/ce"] = ce.detach()
        step.update("denoiser", loss)
        return {"loss": loss.detach(), **logs}

    # --- sampling ---------------------------------------------------------------------------

    def _reverse(self, m: int, known: EncodedTable | None = None,
                 known_num: torch.Tensor | None = None, known_cat: torch.Tensor | None = None,
                 temperature: float = 1.0) -> EncodedTable:
        """Ancestral sampling from t = T to 0; cells marked known are held to q(x_t | x_0).
        `temperature` divides the predicted categories' logits: a short fit leaves them too
        flat (rare categories over-drawn), so a value below 1 sharpens them (its effect on
        Adult is not in a results file yet). A denoiser told the target gets the known cells'
        target class."""
        net, dev = self.nets["denoiser"], self.device
        spans = self._spans(dev)
        was_training = net.training
        net.eval()
        ab = self.abar.to(dev)
        xnum = torch.randn(m, self.n_num, device=dev)
        xcat = spans.draw(torch.ones(m, spans.S, device=dev)) if spans.C else \
            torch.zeros(m, 0, device=dev)  # uniform
        # RePaint (Lugmayr et al. 2022): with given cells (a where-condition too rare for
        # rejection), each step is redone `resample` times, the result noised back to level t
        # in between, so that the free cells have more chances to follow the fixed ones; a
        # denoiser told the target needs no rounds for it
        labels, rounds = None, 1
        if known is not None:
            k0 = self.qmap.to_normal(known.num.to(dev).float(), jitter=False)
            kc = spans.onehot(known.cat.to(dev))
            known_num = known_num.to(dev)
            known_flat = known_cat.to(dev)[:, spans.column]
            labels = self._labels(known.cat.to(dev))
            inpainted = known_cat.any(0)  # the categorical columns held by inpainting alone
            if self.target is not None:
                inpainted[self.target] = False
            if known_num.any() or inpainted.any():
                rounds = self.cfg.resample
        for step in range(self.T, 0, -1):
            t = torch.full((m,), step, device=dev, dtype=torch.long)
            for r in range(rounds if step > 1 else 1):
                if known is not None:  # 0. the known cells, noised to level t
                    xnum = torch.where(known_num, ab[step].sqrt() * k0 + (1 - ab[step]).sqrt()
                                       * torch.randn_like(k0), xnum)
                    if spans.C:
                        xcat = torch.where(known_flat, spans.draw(self._q_probs(kc, t)), xcat)
                xnum, xcat = self._reverse_step(net, xnum, xcat, step, t, temperature, labels)
                if r + 1 < rounds and step > 1:  # back to level t: q(x_t | x_t-1)
                    a = self.alpha[step].to(dev)
                    xnum = a.sqrt() * xnum + (1 - a).sqrt() * torch.randn_like(xnum)
                    if spans.C:
                        xcat = spans.draw(a * xcat + (1 - a) / spans.k)
        net.train(was_training)
        if known is not None:  # the known cells themselves at the end
            xnum = torch.where(known_num, k0, xnum)
            if spans.C:
                xcat = torch.where(known_flat, kc, xcat)
        num = self.qmap.from_normal(xnum)
        cat = spans.codes(xcat) if spans.C else torch.zeros(m, 0, dtype=torch.long, device=dev)
        return EncodedTable(num.cpu(), cat.cpu())

    def _reverse_step(self, net: Any, xnum: torch.Tensor, xcat: torch.Tensor, step: int,
                      t: torch.Tensor, temperature: float = 1.0,
                      labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One ancestral step x_t -> x_t-1 of both processes."""
        spans, ab = self._spans(xnum.device), self.abar.to(xnum.device)
        out = net(torch.cat([xnum, xcat], 1), t, labels).float()
        eps, logits = out[:, : self.n_num], out[:, self.n_num :]
        # 1. numbers: x0_hat, then the posterior mean and variance of x_t-1
        a_t, a_prev = ab[step], ab[step - 1]
        x0_hat = ((xnum - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-6, 6)
        beta = 1 - a_t / a_prev
        mean = (a_prev.sqrt() * beta * x0_hat + (a_t / a_prev).sqrt() * (1 - a_prev) * xnum
                ) / (1 - a_t)
        var = beta * (1 - a_prev) / (1 - a_t)
        xnum = mean + (var.sqrt() * torch.randn_like(xnum) if step > 1 else 0)
        # 2. categories: p(x_t-1 | x_t) with the predicted x0 probabilities
        if spans.C:
            p0 = spans.log_softmax(logits / temperature).exp()  # / 1.0 is exact
            xcat = spans.draw(self._posterior(xcat, p0, t))
        return xnum, xcat

    def _generate(self, m: int, cond: dict[int, int], temperature: float = 1.0
                  ) -> EncodedTable:
        if self.target is not None and self.target not in cond:
            # the target class first, by its training frequencies; the rest follows it
            cond = {**cond, self.target: torch.multinomial(self.target_freq, m, replacement=True)}
        if not cond:
            return self._reverse(m, temperature=temperature)
        known = EncodedTable(torch.zeros(m, self.n_num), torch.zeros(m, len(self.cards),
                                                                     dtype=torch.long))
        known_cat = torch.zeros(m, len(self.cards), dtype=torch.bool)
        for j, code in cond.items():
            known.cat[:, j], known_cat[:, j] = code, True
        return self._reverse(m, known, torch.zeros(m, self.n_num, dtype=torch.bool), known_cat,
                             temperature)

