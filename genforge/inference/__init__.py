"""Sampling engines over any family: the Sampler contract, batching and sessions."""
