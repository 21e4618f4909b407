"""Autoregressive text models: GPT-2- or Llama-style decoders from transformers configs,
char or byte-level BPE tokenizers from `tokenizers`, and local pretrained causal LMs."""
