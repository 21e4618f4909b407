"""CTGAN-style (Xu et al. 2019): a conditional WGAN-GP over mode-specific normalised rows.

    cond c: one category of one categorical column, as a one-hot over all categories;
            training-by-sampling draws the column uniformly and the category ~ log(1 + count),
            then a real row that has it (data.sampling=by-category; with plain row batches
            the row's own category is used)
    G(z, c) -> raw outputs o;  row = [tanh alpha | Gumbel-softmax(tau) per span]
    critic: PacGAN, `pac` rows (each with its c) judged together
    L_D = D(fake) - D(real) + gp_weight * (||grad D(x_hat)|| - 1)^2
    L_G = -D(fake) + CE(o of c's column, c's category)    (the generator must honour c)

Only the critic sees real rows: with privacy on, it is the private net (`private_nets`),
and the generator must learn from nothing else. So under DP the fake rows' conditions are
drawn from a DP release of the category counts, never from real rows:

    counts n_jk of every categorical column j (all of them: each can be a condition),
    released once as n~ = n + N(0, (z sqrt(J))^2 I)   (one row moves one count per column:
    L2 sensitivity sqrt(J)), z solved for model.condition_share of epsilon and composed with
    the SGD steps by the same accountant (training/privacy.py, `release_statistics`);
    p~_jk = max(n~_jk, 0) / sum_k max(n~_jk, 0)       (uniform where none is left)
    fake: column j uniform, category ~ p~_j; CE target = that category;  B_fake = batch_size
    real: column j uniform, c = the row's own category (read by the private critic only)

The number of fake rows is the configured batch size, not the Poisson batch's: a data-
dependent count would let one record move the critic's update twice. Sampling draws c from
the categories' frequencies (the released ones for a DP run); `where` on a categorical column
sets c to it (rows that still disagree are rejected).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from genforge.families.tabular.nets import CTGANGenerator, PacDiscriminator
from genforge.families.tabular.objective import TabularObjective
from genforge.families.tabular.transformer import RowLayout
from genforge.modalities.tables.schema import EncodedTable


class CTGANObjective(TabularObjective):
    sampling_nets = ("generator",)
    private_nets = ("discriminator",)
    private = False  # set by training/privacy.py under DP-SGD

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.layout = RowLayout(self.n_num, cfg.max_modes, self.cards)
        self.d_cond = sum(self.cards)
        self.cond_offsets = torch.tensor([0, *self.cards]).cumsum(0)[:-1]
        released = data_info.get("condition_freq")  # a DP run's released frequencies
        self.freq = [torch.tensor(f) for f in released] if released is not None else [
            torch.tensor(s["freq"]) for s in data_info["stats"]["categorical"]]
        self.fake_rows = 0  # under DP: fake rows per step (train.batch_size)
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
        self.fake_rows = train.batch_size
        return {name: torch.optim.Adam(net.parameters(), lr=train.lr, betas=train.betas,
                                       weight_decay=train.weight_decay)
                for name, net in self.nets.items()}

    def _cond_vector(self, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        vec = torch.zeros(len(col), self.d_cond, device=col.device)
        if self.d_cond:
            vec[torch.arange(len(col), device=col.device),
                self.cond_offsets.to(col.device)[col] + cat] = 1.0
        return vec

    def release_statistics(self, data: Any, gaussian: Any) -> None:
        """Under DP (training/privacy.py): release the category counts once, with noise;
        the fake rows' conditions and the sampling frequencies come from them alone."""
        cat = data.encoded.cat  # (N, J) codes
        if not self.cards:
            return
        counts = torch.cat([torch.bincount(cat[:, j], minlength=k)
                            for j, k in enumerate(self.cards)]).double()  # (sum k,)
        noisy = gaussian(counts, sensitivity=len(self.cards) ** 0.5,
                         share=self.cfg.condition_share, step="condition release (CTGAN)",
                         detail=f"category counts of the {len(self.cards)} categorical "
                                "columns, from which the generator's conditions are drawn")
        self.freq = []
        for part in noisy.clamp_min(0).split(self.cards):
            total = float(part.sum())
            self.freq.append(part / total if total > 0 else torch.full_like(part, 1 / len(part)))
        self.info["condition_freq"] = [f.tolist() for f in self.freq]  # saved with the model

    def _fake_conditions(self, m: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(column, category) of m fake rows from the (released) frequencies: no real row."""
        if not self.cards:
            return (torch.zeros(m, dtype=torch.long, device=dev),) * 2
        col = torch.randint(0, len(self.cards), (m,), device=dev)
        probs = torch.nn.utils.rnn.pad_sequence(self.freq, batch_first=True).to(dev)[col]
        return col, torch.multinomial(probs.float().clamp_min(0) + 1e-12, 1).squeeze(1)

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
        c_real = c = self._cond_vector(col, cat)
        n_fake = B
        if self.private:  # the generator's conditions and targets from the DP release
            n_fake = self.fake_rows
            col, cat = self._fake_conditions(n_fake, dev)
            c = self._cond_vector(col, cat)  # (B_fake, d_cond)
        z = torch.randn(n_fake, self.cfg.latent_dim, device=dev)
        raw = G(z, c).float()
        fake = self.layout.activate(raw, self.norm, self.cfg.tau)

        # 1. the critic on real and detached fake rows, with the gradient penalty (none under
        # DP-SGD: Opacus's per-sample gradients cannot differentiate the critic twice)
        real_in, fake_in = torch.cat([real, c_real], 1), torch.cat([fake.detach(), c], 1)
        n, n_f = B // self.cfg.pac, n_fake // self.cfg.pac
        if self.cfg.gp_weight > 0:
            eps = torch.rand(n, 1, 1, device=dev)
            hat = (eps * real_in.view(-1, self.cfg.pac, real_in.shape[1])
                   + (1 - eps) * fake_in.view(-1, self.cfg.pac, fake_in.shape[1])
                   ).view_as(real_in).requires_grad_(True)
            scores = D(torch.cat([real_in, fake_in, hat]))  # (3B / pac,)
            (grad,) = torch.autograd.grad(scores[2 * n :].sum(), hat, create_graph=True)
            penalty = ((grad.view(n, -1).norm(2, dim=1) - 1) ** 2).mean()
        else:
            scores = D(torch.cat([real_in, fake_in]))  # ((B + B_fake) / pac,)
            penalty = torch.zeros((), device=dev)
        wasserstein = scores[:n].mean() - scores[n : n + n_f].mean()
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
        ce = ce / n_fake
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
        else:
            col, cat = self._fake_conditions(m, torch.device("cpu"))
        was = G.training
        G.eval()
        raw = G(torch.randn(m, self.cfg.latent_dim, device=dev),
                self._cond_vector(col.to(dev), cat.to(dev))).float()
        G.train(was)
        out = torch.cat([torch.tanh(raw[:, : self.n_num]), raw[:, self.n_num :]], 1)
        num, codes = self.layout.decode(out, G.norm)
        return EncodedTable(num.cpu(), codes.cpu())
