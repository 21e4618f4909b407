"""Decoder-only Transformers from transformers model classes, built from a config (no download).

    gpt2:  GPT2LMHeadModel  - learned positions, pre-LayerNorm blocks, GELU MLP (4 x width)
    llama: LlamaForCausalLM - RoPE, RMSNorm, SwiGLU MLP (about 8/3 x width), grouped-query
                              attention with n_kv_head key/value heads

Both take input_ids (B, T) and return logits (B, T, V). With tied weights the output layer is
the token embedding; the state dict then lists it once (safetensors refuses shared tensors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from genforge.families.ar.config import ARConfig


def build_lm(cfg: ARConfig, vocab_size: int, context: int) -> PreTrainedModel:
    """A randomly initialised causal LM; `context` is the number of positions it can attend."""
    common = {"vocab_size": vocab_size, "tie_word_embeddings": cfg.tie_weights,
              "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if cfg.arch == "gpt2":
        config = GPT2Config(n_positions=context, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                            n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                            attn_pdrop=cfg.dropout, **common,
                            # the exact (erf) GELU, as nanoGPT's nn.GELU: on an AVX2 CPU
                            # PyTorch's tanh GELU costs 3x as much forward, 2x backward
                            # (measured 768 x 512: 4.8 / 6.5 ms against 1.5 / 3.0 ms)
                            activation_function="gelu")
    else:
        hidden = 32 * -(-int(8 * cfg.n_embd / 3) // 32)  # 8/3 width, up to a multiple of 32
        config = LlamaConfig(hidden_size=cfg.n_embd, intermediate_size=hidden,
                             num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                             num_key_value_heads=cfg.n_kv_head or cfg.n_head,
                             max_position_embeddings=context, rms_norm_eps=1e-5,
                             attention_dropout=cfg.dropout, **common)
    model = AutoModelForCausalLM.from_config(config)
    list_tied_weights_once(model)
    return model


def list_tied_weights_once(model: nn.Module) -> None:
    """Drop the second name of each shared parameter from state_dict() and restore it on
    load_state_dict(), so that checkpoints and EMA see every tensor exactly once."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}  # later name -> first name of the same tensor
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    if not aliases:
        return

    def drop(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
        for alias in aliases:
            state.pop(prefix + alias, None)

    def restore(module: nn.Module, state: dict, prefix: str, *args: object) -> None:
        for alias, original in aliases.items():
            if prefix + alias not in state and prefix + original in state:
                state[prefix + alias] = state[prefix + original]

    model.register_state_dict_post_hook(drop)
    model.register_load_state_dict_pre_hook(restore)


def context_length(model: PreTrainedModel) -> int:
    """Positions the model attends to (GPT-2's n_positions, Llama's max_position_embeddings)."""
    config = model.config
    return int(getattr(config, "max_position_embeddings", None) or config.n_positions)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared tensors once


@torch.no_grad()
def token_logprobs(model: PreTrainedModel, window: torch.Tensor) -> torch.Tensor:
    """log p(x_t | x_<t) of each token after the first: window (B, T + 1) -> (B, T)."""
    logits = model(input_ids=window[:, :-1], use_cache=False).logits.float()  # (B, T, V)
    return torch.log_softmax(logits, -1).gather(-1, window[:, 1:, None])[..., 0]  # (B, T)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" / "Writing model shards" progress bars inside the `with`."""
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
