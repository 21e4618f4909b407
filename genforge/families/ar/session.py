"""Continuous batching of text: the rows of several requests decoded together, each request
joining and leaving between tokens, so one that arrives mid-generation waits for one token
step instead of for the texts being generated.

One step:
  1. the running rows' next logits, from the shared KV cache (each row fed its last token at
     its own position; the cache is left-padded to one length and the padding masked out).
     Newcomers' prompts run in the same call (a call of a small model costs about the same
     for one token as for a prompt): every row brings as many new columns as the longest
     prompt, left-padded and masked, the newcomers over cache rows that are all masked.
     Newcomers to an idle session run their prompts on their own. A newcomer whose prompt
     a session of the same model ran before takes that prompt's cache and logits from a
     PromptCache and runs nothing (a shared prompt is the common case: a system prompt, the
     page's default, a benchmark's "ROMEO:").
  2. the options' processors and the pick, as `sample_texts` does them; the processors see
     each row's own ids, left-padded with its first id (a repeat of a token the row already
     holds, so the repetition penalty sees exactly the row's tokens)
  3. a row leaves at a stop token, a stop string or max_new_tokens, and the cache is compacted
     (each row's own columns move to its right end: the cache is as long as its longest
     row); a request is answered when its last row has left.

What holds: a row's logits are those of the same text decoded alone up to float rounding
(padding and batch shape change the last bits), so greedy decoding (temperature 0) gives the
lone text, and sampled texts follow the same distribution. Rows draw from one generator with
the session's seed: a seeded request is not reproducible here (the server runs those alone).
A request must fit the model's context (prompt + max_new_tokens); longer ones run alone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from genforge.config import ConfigError
from genforge.families.ar.generate import (
    SamplingOptions,
    TextSamples,
    _cut_at_stop,
    _decode,
    encode_prompt,
)
from genforge.families.ar.nets import context_length


@dataclass
class _Row:
    ticket: int
    index: int  # which of its request's texts
    prompt: str
    prompt_ids: list[int]
    new: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.new)


class PromptCache:
    """The key/value cache and next-token logits of recent prompts, per model, so that a
    request whose prompt was run before joins a session without a call of the model for
    it. At 8 staggered clients of shakespeare-char (one AVX2 thread) a step where a
    newcomer's prompt runs costs ~8 ms against ~5.5 ms, and every request lives through
    about 8 of them. Least recently used entries go first past `max_bytes`. An entry is
    what a prompt run alone gives (a join in a batch gives the same up to float rounding).
    Sessions `check` the model before they look a prompt up: the cache empties itself when
    the weights were written in place or moved to another device or dtype."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[list[tuple[torch.Tensor, torch.Tensor]],
                                                torch.Tensor, int]] = OrderedDict()
        self._bytes = 0
        self._weights: tuple = ()
        self._lock = threading.Lock()  # sessions of one model may run on several threads

    def check(self, model: Any) -> None:
        """Forget everything if the model's weights changed since the last check: written in
        place (their version counters), or moved to another device or dtype."""
        params = list(model.parameters())
        weights = (sum(p._version for p in params), params[0].device, params[0].dtype)
        with self._lock:
            if weights != self._weights:
                self._entries.clear()
                self._bytes, self._weights = 0, weights

    def get(self, ids: list[int], device: torch.device) -> tuple[
            list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor] | None:
        """(per-layer (1, H, P, D) keys and values, (V,) logits) of `ids`, or None."""
        key = _cache_key(ids, device)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0], entry[1]

    def put(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]],
            logits: torch.Tensor) -> None:
        key = _cache_key(ids, logits.device)
        size = logits.nbytes + sum(k.nbytes + v.nbytes for k, v in kv)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            if size > self.max_bytes:
                return
            self._entries[key] = ([(k.detach().clone(), v.detach().clone()) for k, v in kv],
                                  logits.detach().clone(), size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)


def _cache_key(ids: list[int], device: torch.device) -> tuple:
    """A prompt's ids, and the device and autocast precision its cache was computed in (a
    model's device and dtype are the cache's own: `check`)."""
    kind = torch.device(device).type
    autocast = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    return tuple(ids), kind, autocast


