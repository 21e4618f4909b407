"""GANs: MLP GAN, DCGAN, conditional DCGAN (projection discriminator), WGAN-GP."""
