"""The text family's config sections: the corpus (`data:`) and the decoder (`model:`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from genforge.config import ConfigError

if TYPE_CHECKING:
    from genforge.config import RunConfig


@dataclass
class ARConfig:
    """A decoder-only Transformer built from a transformers config (never downloaded).

    arch 'gpt2': learned positions, LayerNorm, GELU MLP (GPT2LMHeadModel);
    arch 'llama': RoPE, RMSNorm, SwiGLU MLP, grouped-query attention (LlamaForCausalLM).
    The sampling defaults are used for preview samples and where `sample` is not told.
    """

    arch: Literal["gpt2", "llama"] = "gpt2"
    n_layer: int = 6
    n_head: int = 6
    n_kv_head: int | None = None  # llama only: key/value heads (grouped-query attention)
    n_embd: int = 384
    context: int | None = None  # positions the model can attend to; null = data.block_size
    dropout: float = 0.0
    tie_weights: bool = True  # the output layer shares the token embedding
    # sampling defaults
    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    prompt: str = ""  # preview samples start here ('' = from a line start)

    def __post_init__(self) -> None:
        for key in ("n_layer", "n_head", "n_embd", "max_new_tokens"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be a positive integer")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_embd={self.n_embd} is not divisible by "
                              f"model.n_head={self.n_head}")
        if self.n_kv_head is not None and (self.n_kv_head <= 0 or self.n_head % self.n_kv_head):
            raise ConfigError(f"model.n_kv_head={self.n_kv_head}: must divide "
                              f"model.n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout}: must be in [0, 1)")
        check_sampling(self.temperature, self.top_k, self.top_p, self.repetition_penalty,
                       prefix="model.")

    def check_run(self, cfg: RunConfig) -> None:
        if self.arch == "gpt2" and self.n_kv_head is not None:
            raise ConfigError("model.n_kv_head applies only to model.arch=llama")
        if self.context is not None and self.context < cfg.data.block_size:
            raise ConfigError(f"model.context={self.context} is shorter than "
                              f"data.block_size={cfg.data.block_size}")


def check_sampling(temperature: float | None, top_k: int | None, top_p: float | None,
                   repetition_penalty: float | None, prefix: str = "--") -> None:
    """Sampling options in range; `prefix` names them as a config key or a CLI flag."""
    dash = "-" if prefix == "--" else "_"
    if temperature is not None and (temperature < 0 or 0 < temperature < 1e-3):
        # below 1e-3 the scaled logits overflow to inf and the probabilities to NaN
        raise ConfigError(f"{prefix}temperature={temperature}: must be 0 (greedy) or >= 0.001")
    if top_k is not None and top_k <= 0:
        raise ConfigError(f"{prefix}top{dash}k={top_k}: must be a positive integer")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"{prefix}top{dash}p={top_p}: must be in (0, 1]")
    if repetition_penalty is not None and repetition_penalty < 1e-2:
        raise ConfigError(f"{prefix}repetition{dash}penalty={repetition_penalty}: must be "
                          ">= 0.01")
