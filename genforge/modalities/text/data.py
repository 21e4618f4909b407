"""A text corpus: found in a data root, split, tokenised once into a cached token array, and
served as random fixed-length windows.

    corpus.txt --(last val_fraction, cut at a line start)--> train text | validation text
    tokenizer: characters of the whole corpus, or byte-level BPE learned on the train text
    cache: <GENFORGE_CACHE or ~/.cache/genforge>/tokens/<name>-<key>/ holds tokenizer.json,
           train.npy and val.npy (uint16/uint32, opened memory-mapped); the key hashes the
           corpus bytes and every setting that changes the tokens, so a stale cache is never read.

Training windows: step s draws the global batch's window starts from a generator seeded with
(seed, s); process r of w takes every w-th window. The stream's state is the one integer s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tokenizers import Tokenizer

from genforge.data.batches import Batch, poisson_indices
from genforge.data.roots import find_in_roots
from genforge.errors import ConfigError, DataError
from genforge.modalities.text.tokenizer import bpe_tokenizer, char_tokenizer, encode_corpus

CACHE_VERSION = 1  # bump when the cached arrays' meaning changes


@dataclass
class TextDataConfig:
    """A UTF-8 corpus, its tokenizer and the training windows.

    `path` is a .txt file or a folder of them, absolute or relative to a data root
    (`data.root` / `--data-root`, then `GENFORGE_DATA`, then the repo's `data/`). The last
    `val_fraction` of the corpus, cut at a line start, is the validation split.
    """

    dataset: str = "tinyshakespeare"  # a name for the record
    path: str = "text/tinyshakespeare.txt"
    root: str | None = None
    tokenizer: Literal["char", "bpe"] = "char"  # characters (any script) or byte-level BPE
    vocab_size: int = 2048  # bpe only: merges learned on the training split
    val_fraction: float = 0.1
    block_size: int = 256  # tokens a training window feeds the model
    limit: int | None = None  # use only the first `limit` lines (quick tests)

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"data.val_fraction={self.val_fraction}: must be in (0, 0.5)")
        if self.block_size < 2:
            raise ConfigError(f"data.block_size={self.block_size}: must be >= 2")
        if self.tokenizer == "bpe" and self.vocab_size < 258:
            raise ConfigError(f"data.vocab_size={self.vocab_size}: a byte-level BPE needs "
                              "at least 258 (256 bytes + end-of-text + one merge)")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"data.limit={self.limit}: must be a positive integer")


class TextData:
    """Train and validation tokens (memory-mapped arrays) and their tokenizer."""

    def __init__(self, cfg: TextDataConfig, tokenizer: Tokenizer, train: np.ndarray,
                 val: np.ndarray, record: dict[str, Any]) -> None:
        self.cfg, self.tokenizer = cfg, tokenizer
        self.train, self.val = train, val  # (N,) token ids
        self.record = record  # corpus, split and cache facts, saved with the model
        if len(train) <= cfg.block_size:
            raise DataError(f"{record['corpus']['path']}: the training split has {len(train)} "
                            f"tokens, not more than data.block_size={cfg.block_size}; use more "
                            "text (data.limit) or a shorter data.block_size")

    # --- what the training loop asks of any data kind (see training/contract.py) ---

    def info(self) -> dict[str, Any]:
        return {
            "kind": "text",
            "dataset": self.cfg.dataset,
            "tokenizer_kind": self.cfg.tokenizer,
            "tokenizer": self.tokenizer.to_str(),
            "vocab_size": self.tokenizer.get_vocab_size(),
            "block_size": self.cfg.block_size,
            **self.record,
        }

    def stream(self, *, batch_size: int, seed: int, rank: int = 0, world: int = 1,
               device: torch.device | str = "cpu", sample_rate: float | None = None
               ) -> TextStream:
        return TextStream(self.train, self.cfg.block_size, batch_size=batch_size, seed=seed,
                          rank=rank, world=world, device=device, sample_rate=sample_rate)

    def preview_condition(self, n: int) -> None:
        return None

    def privacy_records(self) -> tuple[int, str]:
        """DP-SGD's record: a training window (genforge/training/privacy.py)."""
        t = self.cfg.block_size + 1
        return len(self.train) - self.cfg.block_size, (
            f"one window of {t} tokens; windows overlap, so one token is in up to {t} of them "
            "and a per-token or per-document guarantee is weaker (group privacy)")

    def write_samples(self, samples: list[str], stem: Path) -> Path:
        return write_texts(samples, stem.with_suffix(".txt"))


class TextStream:
    """Random windows of block_size + 1 tokens: (B, T + 1) int64, inputs and shifted targets.
    With `sample_rate` q (DP-SGD) each window start joins a step independently with
    probability q (Poisson sampling, batches.poisson_indices) instead of B uniform starts."""

    def __init__(self, tokens: np.ndarray, block_size: int, *, batch_size: int, seed: int,
                 rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
                 sample_rate: float | None = None) -> None:
        self.sample_rate = sample_rate
        self.tokens, self.block_size = tokens, block_size
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.step = 0  # global batches taken

    def next(self, micro: int) -> list[Batch]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        high = len(self.tokens) - self.block_size  # the last start leaves room for T + 1 tokens
        if self.sample_rate is not None:
            starts = poisson_indices(high, self.sample_rate, seed=self.seed, step=self.step)
        else:
            starts = torch.randint(0, high, (self.batch_size,), generator=g)  # (B,)
        mine = starts[self.rank :: self.world].numpy()  # (B / world,)
        index = mine[:, None] + np.arange(self.block_size + 1)  # (b, T + 1)
        x = torch.from_numpy(self.tokens[index].astype(np.int64)).to(self.device)
        self.step += 1
        return [Batch(chunk, None) for chunk in x.chunk(micro)]

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def load_text(cfg: TextDataConfig, data_root: str | Path | None = None) -> TextData:
    """Find, split and tokenise the corpus `cfg` names (tokens come from the cache if there)."""
    path = find_corpus(cfg.path, data_root or cfg.root)
    raw = _read_bytes(path)
    key = _cache_key(raw, cfg)
    folder = cache_root() / "tokens" / f"{Path(cfg.path).stem}-{key}"
    if not (folder / "meta.json").exists():
        _build_cache(folder, _decode(raw, path), cfg)
    meta = json.loads((folder / "meta.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    train = np.load(folder / "train.npy", mmap_mode="r", allow_pickle=False)
    val = np.load(folder / "val.npy", mmap_mode="r", allow_pickle=False)
    record = {
        "corpus": {"path": cfg.path, "sha256": hashlib.sha256(raw).hexdigest(),
                   "limit_lines": cfg.limit},
        "split": meta["split"],
        "cache": {"folder": str(folder), "key": key},
    }
    return TextData(cfg, tokenizer, train, val, record)


def find_corpus(path: str, explicit: str | Path | None = None) -> Path:
    """An absolute path, or `path` under the first data root that has it."""
    return find_in_roots(path, explicit, "the UTF-8 text")


def split_text(text: str, val_fraction: float) -> tuple[str, str, dict[str, Any]]:
    """(train, validation, record): validation is the tail, cut at the next line start."""
    cut = int(len(text) * (1.0 - val_fraction))
    newline = text.find("\n", cut)
    cut = newline + 1 if 0 <= newline < len(text) - 1 else cut
    record = {"rule": "validation = the last val_fraction of the characters, cut at the next "
                      "line start", "val_fraction": val_fraction,
              "train_chars": cut, "val_chars": len(text) - cut}
    return text[:cut], text[cut:], record


def cache_root() -> Path:
    """GENFORGE_CACHE, else ~/.cache/genforge."""
    env = os.environ.get("GENFORGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genforge"


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"{path}: a folder with no .txt files; put the corpus there")
        return b"\n\n".join(f.read_bytes().rstrip(b"\n") for f in files) + b"\n"
    return path.read_bytes()


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); convert it, e.g. "
                        f"iconv -f LATIN1 -t UTF-8") from None


def _limit_lines(text: str, limit: int | None) -> str:
    if limit is None:
        return text
    return "".join(text.splitlines(keepends=True)[:limit])


def _cache_key(raw: bytes, cfg: TextDataConfig) -> str:
    settings = {"version": CACHE_VERSION, "tokenizer": cfg.tokenizer, "limit": cfg.limit,
                "val_fraction": cfg.val_fraction,
                "vocab_size": cfg.vocab_size if cfg.tokenizer == "bpe" else None}
    h = hashlib.sha256(raw)
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _build_cache(folder: Path, text: str, cfg: TextDataConfig) -> None:
    """Tokenise once and write the folder under a temporary name (a crash leaves no half)."""
    text = _limit_lines(text, cfg.limit)
    train_text, val_text, split = split_text(text, cfg.val_fraction)
    if cfg.tokenizer == "char":  # the character set of the whole corpus, as nanoGPT does
        tokenizer = char_tokenizer(text)
        split["vocabulary"] = "every character of the whole corpus"
    else:
        tokenizer = bpe_tokenizer([train_text], cfg.vocab_size)
        split["vocabulary"] = "byte-level BPE merges learned on the training split"
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer.save(str(tmp / "tokenizer.json"))
    dtype = np.uint16 if tokenizer.get_vocab_size() <= np.iinfo(np.uint16).max else np.uint32
    counts = {}
    for name, part in (("train", train_text), ("val", val_text)):
        ids = encode_corpus(tokenizer, part).astype(dtype)  # (N,)
        np.save(tmp / f"{name}.npy", ids)
        counts[f"{name}_tokens"] = len(ids)
    split.update(counts)
    (tmp / "meta.json").write_text(json.dumps({"split": split, "dtype": str(dtype.__name__)},
                                              indent=1))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built the same cache first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)


