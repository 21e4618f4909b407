"""llama2.c checkpoints (Karpathy's run.c format) -> a transformers Llama folder.

    genforge convert llama2c stories260K.bin --tokenizer tok512.bin --out models/stories260K

model.bin: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len);
vocab_size < 0 means an unshared classifier at the end. Then float32 arrays, each stacked over
layers: token_embedding (V, D), rms_att (L, D), wq (L, D, D), wk (L, KV, D), wv (L, KV, D),
wo (L, D, D), rms_ffn (L, D), w1 (L, H, D), w2 (L, D, H), w3 (L, H, D), rms_final (D,),
freq_cis_real and freq_cis_imag (S, hd/2 each; recomputed by transformers), [wcls (V, D)].
tokenizer.bin: max_token_length int32, then per token: score float32, length int32, bytes.

RoPE: llama2.c rotates interleaved pairs (x0, x1), (x2, x3), ... of each head; transformers'
Llama rotates halves (x_i, x_{i+hd/2}). The same rotation in the other layout is a fixed
permutation of the rows of wq and wk within each head (the one transformers' own
convert_llama_weights_to_hf applies).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, processors

from genforge.errors import DataError
from genforge.families.ar.nets import quiet_transformers

HEADER = struct.Struct("<7i")


def read_llama2c(path: Path) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """(header, llama2.c tensors by name) from a version-0 ('legacy') model.bin."""
    raw = Path(path).read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = HEADER.unpack_from(raw)
    shared = vocab > 0
    vocab = abs(vocab)
    head_dim = dim // heads
    kv_dim = kv_heads * head_dim
    shapes = [
        ("token_embedding", (vocab, dim)), ("rms_att", (layers, dim)),
        ("wq", (layers, dim, dim)), ("wk", (layers, kv_dim, dim)),
        ("wv", (layers, kv_dim, dim)), ("wo", (layers, dim, dim)),
        ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)),
        ("w2", (layers, dim, hidden)), ("w3", (layers, hidden, dim)),
        ("rms_final", (dim,)), ("freq_cis_real", (seq_len, head_dim // 2)),
        ("freq_cis_imag", (seq_len, head_dim // 2)),
    ]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    floats = np.frombuffer(raw, dtype="<f4", offset=HEADER.size)
    expected = sum(int(np.prod(s)) for _, s in shapes)
    if floats.size != expected:
        raise DataError(f"{path}: {floats.size} floats after the header, expected {expected} "
                        "for a llama2.c version-0 checkpoint with this header")
    tensors, offset = {}, 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        tensors[name] = torch.from_numpy(floats[offset : offset + size].copy()).view(shape)
        offset += size
    header = {"dim": dim, "hidden_dim": hidden, "n_layers": layers, "n_heads": heads,
              "n_kv_heads": kv_heads, "vocab_size": vocab, "seq_len": seq_len,
              "shared_classifier": shared}
    return header, tensors


def permute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection (n_heads * hd, D) from interleaved-pair to half-split order:
    within each head, rows (0, 2, 4, ..., 1, 3, 5, ...)."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def hf_state_dict(header: dict[str, int], t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """llama2.c tensors -> LlamaForCausalLM's state-dict names."""
    heads, kv_heads = header["n_heads"], header["n_kv_heads"]
    sd = {"model.embed_tokens.weight": t["token_embedding"],
          "model.norm.weight": t["rms_final"],
          "lm_head.weight": t.get("wcls", t["token_embedding"])}
    for i in range(header["n_layers"]):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = t["rms_att"][i]
        sd[p + "self_attn.q_proj.weight"] = permute_rotary(t["wq"][i], heads)
        sd[p + "self_attn.k_proj.weight"] = permute_rotary(t["wk"][i], kv_heads)
        sd[p + "self_attn.v_proj.weight"] = t["wv"][i]
        sd[p + "self_attn.o_proj.weight"] = t["wo"][i]
        sd[p + "post_attention_layernorm.weight"] = t["rms_ffn"][i]
        sd[p + "mlp.gate_proj.weight"] = t["w1"][i]
        sd[p + "mlp.down_proj.weight"] = t["w2"][i]
        sd[p + "mlp.up_proj.weight"] = t["w3"][i]
    return sd


