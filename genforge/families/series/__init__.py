"""Autoregressive time series: a GRU or Transformer over scaled values with a Gaussian or
Student-t head, trained on the past of CSV series; sampled future paths; CRPS and MASE."""