class TextSession:
    """Texts of one set of options, decoded together; requests join and leave between tokens."""

    def __init__(self, model: Any, tokenizer: Any, options: SamplingOptions, seed: int,
                 prompt: str = "", prompts: PromptCache | None = None) -> None:
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.prompts = prompts  # shared by the model's sessions; None: every prompt runs
        self.prompt = prompt  # for requests without one
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.processors = options.processors()
        # only these read the ids so far; the warpers (temperature, top-k, top-p) do not
        self._reads_ids = bool(options.logits_processors) or options.repetition_penalty != 1.0
        self.context = context_length(model)
        self._running: list[_Row] = []  # in cache order
        self._waiting: list[list[_Row]] = []  # newcomers, one list a request
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer (R, H, L, D)
        self._cache: DynamicCache | None = None  # over _kv while no row joins or leaves
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)  # (R, L)
        self._texts: dict[int, list[str | None]] = {}

    @property
    def rows(self) -> int:
        return len(self._running) + sum(len(rows) for rows in self._waiting)

    def fits(self, prompt: str | None = None) -> bool:
        """Whether the prompt and max_new_tokens fit the model's context (a longer text
        slides its window, which only a lone call does)."""
        prompt = self.prompt if prompt is None else prompt
        ids = encode_prompt(self.tokenizer, prompt)
        return len(ids) + self.options.max_new_tokens <= self.context

    def add(self, ticket: int, n: int, prompt: str | None = None, *, seed: int | None = None,
            condition: torch.Tensor | None = None) -> None:
        """n texts continuing `prompt` (the model's own if None), answered under `ticket`.
        `seed` and `condition` are not used: rows draw from the session's generator, and a
        text model takes no labels (genforge.inference.session calls every family's session
        alike)."""
        prompt = self.prompt if prompt is None else prompt
        ids = encode_prompt(self.tokenizer, prompt)
        if len(ids) + self.options.max_new_tokens > self.context:
            raise ConfigError(f"prompt + max_new_tokens: {len(ids)} + "
                              f"{self.options.max_new_tokens} tokens exceed this model's "
                              f"context of {self.context}; sample it alone")
        self._waiting.append([_Row(ticket, i, prompt, ids) for i in range(n)])
        self._texts[ticket] = [None] * n

    def remove(self, ticket: int) -> None:
        self._waiting = [rows for rows in self._waiting if rows[0].ticket != ticket]
        self._keep([i for i, r in enumerate(self._running) if r.ticket != ticket])
        self._texts.pop(ticket, None)

    @torch.no_grad()
    def advance(self) -> list[tuple[int, TextSamples]]:
        """One token for every row; (ticket, texts) of the requests whose last row ended."""
        if not self.rows:
            return []
        logits = []
        known = self._known_prompts()  # newcomers whose prompt ran before: no call for them
        if self._running and self._waiting and self._mask_form() is not None:
            logits.append(self._step_joining())  # 1. running rows and newcomers, one call
        elif self._running:  # 1. the running rows, from the cache
            last = torch.tensor([[r.new[-1]] for r in self._running], device=self.device)
            positions = torch.tensor([[r.length - 1] for r in self._running], device=self.device)
            mask = F.pad(self._mask, (0, 1), value=1)  # (R, L + 1)
            if self._cache is None:  # rows joined or left: the cache is built anew
                self._cache = DynamicCache(ddp_cache_data=self._kv, config=self.model.config)
            padded = not bool(mask.all())  # rows all aligned: the plain causal path
            out = self.model(input_ids=last, attention_mask=self._attention_mask(mask, 1)
                             if padded else None, position_ids=positions if padded else None,
                             past_key_values=self._cache, use_cache=True)
            self._mask = mask
            logits.append(out.logits[:, -1].float())
        if self._waiting or known:
            self._kv = self._layers()
        for rows in self._waiting:  # 1. newcomers to an idle session: their prompts alone
            ids = torch.tensor([r.prompt_ids for r in rows], device=self.device)  # (k, P)
            out = self.model(input_ids=ids, use_cache=True)
            kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self._remember(rows[0].prompt_ids, [(k[:1], v[:1]) for k, v in kv],
                           out.logits[0, -1])
            self._join(kv, torch.ones_like(ids))
            self._running += rows
            logits.append(out.logits[:, -1].float())
        self._waiting = []
        for rows, (kv, last) in known:  # 1. newcomers with a known prompt: its cache
            n = len(rows)
            rows_kv = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv]
            if not self._kv:  # _join would keep these views of the entry as the cache itself
                rows_kv = [(k.clone(), v.clone()) for k, v in rows_kv]  # (else its cat copies)
            self._join(rows_kv, torch.ones((n, kv[0][0].shape[2]), dtype=torch.long,
                                           device=self.device))
            self._running += rows
            logits.append(last.float().expand(n, -1))
        # 2. processors on each row's own ids, then the pick
        history = self._history() if self._reads_ids else torch.zeros(
            (len(self._running), 1), dtype=torch.long, device=self.device)
        scores = self.processors(history, torch.cat(logits))  # (R, V)
        if self.options.temperature == 0:
            tokens = scores.argmax(-1)
        else:
            probs = torch.softmax(scores, -1)
            tokens = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
        # 3. rows that end leave; requests whose rows all ended are answered
        keep = []
        for i, (row, token) in enumerate(zip(self._running, tokens.tolist(), strict=True)):
            if self._ends(row, token):
                self._texts[row.ticket][row.index] = self._text(row)
            else:
                keep.append(i)
        self._keep(keep)
        done = [(t, TextSamples(texts)) for t, texts in self._texts.items()
                if all(text is not None for text in texts)]
        for ticket, _ in done:
            del self._texts[ticket]
        return done

    def _known_prompts(self) -> list[tuple[list[_Row], tuple[list, torch.Tensor]]]:
        """Take the waiting requests whose prompt is in the prompt cache out of the queue."""
        if self.prompts is None or not self._waiting:
            return []
        self.prompts.check(self.model)  # a session may outlive a change of the weights
        known, unknown = [], []
        for rows in self._waiting:
            entry = self.prompts.get(rows[0].prompt_ids, self.device)
            if entry is None:
                unknown.append(rows)
            else:
                known.append((rows, entry))
        self._waiting = unknown
        return known

    def _remember(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]],
                  logits: torch.Tensor) -> None:
        if self.prompts is not None:
            self.prompts.put(ids, kv, logits)

    def _ends(self, row: _Row, token: int) -> bool:
        if token in self.options.stop_ids:
            return True  # the stop token is not part of the text
        row.new.append(token)
        if len(row.new) >= self.options.max_new_tokens:
            return True
        return bool(self.options.stop) and any(
            s in self.tokenizer.decode(row.new, skip_special_tokens=True)
            for s in self.options.stop)

    def _text(self, row: _Row) -> str:
        text = _decode(self.tokenizer, row.prompt_ids, row.new, row.prompt)
        return _cut_at_stop(text, row.prompt, self.options.stop)

    def _history(self) -> torch.Tensor:
        """(R, L) each row's prompt and new ids, left-padded with its first id."""
        width = max(r.length for r in self._running)
        return torch.tensor([[(r.prompt_ids + r.new)[0]] * (width - r.length)
                             + r.prompt_ids + r.new for r in self._running], device=self.device)

    def _join(self, kv: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor) -> None:
        """Append rows with their cache `kv` and `mask`, both padded on the left to one length."""
        self._cache = None
        if not self._kv:
            self._kv, self._mask = kv, mask
            return
        length = max(self._mask.shape[1], mask.shape[1])
        pad = _left_padder(length)
        self._kv = [(torch.cat([pad(k0), pad(k1)]), torch.cat([pad(v0), pad(v1)]))
                    for (k0, v0), (k1, v1) in zip(self._kv, kv, strict=True)]
        self._mask = torch.cat([_pad_mask(self._mask, length), _pad_mask(mask, length)])

    def _keep(self, rows: list[int]) -> None:
        """Only these running rows stay, the cache compacted: each row's own columns move
        to the right end, in order, so the cache is as long as its longest row (a join
        leaves masked columns in the other rows; attention does not care where a key
        sits, and each row's positions are its own)."""
        if len(rows) == len(self._running):
            return
        self._kv, self._cache = self._layers(), None
        self._running = [self._running[i] for i in rows]
        if not rows:
            self._kv, self._mask = [], self._mask[:0, :0]
            return
        index = torch.tensor(rows, device=self.device)
        used = self._mask[index].bool()  # (R, L)
        width = int(used.sum(1).max())
        # a stable sort puts each row's unused columns first and its own after, in order
        columns = torch.argsort(used.to(torch.uint8), dim=1, stable=True)[:, -width:]
        self._mask = used.gather(1, columns).long()
        # one index over (row, column) pairs: index_select of whole (H, D) slices costs a
        # quarter of a gather along the columns (8 rows of shakespeare-char's cache, one
        # AVX2 thread: 0.44 against 1.8 ms for its 4 layers)
        rows_and_columns = (index[:, None] * used.shape[1] + columns).reshape(-1)

        def compact(t: torch.Tensor) -> torch.Tensor:  # (R, H, L, D) -> (R', H, width, D)
            r, h, length, d = t.shape
            pairs = t.transpose(1, 2).reshape(r * length, h, d)
            return pairs.index_select(0, rows_and_columns).view(len(rows), width, h, d) \
                .transpose(1, 2)

        self._kv = [(compact(k), compact(v)) for k, v in self._kv]

    def _step_joining(self) -> torch.Tensor:
        """The running rows' next token and the newcomers' prompts in one call (a prompt run
        on its own would cost the running rows a whole extra call: for a small model a call
        costs about the same for one token or a prompt). Each row brings W new columns: a
        running row its last token, left-padded; a newcomer its prompt, left-padded, over L
        cache columns that are all masked. Logits (rows, V) at each row's last column."""
        newcomers = [row for rows in self._waiting for row in rows]
        width = max(len(r.prompt_ids) for r in newcomers)
        ids, positions, new = [], [], []
        for r in self._running:
            ids.append([r.new[-1]] * width)
            positions.append([0] * (width - 1) + [r.length - 1])
            new.append([0] * (width - 1) + [1])
        for r in newcomers:
            pad = width - len(r.prompt_ids)
            ids.append([r.prompt_ids[0]] * pad + r.prompt_ids)
            positions.append([0] * pad + list(range(len(r.prompt_ids))))
            new.append([0] * pad + [1] * len(r.prompt_ids))
        k = len(newcomers)
        self._kv = [(torch.cat([keys, keys.new_zeros((k, *keys.shape[1:]))]),
                     torch.cat([values, values.new_zeros((k, *values.shape[1:]))]))
                    for keys, values in self._layers()]
        mask = torch.cat([torch.cat([self._mask, self._mask.new_zeros(k, self._mask.shape[1])]),
                          torch.tensor(new, device=self.device)], 1)  # (R + k, L + W)
        self._cache = DynamicCache(ddp_cache_data=self._kv, config=self.model.config)
        out = self.model(input_ids=torch.tensor(ids, device=self.device),
                         attention_mask=self._attention_mask(mask, width),
                         position_ids=torch.tensor(positions, device=self.device),
                         past_key_values=self._cache, use_cache=True)
        self._mask = mask
        first = len(self._running)
        for i, r in enumerate(newcomers, start=first):  # each newcomer's own columns
            length = len(r.prompt_ids)
            self._remember(r.prompt_ids, [(layer.keys[i:i + 1, :, -length:],
                                           layer.values[i:i + 1, :, -length:])
                                          for layer in self._cache.layers], out.logits[i, -1])
        self._running += newcomers
        self._waiting = []
        return out.logits[:, -1].float()

    def _mask_form(self) -> str | None:
        """How the model's attention takes a prepared 4D mask ('sdpa': bool, 'eager':
        additive); None for other kernels, whose masks transformers builds from a 2D one."""
        attention = getattr(self.model.config, "_attn_implementation", None)
        return attention if attention in ("sdpa", "eager") else None

    def _attention_mask(self, mask: torch.Tensor, queries: int) -> torch.Tensor:
        """The (R, 1, queries, L) mask of a call that adds `queries` columns to the cache, in
        the form the model's attention takes it, so that transformers does not build one from
        the 2D mask every step (8 rows of shakespeare-char, one AVX2 thread: ~0.2 ms of a
        ~2.7 ms call). Causal among the new columns, and each new column sees itself: a
        padding column would otherwise see no column at all, which some kernels answer
        with NaN (which the cache would keep)."""
        form = self._mask_form()
        if form is None:
            return mask  # a one-token step only (see advance)
        keep = mask.bool()[:, None, None, :]  # (R, 1, 1, L)
        if queries > 1:
            first = mask.shape[1] - queries
            column = torch.arange(mask.shape[1], device=self.device)
            query = torch.arange(queries, device=self.device)[:, None] + first
            keep = (keep & (column <= query)) | (column == query)  # (R, 1, queries, L)
        if form == "sdpa":
            return keep  # True: attend
        dtype = next(self.model.parameters()).dtype  # eager: added to the scores
        return torch.zeros(keep.shape, dtype=dtype, device=self.device).masked_fill(
            ~keep, torch.finfo(dtype).min)

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cache's tensors, per layer (R, H, L, D)."""
        if self._cache is None:
            return self._kv
        return [(layer.keys, layer.values) for layer in self._cache.layers]


def _left_padder(length: int):
    """(R, H, L, D) -> (R, H, length, D), zeros on the left (no copy when L is length)."""
    return lambda t: t if t.shape[-2] == length else F.pad(t, (0, 0, length - t.shape[-2], 0))


def _pad_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    return mask if mask.shape[1] == length else F.pad(mask, (length - mask.shape[1], 0), value=0)
