"""Family maths: the VAE's ELBO terms, WGAN-GP's penalty, the frozen critic, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator

from genforge.families.gan.config import GANConfig
from genforge.families.gan.nets import DCGANDiscriminator, DCGANGenerator
from genforge.families.gan.objective import GANObjective
from genforge.families.vae.config import VAEConfig
from genforge.families.vae.objective import VAEObjective
from genforge.registry import load_config
from genforge.training.contract import Batch, StepContext
from genforge.training.loop import make_schedule

INFO = {"dataset": "mnist", "channels": 1, "image_size": 28, "num_classes": 10,
        "class_names": [str(i) for i in range(10)]}


def test_vae_kl_is_the_analytic_gaussian_kl():
    """The closed form in training_step equals torch.distributions' KL(q || N(0, I)) (its
    registered Normal-Normal formula), to float rounding: a Monte Carlo estimate's 5 %
    would pass a KL with the standard deviation where the variance belongs."""
    torch.manual_seed(0)
    objective = VAEObjective(VAEConfig(latent_dim=3, hidden=16), INFO)
    captured = {}

    class Spy(StepContext):
        def update(self, name, loss):
            captured["loss"] = loss

    x = torch.rand(4, 1, 28, 28) * 2 - 1
    logs = objective.training_step(Batch(x, None), Spy(None, {}, {}, objective.nets, None))
    mu, logvar = objective.nets["vae"].encode(x)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    exact = torch.distributions.kl_divergence(q, p).sum(-1).mean()  # torch's own closed form
    assert logs["kl"].item() == pytest.approx(exact.item(), rel=1e-5)
    assert captured["loss"].item() == pytest.approx(logs["recon"].item() + logs["kl"].item(),
                                                    rel=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_reconstruction_term_is_the_log_likelihood(likelihood):
    cfg = VAEConfig(latent_dim=3, hidden=16, likelihood=likelihood,
                    obs_sigma=0.3 if likelihood == "gaussian" else None)
    objective = VAEObjective(cfg, INFO)
    vae = objective.nets["vae"]
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    out = torch.randn(2, 1, 28, 28)
    if likelihood == "bernoulli":
        p = torch.sigmoid(out)
        t = (x + 1) / 2
        expected = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).flatten(1).sum(1)
    else:
        expected = -torch.distributions.Normal(out, 0.3).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(objective.nll(vae, out, x), expected, rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def small_vae(tmp_path_factory):
    from genforge.api import load, train

    cfg = load_config("mnist-vae", ["model.hidden=128", "model.latent_dim=8", "data.limit=4096",
                                    "train.max_steps=250", "log.progress=false",
                                    "log.tensorboard=false", "log.sample_every=0"])
    return load(train(cfg, out=tmp_path_factory.mktemp("vae") / "run").run_dir)


@pytest.mark.parametrize("method", ["optimize", "iterate"])
def test_vae_complete_infers_the_missing_half(small_vae, method):
    """A briefly trained VAE fills the bottom half of test digits better than the best constant
    guess (the training mean image), and never changes a known pixel."""
    from genforge.config import DataConfig
    from genforge.modalities.images.data import load_images, to_model_range

    test = load_images(DataConfig(split="test", limit=64)).images
    train_mean = to_model_range(load_images(DataConfig(limit=4096)).images).mean(0)
    filled = small_vae.complete(test, "bottom-half", seed=0, method=method, steps=100)
    assert torch.equal(filled[..., :14, :], test[..., :14, :])
    err = (to_model_range(filled) - to_model_range(test))[..., 14:, :].pow(2).mean()
    baseline = (train_mean - to_model_range(test))[..., 14:, :].pow(2).mean()
    assert err < baseline, (err, baseline)


def test_wgan_gp_penalty_of_a_linear_critic():
    """For D(x) = <w, x> the input gradient is w everywhere: penalty = (||w|| - 1)^2."""
    cfg = GANConfig(loss="wgan-gp", width=8, latent_dim=4)
    objective = GANObjective(cfg, INFO)
    w = torch.randn(784)

    class Linear(torch.nn.Module):
        def forward(self, x, y=None):
            return x.flatten(1) @ w

    real, fake = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    loss, logs = objective._critic_loss(Linear(), real, fake, None)
    expected_penalty = (w.norm() - 1) ** 2
    assert logs["gradient_penalty"].item() == pytest.approx(expected_penalty.item(), rel=1e-4)
    wasserstein = (real.flatten(1) @ w).mean() - (fake.flatten(1) @ w).mean()
    assert logs["wasserstein"].item() == pytest.approx(wasserstein.item(), rel=1e-4)
    assert loss.item() == pytest.approx(-wasserstein.item() + 10 * expected_penalty.item(),
                                        rel=1e-4)


def test_generator_update_gives_the_discriminator_no_gradient():
    torch.manual_seed(0)
    cfg = load_config("mnist-dcgan", ["model.width=8", "model.latent_dim=8"])
    objective = GANObjective(cfg.model, INFO)
    D = objective.nets["discriminator"]
    seen = {}

    class Watch(StepContext):
        def update(self, name, loss):
            super().update(name, loss)
            if name == "generator":  # after G's backward and step, D holds no gradient
                seen["d_grads"] = [p.grad for p in D.parameters()]
                seen["d_trainable"] = all(p.requires_grad for p in D.parameters())

    optimizers = objective.configure_optimizers(cfg.train)
    ctx = Watch(Accelerator(cpu=True), optimizers,
                {k: make_schedule(o, cfg.train) for k, o in optimizers.items()},
                objective.nets, None)
    objective.training_step(Batch(torch.rand(8, 1, 28, 28) * 2 - 1, None), ctx)
    assert all(g is None for g in seen["d_grads"])
    assert seen["d_trainable"]  # unfrozen again afterwards


@pytest.mark.parametrize("size", [28, 32, 64])
def test_dcgan_shapes(size):
    cfg = GANConfig(width=8, latent_dim=4, conditional=True)
    G = DCGANGenerator(cfg, 3, size, 10)
    D = DCGANDiscriminator(cfg, 3, size, 10)
    y = torch.arange(2)
    x = G(torch.randn(2, 4), y)
    assert x.shape == (2, 3, size, size)
    assert D(x, y).shape == (2,)


def test_projection_discriminator_uses_the_label():
    torch.manual_seed(0)
    cfg = GANConfig(width=8, latent_dim=4, conditional=True)
    D = DCGANDiscriminator(cfg, 1, 28, 10)
    torch.nn.init.normal_(D.embed.weight)
    x = torch.rand(3, 1, 28, 28)
    assert not torch.allclose(D(x, torch.tensor([0, 0, 0])), D(x, torch.tensor([5, 5, 5])))


def test_gaussian_vae_learns_its_sigma_only_when_asked():
    learned = VAEObjective(VAEConfig(likelihood="gaussian"), INFO).nets["vae"].log_sigma
    fixed = VAEObjective(VAEConfig(likelihood="gaussian", obs_sigma=0.5), INFO).nets["vae"]
    assert learned.requires_grad
    assert not fixed.log_sigma.requires_grad
    assert fixed.log_sigma.item() == pytest.approx(math.log(0.5))
