"""The autoregressive objective: next-token cross-entropy, sampling, and a transformers export.

    p(x_1..x_T) = prod_t p(x_t | x_<t)
    loss = -1/(B T) sum_{b,t} log p(x_{b,t+1} | x_{b,<=t})       in nats per token

A window of T + 1 tokens gives T predictions; for a char model nats per token / ln 2 is bits
per character.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from genforge.config import ConfigError, TrainConfig
from genforge.families.ar.config import ARConfig, check_sampling
from genforge.families.ar.generate import (
    SamplingOptions,
    TextSamples,
    encode_prompt,
    sample_texts,
)
from genforge.families.ar.nets import build_lm, quiet_transformers, token_logprobs
from genforge.families.ar.session import PromptCache, TextSession
from genforge.modalities.text.tokenizer import END_OF_TEXT, UNK
from genforge.training.contract import Batch, StepContext, bare


class ARObjective:
    """A causal LM and its tokenizer; `nets['lm']` is a transformers PreTrainedModel."""

    sampling_nets = ("lm",)
    # what sampling offers (genforge.inference.sampler): token-by-token sessions, streamed
    # text, logits processors (the watermark), log-probabilities
    capabilities = frozenset({"sample", "step", "stream", "logits", "token_logprobs"})
    sample_keywords = ()

    def __init__(self, cfg: ARConfig, data_info: dict[str, Any]) -> None:
        self.cfg = cfg
        self.data_info = data_info
        self.tokenizer = hf_tokenizer(Tokenizer.from_str(data_info["tokenizer"]))
        self.context = cfg.context or data_info["block_size"]
        self.nets = {"lm": build_lm(cfg, data_info["vocab_size"], self.context)}
        self.prompt = cfg.prompt
        self._prompts: PromptCache | None = None  # made by the first sampling session
        self.defaults = SamplingOptions(
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
            top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty)

    def check_privacy(self) -> None:
        raise ConfigError("family ar with privacy: transformers' decoders share their "
                          "position embeddings across the batch (a batch-1 index), which "
                          "Opacus's per-sample gradients cannot split; not supported yet")

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """AdamW; weight decay on matrices and embeddings only (not biases or norms).

        The fused kernel (CPU and CUDA, train.device is one of them) updates every tensor in
        one pass; the default per-tensor loop took 12 ms of a shakespeare-char step on a CPU
        where the fused one takes 4."""
        params = [p for p in self.nets["lm"].parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2],
                   "weight_decay": train.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return {"lm": torch.optim.AdamW(groups, lr=train.lr, betas=train.betas,
                                        fused=fused or None)}

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        window = batch.x  # (B, T + 1) token ids
        # use_cache=False: training needs no key/value cache (building one costs time)
        logits = self.nets["lm"](input_ids=window[:, :-1], use_cache=False).logits  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), window[:, 1:].flatten())
        step.update("lm", loss)
        return {"loss/lm": loss.detach()}

    def nll(self, batch: Batch) -> torch.Tensor:
        """-log p of each predicted token, (B, T), in nats."""
        return -token_logprobs(bare(self.nets["lm"]), batch.x)

    @torch.no_grad()
    def token_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        """log p(x_t | x_<t) for t = 1..T of each row of `ids` (B, T + 1) -> (B, T)."""
        lm = bare(self.nets["lm"])
        training = lm.training
        lm.eval()
        try:
            return token_logprobs(lm, ids.to(next(lm.parameters()).device))
        finally:
            lm.train(training)

    def encode_prompt(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               prompt: str | None = None, max_new_tokens: int | None = None,
               temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, repetition_penalty: float | None = None,
               stop: list[str] | str | None = None,
               on_text: Callable[[str], None] | None = None,
               logits_processors: Sequence[Any] | None = None) -> TextSamples:
        """n texts continuing `prompt` (included in each); options not given take the model's
        defaults; `on_text` receives the first text piece by piece as its tokens come;
        `logits_processors` (transformers LogitsProcessors, e.g. a watermark) act first."""
        options = self._options(max_new_tokens, temperature, top_k, top_p,
                                repetition_penalty, stop, logits_processors)
        lm = bare(self.nets["lm"])
        training = lm.training
        lm.eval()
        try:
            return sample_texts(lm, self.tokenizer, n, seed=seed,
                                prompt=self.prompt if prompt is None else prompt,
                                options=options, on_text=on_text)
        finally:
            lm.train(training)

    def sampling_session(self, *, size: int | None = None, max_new_tokens: int | None = None,
                         temperature: float | None = None, top_k: int | None = None,
                         top_p: float | None = None, repetition_penalty: float | None = None,
                         stop: list[str] | str | None = None,
                         seed: int | None = None) -> TextSession:
        """Texts decoded together, requests joining and leaving between tokens (continuous
        batching, for the server; see session.py). `size` is not used: text rows need no
        fixed-shape passes (nothing is bit-exact across batch shapes here). Rows draw from
        one generator seeded with `seed` (fresh if None)."""
        options = self._options(max_new_tokens, temperature, top_k, top_p,
                                repetition_penalty, stop, None)
        lm = bare(self.nets["lm"])
        lm.eval()  # a served model only samples
        if self._prompts is None:  # shared by this model's sessions
            self._prompts = PromptCache()
        return TextSession(lm, self.tokenizer, options,
                           secrets.randbits(63) if seed is None else seed, self.prompt or "",
                           prompts=self._prompts)

    def _options(self, max_new_tokens: int | None, temperature: float | None,
                 top_k: int | None, top_p: float | None, repetition_penalty: float | None,
                 stop: list[str] | str | None,
                 logits_processors: Sequence[Any] | None) -> SamplingOptions:
        """The model's defaults with the options given, checked; stop ids from the model."""
        check_sampling(temperature, top_k, top_p, repetition_penalty)
        if max_new_tokens is not None and max_new_tokens <= 0:
            raise ConfigError(f"--max-new-tokens={max_new_tokens}: must be a positive integer")
        given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k,
                 "top_p": top_p, "repetition_penalty": repetition_penalty}
        options = replace(self.defaults, **{k: v for k, v in given.items() if v is not None})
        options.stop = [stop] if isinstance(stop, str) else list(stop or ())
        options.logits_processors = list(logits_processors or ())
        eos = bare(self.nets["lm"]).generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        options.stop_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        return options

    def export(self, folder: Path) -> None:
        """A transformers folder (config.json, model.safetensors, tokenizer.json,
        generation_config.json): AutoModelForCausalLM.from_pretrained(folder) loads it."""
        lm = bare(self.nets["lm"])
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        lm.generation_config.update(**self._generation_defaults())
        with quiet_transformers():
            lm.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        facts = {k: v for k, v in self.data_info.items() if k not in ("tokenizer", "cache")}
        (tmp / "genforge.json").write_text(json.dumps(facts, indent=1, ensure_ascii=False))
        old = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    def _generation_defaults(self) -> dict[str, Any]:
        d = self.defaults
        greedy = d.temperature == 0
        return {"do_sample": not greedy, "max_new_tokens": d.max_new_tokens,
                "temperature": None if greedy else d.temperature, "top_k": d.top_k,
                "top_p": d.top_p, "repetition_penalty": d.repetition_penalty}


def hf_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers wrapper (encode/decode/save_pretrained) of a genforge tokenizer."""
    vocab = tokenizer.get_vocab()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=UNK if UNK in vocab else None,
        eos_token=END_OF_TEXT if END_OF_TEXT in vocab else None,
    )
