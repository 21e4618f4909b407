"""CTGAN-style (Xu et al. 2019): a conditional WGAN-GP over mode-specific normalised rows.

    cond c: one category of one categorical column, as a one-hot over all categories;
            training-by-sampling draws the column uniformly and the category ~ log(1 + count),
            then a real row that has it (data.sampling=by-category; with plain row batches
            the row's own category is used)
    G(z, c) -> raw outputs o;  row = [tanh alpha | Gumbel-softmax(tau) per span]
    critic: PacGAN, `pac` rows (each with its c) judged together
    L_D = D(fake) - D(real) + gp_weight * (||grad D(x_hat)|| - 1)^2
    L_G = -D(fake) + CE(o of c's column, c's category)    (the generator must honour c)

Only the critic sees real rows: with privacy on, it is the private net (`private_nets`).
Sampling draws c from the categories' frequencies; `where` on a categorical column sets c
to it (rows that still disagree are rejected).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from genforge.data.table_schema import EncodedTable
from genforge.families.tabular.nets import CTGANGenerator, PacDiscriminator
from genforge.families.tabular.objective import TabularObjective
from genforge.families.tabular.transformer import RowLayout


class CTGANObjective(TabularObjective):
    sampling_nets = ("generator",)
    private_nets = ("discriminator",)

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.layout = RowLayout(self.n_num, cfg.max_modes, self.cards)
        self.d_cond = sum(self.cards)
        self.cond_offsets = torch.tensor([0, *self.cards]).cumsum(0)[:-1]
        self.freq = [torch.tensor(s["freq"]) for s in data_info["stats"]["categorical"]]
        d = self.layout.dim
        self.nets = {
            "generator": CTGANGenerator(cfg.latent_dim, self.d_cond, cfg.hidden, cfg.layers, d,
                                        self.n_num, cfg.max_modes),
            "discriminator": PacDiscriminator(d + self.d_cond, cfg.hidden, cfg.layers, cfg.pac),
        }

    @property
    def norm(self) -> Any:
        g = self.nets["generator"]
        return getattr(g, "module", g).norm

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        self.norm.fit([s["quantiles"] for s in self.info["stats"]["numeric"]], seed=train.seed)
        return {name: torch.optim.Adam(net.parameters(), lr=train.lr, betas=train.betas,
                                       weight_decay=train.weight_decay)
                for name, net in self.nets.items()}

    def _cond_vector(self, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        vec = torch.zeros(len(col), self.d_cond, device=col.device)
        if self.d_cond:
            vec[torch.arange(len(col), device=col.device),
                self.cond_offsets.to(col.device)[col] + cat] = 1.0
        return vec

    def training_step(self, batch: Any, step: Any) -> dict[str, torch.Tensor]:
        G, D = self.nets["generator"], self.nets["discriminator"]
        B, dev = batch.x.shape[0], batch.x.device
        with torch.no_grad():
            real = self.layout.to_vector(self.norm, batch.x.float(), batch.y)  # (B, D)
        if getattr(batch, "cond", None) is not None:
            col, cat = batch.cond[:, 0], batch.cond[:, 1]
        elif self.cards:
            col = torch.randint(0, len(self.cards), (B,), device=dev)
            cat = batch.y.gather(1, col[:, None]).squeeze(1)
        else:
            col = cat = torch.zeros(B, dtype=torch.long, device=dev)
        c = self._cond_vector(col, cat)
        z = torch.randn(B, self.cfg.latent_dim, device=dev)
        raw = G(z, c).float()
        fake = self.layout.activate(raw, self.norm, self.cfg.tau)

        # 1. the critic on real and detached fake rows, with the gradient penalty (none under
        # DP-SGD: Opacus's per-sample gradients cannot differentiate the critic twice)
        real_in, fake_in = torch.cat([real, c], 1), torch.cat([fake.detach(), c], 1)
        n = B // self.cfg.pac
        if self.cfg.gp_weight > 0:
            eps = torch.rand(n, 1, 1, device=dev)
            hat = (eps * real_in.view(-1, self.cfg.pac, real_in.shape[1])
                   + (1 - eps) * fake_in.view(-1, self.cfg.pac, fake_in.shape[1])
                   ).view_as(real_in).requires_grad_(True)
            scores = D(torch.cat([real_in, fake_in, hat]))  # (3B / pac,)
            (grad,) = torch.autograd.grad(scores[2 * n :].sum(), hat, create_graph=True)
            penalty = ((grad.view(n, -1).norm(2, dim=1) - 1) ** 2).mean()
        else:
            scores = D(torch.cat([real_in, fake_in]))  # (2B / pac,)
            penalty = torch.zeros((), device=dev)
        wasserstein = scores[:n].mean() - scores[n : 2 * n].mean()
        d_loss = -wasserstein + self.cfg.gp_weight * penalty
        step.update("discriminator", d_loss)

        # 2. the generator through the frozen critic, and its condition's cross-entropy
        with step.frozen("discriminator") as frozen:
            g_score = frozen(torch.cat([fake, c], 1)).mean()
        ce = torch.zeros((), device=dev)
        for j, (a, b) in enumerate(self.layout.cat_spans):
            rows = col == j
            if rows.any():
                ce = ce + F.cross_entropy(raw[rows, a:b], cat[rows], reduction="sum")
        ce = ce / B
        g_loss = -g_score + ce
        step.update("generator", g_loss)
        return {"loss/d": d_loss.detach(), "loss/g": g_loss.detach(),
                "wasserstein": wasserstein.detach(), "loss/cond": ce.detach()}

    def _generate(self, m: int, cond: dict[int, int]) -> EncodedTable:
        G = self.nets["generator"]
        G = getattr(G, "module", G)
        dev = self.device
        if cond:  # the model's own conditioning: the rarest fixed category becomes c
            j = min(cond, key=lambda k: float(self.freq[k][cond[k]]))
            col = torch.full((m,), j, dtype=torch.long)
            cat = torch.full((m,), cond[j], dtype=torch.long)
        elif self.cards:
            col = torch.randint(0, len(self.cards), (m,))
            probs = torch.nn.utils.rnn.pad_sequence(self.freq, batch_first=True)[col]
            cat = torch.multinomial(probs.clamp_min(0) + 1e-12, 1).squeeze(1)
        else:
            col = cat = torch.zeros(m, dtype=torch.long)
        was = G.training
        G.eval()
        raw = G(torch.randn(m, self.cfg.latent_dim, device=dev),
                self._cond_vector(col.to(dev), cat.to(dev))).float()
        G.train(was)
        out = torch.cat([torch.tanh(raw[:, : self.n_num]), raw[:, self.n_num :]], 1)
        num, codes = self.layout.decode(out, G.norm)
        return EncodedTable(num.cpu(), codes.cpu())
