"""Diffusion models on diffusers' UNet2DModel and schedulers: DDPM/DDIM, guidance, RePaint."""
