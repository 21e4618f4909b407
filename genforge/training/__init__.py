"""The shared training loop and what it needs: contract, batches, EMA, checkpoints, logs."""
