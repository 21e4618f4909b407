"""Sampling text from any causal LM: prompt, temperature, top-k, top-p, repetition penalty,
stop strings and tokens, a seed; n samples in one batch; optional streaming to the terminal.

One step, for every row at once (the logits processors are transformers' own, so the options
mean what they mean in `model.generate`):
  1. logits of the next token, from the KV cache; once the text outgrows the model's context,
     from the last `context` tokens recomputed (as nanoGPT does)
  2. repetition penalty (CTRL: a seen token's logit is divided by p if > 0, else times p)
  3. temperature 0 takes the argmax; else logits / temperature, keep the top k, keep the
     smallest set of tokens whose probability reaches top_p, and draw from a generator seeded
     with `seed` (the global RNG is never touched)
  4. a row ends at a stop token (end of text) or when its continuation holds a stop string,
     which is cut off
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from genforge.config import ConfigError
from genforge.families.ar.nets import context_length


@dataclass
class SamplingOptions:
    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    stop: Sequence[str] = ()
    stop_ids: set[int] = field(default_factory=set)
    # first in line, on the raw logits: e.g. genforge.labelling's green-list watermark
    logits_processors: Sequence[Any] = ()

    def processors(self) -> LogitsProcessorList:
        steps = LogitsProcessorList(self.logits_processors)
        if self.repetition_penalty != 1.0:
            steps.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.temperature > 0:
            if self.temperature != 1.0:
                steps.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k:
                steps.append(TopKLogitsWarper(self.top_k))
            if self.top_p is not None and self.top_p < 1.0:
                steps.append(TopPLogitsWarper(self.top_p))
        return steps


class TextSamples(list):
    """The sampled texts (a list of str), the prompt included in each."""


class Streamer:
    """Hands the first row's new text to `emit` as it comes (nothing here prints)."""

    def __init__(self, decode: Callable[[list[int]], str], emit: Callable[[str], None],
                 hold: int = 0) -> None:
        self.decode, self.emit = decode, emit
        self.hold = hold  # characters held back while a stop string may be forming
        self.sent = 0

    def put(self, new_ids: list[int]) -> None:
        text = self.decode(new_ids)  # the prompt and the new tokens
        end = len(text) - self.hold
        if text.endswith("\ufffd"):  # half a UTF-8 character: wait for its other bytes
            end = min(end, len(text.rstrip("\ufffd")))
        if end > self.sent:
            self.emit(text[self.sent : end])
            self.sent = end

    def finish(self, text: str) -> None:
        if len(text) > self.sent:
            self.emit(text[self.sent :])
        self.sent = len(text)


@torch.no_grad()
def sample_texts(model: Any, tokenizer: Any, n: int, *, seed: int, prompt: str,
                 options: SamplingOptions,
                 on_text: Callable[[str], None] | None = None) -> TextSamples:
    """n continuations of `prompt` (the prompt included); `tokenizer` is a transformers one.
    `on_text` receives the first row's text piece by piece as it is generated."""
    device = next(model.parameters()).device
    prompt_ids = encode_prompt(tokenizer, prompt)
    ids = torch.tensor([prompt_ids] * n, dtype=torch.long, device=device)  # (n, P)
    start = ids.shape[1]
    generator = torch.Generator(device=device).manual_seed(seed)
    processors = options.processors()
    context = context_length(model)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(sorted(options.stop_ids), dtype=torch.long, device=device)
    ended = [start + options.max_new_tokens] * n  # where each row's new tokens end
    streamer = Streamer(lambda new: _decode(tokenizer, prompt_ids, new, prompt), on_text,
                        hold=max((len(s) for s in options.stop), default=1) - 1) \
        if on_text is not None else None
    cache = None
    for _ in range(options.max_new_tokens):
        logits, cache = _next_logits(model, ids, cache, context)  # 1. (n, V)
        logits = processors(ids, logits)  # 2.-3. penalties and warpers, then a pick
        if options.temperature == 0:
            token = logits.argmax(-1)  # (n,)
        else:
            probs = torch.softmax(logits, -1)  # (n, V)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (n,)
        ids = torch.cat([ids, token[:, None]], 1)  # (n, L + 1)
        for row in torch.nonzero(~done & torch.isin(token, stop_ids)).flatten().tolist():
            ended[row] = ids.shape[1] - 1  # 4. the stop token is not part of the text
        done |= torch.isin(token, stop_ids)
        for row in _rows_with_stop_strings(tokenizer, ids[:, start:], done, options.stop):
            done[row], ended[row] = True, ids.shape[1]
        if streamer is not None and not done[0]:
            streamer.put(ids[0, start:].tolist())
        if done.all():
            break
    texts = TextSamples()
    for row in range(n):
        new = ids[row, start : ended[row]].tolist()
        texts.append(_cut_at_stop(_decode(tokenizer, prompt_ids, new, prompt), prompt,
                                  options.stop))
    if streamer is not None:
        streamer.finish(texts[0])
    return texts


def _next_logits(model: Any, ids: torch.Tensor, cache: Any,
                 context: int) -> tuple[torch.Tensor, Any]:
    """Logits of the next token (n, V): from the KV cache while the text fits the context,
    then from the last `context` tokens, recomputed (the positions slide)."""
    if ids.shape[1] > context:
        out = model(input_ids=ids[:, -context:], use_cache=False)
        return out.logits[:, -1].float(), None
    inputs = ids if cache is None else ids[:, -1:]  # (n, P) first, then (n, 1)
    out = model(input_ids=inputs, past_key_values=cache, use_cache=True)
    return out.logits[:, -1].float(), out.past_key_values


def _rows_with_stop_strings(tokenizer: Any, new: torch.Tensor, done: torch.Tensor,
                            stop: Sequence[str]) -> list[int]:
    """Rows still running whose new text (n, k tokens) now holds a stop string."""
    if not stop:
        return []
    rows = torch.nonzero(~done).flatten().tolist()
    return [r for r in rows
            if any(s in tokenizer.decode(new[r].tolist(), skip_special_tokens=True)
                   for s in stop)]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's ids (with BOS where the tokenizer adds one); an empty prompt starts from
    BOS, else from a line break, as nanoGPT's samples do."""
    if prompt:
        ids = tokenizer.encode(prompt, add_special_tokens=True)
        unk = tokenizer.unk_token_id
        if unk is not None and unk in ids:
            unknown = "".join(sorted({c for c in prompt
                                      if tokenizer.convert_tokens_to_ids(c) == unk}))
            raise ConfigError(f"--prompt: {unknown!r} not in this model's vocabulary (a char "
                              "model knows the characters of its training corpus)")
        if ids:
            return ids
    if tokenizer.bos_token_id is not None:
        return [tokenizer.bos_token_id]
    newline = tokenizer.encode("\n", add_special_tokens=False)
    return newline[-1:] or [0]


def _decode(tokenizer: Any, prompt_ids: list[int], new: list[int], prompt: str) -> str:
    """The text of prompt + new tokens, decoded together (a leading-space rule such as
    SentencePiece's applies to the whole text, not to the continuation)."""
    if not prompt:
        return tokenizer.decode(new, skip_special_tokens=True)
    return tokenizer.decode(prompt_ids + new, skip_special_tokens=True)


def _cut_at_stop(text: str, prompt: str, stop: Sequence[str]) -> str:
    head = len(prompt) if text.startswith(prompt) else 0
    cuts = [text.find(s, head) for s in stop if s in text[head:]]
    return text[: min(cuts)] if cuts else text
