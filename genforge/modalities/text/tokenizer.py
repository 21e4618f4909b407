"""Tokenizers from the `tokenizers` library: one character per token, or byte-level BPE.

Both are `tokenizers.Tokenizer`s, saved as their JSON (`tokenizer.json`, the format
`AutoTokenizer` reads): the JSON text is stored in the run's data_info, so a run needs nothing
but its folder, and `export` writes it next to the weights.

    char: a WordLevel vocabulary of every character in the corpus (any script, CJK included)
          plus <unk>; a pre-tokenizer isolates each character, a Fuse decoder joins them.
    bpe:  GPT-2's byte-level BPE (Radford et al. 2019): the 256 bytes as the base alphabet,
          merges learned on the training split, <|endoftext|> as the one special token.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

UNK = "<unk>"
END_OF_TEXT = "<|endoftext|>"


def char_tokenizer(text: str) -> Tokenizer:
    """Token 0 is <unk>; then every distinct character of `text`, in code point order."""
    vocab = {UNK: 0}
    for i, ch in enumerate(sorted(set(text))):
        vocab[ch] = i + 1
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([UNK])
    return tokenizer


def bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with `vocab_size` tokens (256 bytes + merges + <|endoftext|>)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def is_char_level(tokenizer: Tokenizer) -> bool:
    return isinstance(tokenizer.model, models.WordLevel)


def encode_corpus(tokenizer: Tokenizer, text: str, chunk_chars: int = 1 << 20) -> np.ndarray:
    """The whole text as token ids (int64), the same ids `tokenizer.encode(text)` gives.

    A char vocabulary is looked up with numpy (the regex pre-tokenizer takes seconds per
    million characters); BPE text is encoded in chunks cut after a line break, where the
    byte-level pre-tokenizer splits anyway.
    """
    if is_char_level(tokenizer):
        vocab = tokenizer.get_vocab()
        points = np.array([ord(c) for c in vocab if len(c) == 1], dtype=np.int64)
        ids = np.array([vocab[c] for c in vocab if len(c) == 1], dtype=np.int64)
        order = np.argsort(points)
        points, ids = points[order], ids[order]
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        where = np.searchsorted(points, codes).clip(0, max(len(points) - 1, 0))
        known = points[where] == codes if len(points) else np.zeros(len(codes), bool)
        return np.where(known, ids[where], vocab[UNK])
    chunks = list(_line_chunks(text, chunk_chars))
    encoded = tokenizer.encode_batch_fast(chunks, add_special_tokens=False)
    return np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encoded] or
                          [np.zeros(0, np.int64)])


def _line_chunks(text: str, size: int) -> Iterable[str]:
    """Pieces of about `size` characters, each cut after a lone line break ("x\nY"): GPT-2's
    pre-tokenizer makes that break a token of its own either way."""
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        while end < len(text) and not (text[end - 1] == "\n" and not text[end].isspace()
                                       and not text[end - 2].isspace()):
            end += 1
        yield text[start:end]
        start = end
