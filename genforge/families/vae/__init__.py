"""VAEs: MLP and conv, Bernoulli or Gaussian likelihood, beta-VAE, conditional."""
