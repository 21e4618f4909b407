"""The VAE objective: the negative ELBO, sampling, and filling in missing pixels.

    z = mu + sigma * eps,  eps ~ N(0, I)                             (reparameterisation)
    -ELBO(x) = -E_q[log p(x|z)] + KL(q(z|x) || N(0, I))
    KL = 1/2 * sum(mu^2 + sigma^2 - 1 - log sigma^2)                 (analytic)
    loss = -E_q[log p(x|z)] + beta * KL,  in nats per image
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from genforge.config import TrainConfig
from genforge.errors import ConfigError
from genforge.families.vae.config import VAEConfig
from genforge.families.vae.nets import VAE
from genforge.runtime.noise import RowNoise, fixed_chunks
from genforge.training.contract import Batch, StepContext, bare

LOG_2PI = math.log(2 * math.pi)


class VAEObjective:
    sampling_nets = ("vae",)
    # what sampling offers (genforge.inference.sampler): per-request noise, inpainting
    capabilities = frozenset({"sample", "merge", "complete"})
    sample_keywords = ("batch_size",)
    complete_keywords = ()

    def __init__(self, cfg: VAEConfig, data_info: dict[str, Any]) -> None:
        self.cfg = cfg
        self.num_classes = data_info["num_classes"] if cfg.conditional else 0
        self.nets = {"vae": VAE(cfg, data_info["channels"], data_info["image_size"],
                                data_info["num_classes"])}

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        vae = self.nets["vae"]
        params = [p for p in vae.parameters() if p.requires_grad]
        return {"vae": torch.optim.Adam(params, lr=train.lr, betas=train.betas,
                                        weight_decay=train.weight_decay)}

    def check_privacy(self) -> None:
        if self.cfg.likelihood == "gaussian" and self.cfg.obs_sigma is None:
            raise ConfigError("model.likelihood=gaussian with a learned sigma and privacy: "
                              "sigma is used outside the net's forward, where Opacus sees no "
                              "per-sample gradient; set model.obs_sigma (e.g. 0.1)")

    def nll(self, vae: torch.nn.Module, out: torch.Tensor, x: torch.Tensor,
            known: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x|z) per image, summed over pixels (only the `known` ones if given)."""
        out = out.float()  # bf16 under autocast: the likelihood is summed in fp32
        if self.cfg.likelihood == "bernoulli":
            per_pixel = F.binary_cross_entropy_with_logits(out, (x + 1) / 2, reduction="none")
        else:
            log_sigma = bare(vae).log_sigma
            per_pixel = 0.5 * ((x - out) * torch.exp(-log_sigma)) ** 2 + log_sigma + 0.5 * LOG_2PI
        if known is not None:
            per_pixel = per_pixel * known
        return per_pixel.flatten(1).sum(1)  # (B,)

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        vae = self.nets["vae"]
        x, y = batch.x, batch.y if self.num_classes else None
        out, mu, logvar = vae(x, y)  # through forward, so that DDP syncs the gradients
        recon = self.nll(vae, out, x)  # (B,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # (B,)
        loss = (recon + self.cfg.beta * kl).mean()
        step.update("vae", loss)
        return {"loss/vae": loss.detach(), "neg_elbo": (recon + kl).mean().detach(),
                "recon": recon.mean().detach(), "kl": kl.mean().detach()}

    def mean_image(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's expected image in [-1, 1]."""
        if self.cfg.likelihood == "bernoulli":
            return torch.sigmoid(out) * 2 - 1
        return out.clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               batch_size: int = 1000, noise: RowNoise | None = None,
               pad_to: int | None = None) -> torch.Tensor:
        """Decoder means of z ~ N(0, I): the usual way to show VAE samples. `noise` and
        `pad_to`: per-request generators and fixed-shape chunks (genforge.runtime.noise)."""
        vae = bare(self.nets["vae"])
        device = next(vae.parameters()).device
        noise = noise or RowNoise.single(seed, n)
        z = noise.randn(self.cfg.latent_dim)
        if self.num_classes and condition is None:
            condition = noise.randint(self.num_classes)
        y_all = condition if self.num_classes else None

        def run(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            y = None if y is None else y.to(device)
            return self.mean_image(vae.decode(z.to(device), y).float())
        if pad_to:
            return fixed_chunks(run, [z, y_all], pad_to)
        return torch.cat([run(z[i : i + batch_size], None if y_all is None else
                              y_all[i : i + batch_size]) for i in range(0, n, batch_size)])

    def complete(self, x: torch.Tensor, mask: torch.Tensor, *, seed: int,
                 condition: torch.Tensor | None = None, method: str | None = None,
                 steps: int | None = None) -> torch.Tensor:
        """Fill the pixels where `mask` is True; known pixels are returned unchanged.

        'optimize': MAP latent, argmin_z -log p(x_known|z) + ||z||^2 / 2, by Adam from the
        encoder's guess. 'iterate': encode the current guess, sample z, decode, put the known
        pixels back, repeat (the Markov chain of Rezende et al. 2014); the last pass uses mu.
        """
        method = method or self.cfg.complete_method
        steps = steps or self.cfg.complete_steps
        vae = bare(self.nets["vae"])
        device = next(vae.parameters()).device
        x, mask = x.to(device), mask.to(device).expand_as(x)
        y = None if not self.num_classes else condition.to(device)
        g = torch.Generator(device="cpu").manual_seed(seed)
        known = (~mask).float()
        guess = torch.where(mask, torch.zeros_like(x), x)
        with torch.no_grad():  # fp32 latents under bf16 autocast: Adam steps z below
            mu, logvar = (t.float() for t in vae.encode(guess, y))
        if method == "iterate":
            for i in range(steps):
                with torch.no_grad():
                    mu, logvar = (t.float() for t in vae.encode(guess, y))
                    eps = torch.randn(mu.shape, generator=g).to(device)
                    z = mu if i == steps - 1 else mu + torch.exp(0.5 * logvar) * eps
                    guess = torch.where(mask, self.mean_image(vae.decode(z, y).float()), x)
            return guess
        z = mu.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        frozen = [p.requires_grad for p in vae.parameters()]
        vae.requires_grad_(False)
        try:
            for _ in range(steps):
                loss = (self.nll(vae, vae.decode(z, y), x, known) + 0.5 * z.pow(2).sum(1)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            for p, flag in zip(vae.parameters(), frozen, strict=True):
                p.requires_grad_(flag)
        with torch.no_grad():
            return torch.where(mask, self.mean_image(vae.decode(z, y).float()), x)