def read_tokenizer_bin(path: Path, vocab_size: int) -> list[tuple[str, float]]:
    """(piece, score) per token id, pieces as llama2.c wrote them (spaces, not '▁')."""
    raw = Path(path).read_bytes()
    offset, pieces = 4, []  # skip max_token_length
    for _ in range(vocab_size):
        score, length = struct.unpack_from("<fi", raw, offset)
        offset += 8
        pieces.append((raw[offset : offset + length].decode("utf-8"), score))
        offset += length
    if offset != len(raw):
        raise DataError(f"{path}: {len(raw) - offset} bytes left after {vocab_size} tokens; "
                        "is it the tokenizer of this model?")
    return pieces


def sentencepiece_tokenizer(pieces: list[tuple[str, float]]) -> Tokenizer:
    """The SentencePiece BPE that llama2.c's tokenizer.bin came from, as a `tokenizers` BPE
    with byte fallback: ids 0, 1, 2 are <unk>, <s>, </s>; '▁' marks a space; a text gets a
    leading space and <s> in front, as llama2.c's encode does; merges are ranked by the
    merged piece's score (SentencePiece merges the best-scoring pair first)."""
    vocab: dict[str, int] = {}
    scores: dict[str, float] = {}
    for i, (piece, score) in enumerate(pieces):
        piece = {0: "<unk>", 1: "<s>", 2: "</s>"}.get(i, piece.replace(" ", "▁"))
        vocab[piece] = i
        scores[piece] = score
    merges = []
    for piece, score in scores.items():
        if vocab[piece] < 3 or (piece.startswith("<0x") and len(piece) == 6):
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((score, vocab[left], vocab[right], left, right))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    tokenizer = Tokenizer(models.BPE(vocab, [(m[3], m[4]) for m in merges], unk_token="<unk>",
                                     byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                                 normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                           decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tokenizer


def convert_llama2c(checkpoint: str | Path, tokenizer: str | Path, out: str | Path) -> Path:
    """Write `out` as a transformers folder; returns it. Greedy decoding from <s> with it
    reproduces llama2.c's `run -t 0.0` (see tests/test_ar.py)."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    checkpoint, tokenizer, out = Path(checkpoint), Path(tokenizer), Path(out)
    for f in (checkpoint, tokenizer):
        if not f.exists():
            raise DataError(f"{f}: no such file")
    header, tensors = read_llama2c(checkpoint)
    config = LlamaConfig(
        vocab_size=header["vocab_size"], hidden_size=header["dim"],
        intermediate_size=header["hidden_dim"], num_hidden_layers=header["n_layers"],
        num_attention_heads=header["n_heads"], num_key_value_heads=header["n_kv_heads"],
        max_position_embeddings=header["seq_len"], rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=header["shared_classifier"], bos_token_id=1, eos_token_id=2,
    )
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(hf_state_dict(header, tensors), strict=False)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise DataError(f"{checkpoint}: weights do not fit ({missing}, {unexpected})")
    # llama2.c ends a story at the next <s>; run.c's defaults are temperature 1, top-p 0.9
    model.generation_config.update(bos_token_id=1, eos_token_id=[1, 2], do_sample=True,
                                   temperature=1.0, top_p=0.9, max_new_tokens=256)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out)
    pieces = read_tokenizer_bin(tokenizer, header["vocab_size"])
    PreTrainedTokenizerFast(tokenizer_object=sentencepiece_tokenizer(pieces), bos_token="<s>",
                            eos_token="</s>", unk_token="<unk>").save_pretrained(out)
    record = {"source": "llama2.c", "checkpoint": checkpoint.name, "tokenizer": tokenizer.name,
              "sha256": {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                         for f in (checkpoint, tokenizer)}, "header": header}
    (out / "genforge.json").write_text(json.dumps(record, indent=1))
    return out
