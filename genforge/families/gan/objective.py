"""The GAN game: each player's loss and update, and sampling.

bce (non-saturating):  L_D = -log D(x) - log(1 - D(G(z))),   L_G = -log D(G(z))
wgan-gp:               L_D = D(G(z)) - D(x) + lambda * (||grad D(x_hat)||_2 - 1)^2,
                       x_hat = eps * x + (1 - eps) * G(z),   L_G = -D(G(z))
One loop step is one discriminator update; the generator updates every `critic_steps` steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from genforge.config import TrainConfig
from genforge.errors import ConfigError
from genforge.families.gan.config import GANConfig
from genforge.families.gan.nets import build_nets
from genforge.runtime.noise import RowNoise, fixed_chunks
from genforge.training.contract import Batch, StepContext, bare


class GANObjective:
    sampling_nets = ("generator",)
    # what sampling offers (genforge.inference.sampler): per-request noise
    capabilities = frozenset({"sample", "merge"})
    sample_keywords = ("batch_size",)
    # DP-SGD: only the discriminator reads real images, so only it is privatised; the generator
    # learns through the private discriminator (post-processing). Under privacy a conditional
    # generator draws its labels at random instead of taking the real batch's, and makes
    # train.batch_size fakes a step whatever the size of the (Poisson) real batch: a
    # data-dependent count would let one record add a second term to the critic's update.
    private_nets = ("discriminator",)
    private = False
    fake_rows = 0  # train.batch_size, set with the optimizers

    def __init__(self, cfg: GANConfig, data_info: dict[str, Any]) -> None:
        self.cfg = cfg
        self.num_classes = data_info["num_classes"] if cfg.conditional else 0
        generator, discriminator = build_nets(
            cfg, data_info["channels"], data_info["image_size"], data_info["num_classes"]
        )
        self.nets = {"generator": generator, "discriminator": discriminator}

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        self.fake_rows = train.batch_size
        return {
            name: torch.optim.Adam(net.parameters(), lr=train.lr, betas=train.betas,
                                   weight_decay=train.weight_decay)
            for name, net in self.nets.items()
        }

    def check_privacy(self) -> None:
        if self.cfg.loss == "wgan-gp":
            raise ConfigError("model.loss=wgan-gp with privacy: the gradient penalty "
                              "differentiates the critic twice, which Opacus's per-sample "
                              "gradients do not support; use model.loss=bce")

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        G, D = self.nets["generator"], self.nets["discriminator"]
        real, y = batch.x, batch.y if self.num_classes else None
        n_fake = self.fake_rows if self.private else real.shape[0]
        z = torch.randn(n_fake, self.cfg.latent_dim, device=real.device)
        y_fake = y
        if self.private and y is not None:  # the generator never reads the real labels
            y_fake = torch.randint(0, self.num_classes, (n_fake,), device=y.device)
        update_g = (step.step + 1) % self.cfg.critic_steps == 0
        with torch.set_grad_enabled(update_g):  # no graph through G when it does not update
            fake = G(z, y_fake)  # (B, C, H, W)

        # 1. the discriminator (critic) on real and detached fake images
        if self.cfg.loss == "bce":
            real_logit, fake_logit = self._scores(D, real, y, fake.detach(), y_fake)
            d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                      + F.binary_cross_entropy_with_logits(fake_logit,
                                                           torch.zeros_like(fake_logit)))
            logs = {"loss/d": d_loss.detach(), "d/real": torch.sigmoid(real_logit).mean().detach(),
                    "d/fake": torch.sigmoid(fake_logit).mean().detach()}
        else:
            d_loss, logs = self._critic_loss(D, real, fake.detach(), y)  # (never private)
        step.update("discriminator", d_loss)

        # 2. the generator, through a frozen discriminator
        if update_g:
            with step.frozen("discriminator") as frozen_d:
                fake_logit = frozen_d(fake, y_fake)
            if self.cfg.loss == "bce":
                g_loss = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
            else:
                g_loss = -fake_logit.mean()
            step.update("generator", g_loss)
            logs["loss/g"] = g_loss.detach()
        return logs

    def _scores(self, D: torch.nn.Module, real: torch.Tensor, y: torch.Tensor | None,
                fake: torch.Tensor, y_fake: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits on real and fake images. Under DP in one pass over both: Opacus clips
        each row of a pass, so a real image and a fake one are separate terms (two passes
        would add real i's and fake i's gradients into one clipped term, and adding a
        record would re-pair every later one)."""
        if not self.private:
            return D(real, y), D(fake, y_fake)
        labels = None if y is None else torch.cat([y, y_fake])
        logits = D(torch.cat([real, fake]), labels)  # (B + B_fake,)
        return logits[: len(real)], logits[len(real) :]

    def _critic_loss(self, D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     y: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = real.shape[0]
        eps = torch.rand(b, 1, 1, 1, device=real.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        # One critic pass over real, fake and interpolates: the critic has no batch norm,
        # so samples do not interact and the three parts are independent.
        labels = None if y is None else torch.cat([y, y, y])
        scores = D(torch.cat([real, fake, x_hat]), labels)  # (3B,)
        real_s, fake_s, hat_s = scores[:b], scores[b : 2 * b], scores[2 * b :]
        (grad,) = torch.autograd.grad(hat_s.sum(), x_hat, create_graph=True)
        penalty = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        wasserstein = real_s.mean() - fake_s.mean()
        loss = -wasserstein + self.cfg.gp_weight * penalty
        return loss, {"loss/d": loss.detach(), "wasserstein": wasserstein.detach(),
                      "gradient_penalty": penalty.detach()}

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               batch_size: int = 1000, noise: RowNoise | None = None,
               pad_to: int | None = None) -> torch.Tensor:
        """n images in [-1, 1]; without `condition`, a conditional model draws random labels.
        `noise` (several requests' own generators) replaces the one seeded by `seed`;
        `pad_to` runs the generator on chunks of exactly that many rows (genforge.training.
        noise: rows then do not depend on the batch they ran in)."""
        G = bare(self.nets["generator"])
        device = next(G.parameters()).device
        noise = noise or RowNoise.single(seed, n)
        z = noise.randn(self.cfg.latent_dim)
        if self.num_classes and condition is None:
            condition = noise.randint(self.num_classes)
        was_training = G.training
        G.eval()
        try:
            def run(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
                return G(z.to(device), None if y is None else y.to(device)).float()
            if pad_to:
                out = fixed_chunks(run, [z, condition], pad_to)
            else:
                out = torch.cat([run(z[i : i + batch_size], None if condition is None else
                                     condition[i : i + batch_size])
                                 for i in range(0, n, batch_size)])
        finally:
            G.train(was_training)
        return out.clamp_(-1, 1)
