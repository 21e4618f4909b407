"""TVAE-style (Xu et al. 2019): a VAE over mode-specific normalised rows.

    x = [alpha | mode one-hots | category one-hots]          (transformer.RowLayout)
    q(z | x) = N(mu, diag sigma^2) from the encoder;  the decoder gives raw outputs o
    loss = ( sum_alpha (alpha - tanh o)^2 / (2 s^2) + log s      (s learned per column)
           + sum_spans CE(o_span, x_span) ) * loss_factor / B  +  KL(q || N(0, I)) / B
    sampling: z ~ N(0, I), alpha = tanh o + s * noise, argmax per span

Encoder and decoder are one net ("vae", saved whole: imputation needs the encoder). The
mixture modes are fitted when training starts (configure_optimizers) and kept as its
buffers. Imputation: pseudo-Gibbs (Rezende et al. 2014): fill, encode, decode, put the given
cells back, repeat.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from genforge.families.tabular.nets import TVAE
from genforge.families.tabular.objective import TabularObjective
from genforge.families.tabular.transformer import RowLayout
from genforge.modalities.tables.schema import EncodedTable


class TVAEObjective(TabularObjective):
    sampling_nets = ("vae",)

    def __init__(self, cfg: Any, data_info: dict[str, Any]) -> None:
        super().__init__(cfg, data_info)
        self.layout = RowLayout(self.n_num, cfg.max_modes, self.cards)
        self.nets = {"vae": TVAE(self.layout.dim, cfg.hidden, cfg.layers, cfg.latent_dim,
                                 self.n_num, cfg.max_modes)}

    @property
    def vae(self) -> TVAE:
        net = self.nets["vae"]
        return getattr(net, "module", net)

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        self.vae.norm.fit([s["quantiles"] for s in self.info["stats"]["numeric"]],
                          seed=train.seed)
        return {"vae": torch.optim.Adam(self.nets["vae"].parameters(), lr=train.lr,
                                        betas=train.betas, weight_decay=train.weight_decay)}

    def _reconstruction(self, out: torch.Tensor, x: torch.Tensor, log_s: torch.Tensor
                        ) -> torch.Tensor:
        L = self.layout
        loss = torch.zeros((), device=out.device)
        if L.n_num:
            err = (x[:, : L.n_num] - torch.tanh(out[:, : L.n_num])) ** 2
            loss = loss + (err / (2 * torch.exp(2 * log_s)) + log_s).sum()
            modes = x[:, L.n_num : L.cat_start].reshape(-1, L.n_num, L.M).argmax(-1)
            logits = L.mode_logits(out, self.vae.norm)
            loss = loss + F.cross_entropy(logits.reshape(-1, L.M), modes.reshape(-1),
                                          reduction="sum")
        for a, b in L.cat_spans:
            loss = loss + F.cross_entropy(out[:, a:b], x[:, a:b].argmax(1), reduction="sum")
        return loss

    def training_step(self, batch: Any, step: Any) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            x = self.layout.to_vector(self.vae.norm, batch.x.float(), batch.y)  # (B, D)
        out, mu, log_var, log_s = self.nets["vae"](x)
        B = x.shape[0]
        rec = self._reconstruction(out.float(), x, log_s.float()) * self.cfg.loss_factor / B
        kl = -0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp()) / B
        loss = rec + kl
        step.update("vae", loss)
        return {"loss": loss.detach(), "loss/reconstruction": rec.detach(), "loss/kl": kl.detach()}

    def _decode(self, z: torch.Tensor) -> EncodedTable:
        vae = self.vae
        was = vae.training
        vae.eval()
        out = vae.decoder(z).float()
        vae.train(was)
        noise = torch.randn(len(z), self.n_num, device=z.device) * vae.sigma(len(z), z.device
                                                                            ).exp()
        out = torch.cat([torch.tanh(out[:, : self.n_num]), out[:, self.n_num :]], 1)
        num, cat = self.layout.decode(out, vae.norm, alpha_noise=noise)
        return EncodedTable(num.cpu(), cat.cpu())

    def _generate(self, m: int, cond: dict[int, int]) -> EncodedTable:
        return self._decode(torch.randn(m, self.cfg.latent_dim, device=self.device))

    def _fill(self, enc: EncodedTable, known_num: torch.Tensor, known_cat: torch.Tensor,
              candidates: int = 0, rounds: int = 20) -> EncodedTable:
        start = super()._fill(enc, known_num, known_cat, candidates=16)  # a first guess
        num, cat = start.num, start.cat
        forbid = self._missing_codes()
        for _ in range(rounds):
            x = self.layout.to_vector(self.vae.norm, num.to(self.device), cat.to(self.device))
            mu, log_var = (t.float() for t in self.vae.encode(x))  # fp32 under autocast
            out = self._decode(mu + torch.randn_like(mu) * torch.exp(0.5 * log_var))
            ok = ~((out.cat == forbid) & ~known_cat)  # never fill in 'missing'
            num = torch.where(known_num, enc.num, out.num)
            cat = torch.where(known_cat | ~ok, cat, out.cat)
        return EncodedTable(num, cat)