def write_texts(texts: Sequence[str], out: Path | str) -> Path | str:
    """Texts to out: .txt (samples between '=== sample i ===' lines), .jsonl or .json."""
    out = Path(out)
    if out.suffix == ".txt":
        body = "".join(f"=== sample {i} ===\n{t}\n" for i, t in enumerate(texts))
    elif out.suffix == ".jsonl":
        body = "".join(json.dumps({"sample": i, "text": t}, ensure_ascii=False) + "\n"
                       for i, t in enumerate(texts))
    elif out.suffix == ".json":
        body = json.dumps(list(texts), ensure_ascii=False, indent=1) + "\n"
    else:
        raise ConfigError(f"--out {out}: text samples go to a .txt, .jsonl or .json file, "
                          "or - for the terminal")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    return out


def format_texts(texts: Sequence[str]) -> str:
    """Texts as the terminal shows them: one alone, or several between '=== sample i ===' lines."""
    if len(texts) == 1:
        return texts[0] + "\n"
    return "".join(f"=== sample {i} ===\n{t}\n" for i, t in enumerate(texts))


class TextOutput:
    """Texts out of a model: a list of str, written as .txt, .jsonl or .json."""

    default_out = "-"  # the CLI prints text unless --out names a file
    default_n = 1
    suffixes = (".txt", ".jsonl", ".json")

    def decode(self, samples: list[str], info: dict[str, Any]) -> list[str]:
        return samples

    def write(self, values: Sequence[str], path: Path, info: dict[str, Any], *,
              nrow: int | None = None, provenance: dict[str, Any] | None = None) -> Path:
        from genforge.labelling import embed_provenance

        written = Path(write_texts(values, path))
        if provenance is not None and str(path) != "-":  # sidecar; a field of a JSON object
            embed_provenance(written, provenance)
        return written
