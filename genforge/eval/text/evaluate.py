"""Text evaluation: held-out likelihood, diversity and copying of samples, with the protocol.

    from genforge.eval.text.evaluate import evaluate_text, write_text_report
    metrics = evaluate_text("runs/shakespeare-char")           # a run or a transformers folder
    write_text_report(metrics, "runs/shakespeare-char/eval")    # metrics.json + report.html

Metrics (every one recorded with how it was computed, in metrics["protocol"]):
  val_loss      mean -ln p(x_t | x_<t) over held-out tokens, in nats per token; the text is cut
                into non-overlapping windows of `context` + 1 tokens, each token predicted from
                the earlier tokens of its window (0 .. context - 1 of them)
  perplexity    exp(val_loss)
  bits_per_char total nats / ln 2 / characters predicted (= val_loss / ln 2 for a char model)
  distinct_n    distinct n-grams / all n-grams of the samples' continuations, in tokens, over
                all samples together (Li et al. 2016), n = 1..4
  copy_rate_8   share of the samples' token 8-grams that occur anywhere in the training text;
                the same share for held-out text is given as the baseline
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.config import ConfigError
from genforge.errors import DataError
from genforge.modalities.text.spec import MODALITY as TEXT
from genforge.version import __version__

COPY_N = 8
DISTINCT_N = (1, 2, 3, 4)
HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: a polynomial hash of n-grams modulo 2^64


def evaluate_text(model_or_run: Any, *, text: str | Path | None = None,
                  reference: str | Path | None = None, n_samples: int = 64,
                  max_new_tokens: int = 256, prompt: str = "", temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                  max_eval_tokens: int | None = 1_000_000, batch_size: int = 32,
                  data_root: str | Path | None = None, device: str = "cpu") -> dict[str, Any]:
    """Metrics of a text model: a run folder, a transformers folder or a loaded model.

    text: held-out text file (default: the run's validation split; required for a folder);
    reference: training text for the copy rate (default: the run's training split).
    Sampling is plain ancestral sampling (temperature 1, no top-k/top-p) unless told.
    """
    from genforge.api import load

    model = load(model_or_run, device=device) \
        if isinstance(model_or_run, str | Path) else model_or_run
    if model.modality != TEXT.name:
        raise ConfigError(f"{model.path}: not a text model; use genforge eval for images")
    tokenizer = model.tokenizer
    held_out, train, source = _token_sets(model, tokenizer, text, reference, data_root)
    if max_eval_tokens is not None and len(held_out) > max_eval_tokens:
        held_out = held_out[:max_eval_tokens]
    context = int(model.data_info.get("block_size") or 256)

    start = time.perf_counter()
    nats, tokens, chars = held_out_nll(model, held_out, context, batch_size)
    loss = nats / tokens
    samples = model.sample(n_samples, seed=seed, prompt=prompt, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p)
    head = len(model.prompt_ids(prompt)) if prompt else 0
    continuations = [tokenizer.encode(s, add_special_tokens=bool(prompt))[head:]
                     for s in samples]
    distinct = {f"distinct_{n}": distinct_n(continuations, n) for n in DISTINCT_N}
    copy = baseline = None
    if train is not None:
        known = ngram_set(train, COPY_N)
        copy = copy_rate(continuations, known, COPY_N)
        baseline = copy_rate([held_out[: 200_000]], known, COPY_N)
    metrics = {
        "val_loss": loss, "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2), "bits_per_char": nats / math.log(2) / chars,
        **distinct, f"copy_rate_{COPY_N}": copy, f"copy_rate_{COPY_N}_held_out": baseline,
        "mean_sample_tokens": float(np.mean([len(c) for c in continuations])),
    }
    return {
        "format": "genforge-eval-v1", "kind": "text",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "genforge": __version__,
        "torch": torch.__version__, "seconds": round(time.perf_counter() - start, 2),
        "model": {"path": str(model.path), "step": model.step,
                  "source": model.data_info.get("source", "genforge run"),
                  "parameters": model.parameters},
        "metrics": metrics,
        "protocol": {
            "seed": seed,
            "held_out": {**source["held_out"], "tokens_evaluated": tokens,
                         "characters_predicted": chars, "context": context,
                         "windows": f"non-overlapping, {context} + 1 tokens each; a token is "
                                    "predicted from the earlier tokens of its window",
                         "max_eval_tokens": max_eval_tokens},
            "samples": {"n": n_samples, "prompt": prompt, "max_new_tokens": max_new_tokens,
                        "temperature": temperature, "top_k": top_k, "top_p": top_p,
                        "unit": "tokens of the model's tokenizer, continuation only"},
            "copy": {"n": COPY_N, "reference": source.get("reference"),
                     "definition": f"share of sampled token {COPY_N}-grams found in the "
                                   "reference text (hashed, 64-bit)",
                     "baseline": "the same share for the first 200k held-out tokens"},
        },
        "examples": list(samples[:8]),
    }


def _token_sets(model: Any, tokenizer: Any, text: str | Path | None,
                reference: str | Path | None, data_root: str | Path | None):
    """(held-out ids, training ids or None, their record) for a run or a folder."""

    def read(path: str | Path) -> np.ndarray:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: no such text file")
        body = p.read_text(encoding="utf-8")
        return np.asarray(tokenizer.encode(body, add_special_tokens=False), dtype=np.int64)

    held_out = train = None
    source: dict[str, Any] = {}
    if model.config is not None:  # a genforge run: its own split, from the token cache
        from genforge.modalities.text.data import load_text

        data = load_text(model.config.data, data_root)
        held_out, train = np.asarray(data.val), np.asarray(data.train)
        source = {"held_out": {"source": "the run's validation split", **data.record["split"],
                               "corpus": data.record["corpus"]},
                  "reference": "the run's training split"}
    if text is not None:
        held_out = read(text)
        source["held_out"] = {"source": "file", "path": str(text)}
    if reference is not None:
        train = read(reference)
        source["reference"] = str(reference)
    if held_out is None:
        raise ConfigError(f"{model.path}: not a genforge run, so pass the held-out text "
                          "(text=..., a UTF-8 file) and, for the copy rate, reference=...")
    return held_out, train, source


@torch.no_grad()
def held_out_nll(model: Any, ids: np.ndarray, context: int,
                 batch_size: int) -> tuple[float, int, int]:
    """(total nats, tokens predicted, characters predicted) over non-overlapping windows."""
    tokenizer = model.tokenizer
    count = (len(ids) - 1) // context  # windows of context + 1 tokens, sharing edge tokens
    if count == 0:
        raise DataError(f"held-out text of {len(ids)} tokens is shorter than one window of "
                        f"{context + 1}")
    index = np.arange(count)[:, None] * context + np.arange(context + 1)  # (W, T + 1)
    windows = torch.from_numpy(np.asarray(ids)[index].astype(np.int64))
    nats, chars = 0.0, 0
    for i in range(0, count, batch_size):
        batch = windows[i : i + batch_size]  # (b, T + 1)
        nats -= float(model.token_logprobs(batch).double().sum())
        chars += sum(len(tokenizer.decode(w[1:].tolist())) for w in batch)
    return nats, count * context, chars


def distinct_n(sequences: list[list[int]], n: int) -> float | None:
    grams = [tuple(s[i : i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def ngram_hashes(ids: np.ndarray, n: int, chunk: int = 1 << 20) -> np.ndarray:
    """A 64-bit polynomial hash of every n-gram of `ids` (len - n + 1,), in chunks."""
    ids = np.asarray(ids, dtype=np.uint64)
    if len(ids) < n:
        return np.zeros(0, np.uint64)
    powers = HASH_BASE ** np.arange(n - 1, -1, -1, dtype=np.uint64)  # wraps modulo 2^64
    grams = np.lib.stride_tricks.sliding_window_view(ids, n)  # (N - n + 1, n), no copy
    with np.errstate(over="ignore"):
        return np.concatenate([(grams[i : i + chunk] * powers).sum(1, dtype=np.uint64)
                               for i in range(0, len(grams), chunk)])


def ngram_set(ids: np.ndarray, n: int) -> np.ndarray:
    return np.unique(ngram_hashes(ids, n))  # sorted


def copy_rate(sequences: list, known: np.ndarray, n: int) -> float | None:
    hashes = np.concatenate([ngram_hashes(np.asarray(s), n) for s in sequences] or
                            [np.zeros(0, np.uint64)])
    if len(hashes) == 0 or len(known) == 0:
        return None
    where = np.searchsorted(known, hashes).clip(0, len(known) - 1)
    return float((known[where] == hashes).mean())


def write_text_report(metrics: dict[str, Any], out: str | Path,
                      run_dir: str | Path | None = None,
                      figures: dict[str, str] | None = None) -> dict[str, Path]:
    """out/metrics.json and out/report.html in the image report's style (an older evaluation
    there is moved aside, as for images); `figures` maps titles to image data URIs. Time
    series evaluations use it too (genforge.eval.series.evaluate)."""
    import html
    import json

    from genforge.eval.images.report import PAGE, losses_section, prepare_out_dir

    out = Path(out)
    moved = prepare_out_dir(out)
    if moved is not None:
        metrics["previous_eval"] = str(moved)
    paths = {"metrics": out / "metrics.json", "report": out / "report.html"}
    paths["metrics"].write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n",
                                encoding="utf-8")

    def table(record: dict[str, Any]) -> str:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td>"
                       "</tr>" for k, v in _flatten(record).items())
        return f"<table class=record>{rows}</table>"

    title = f"genforge eval: {metrics['model']['path']}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{metrics['created']} · genforge {metrics['genforge']} · torch "
             f"{metrics['torch']} · step {metrics['model']['step']}</p>",
             "<h2>Metrics</h2>", table(metrics["metrics"])]
    parts += [f"<h2>{html.escape(k)}</h2><img alt='{html.escape(k)}' src='{v}'>"
              for k, v in (figures or {}).items()]
    if metrics["examples"]:
        parts.append("<h2>Samples</h2>")
        parts += [f"<pre>{html.escape(t)}</pre>" for t in metrics["examples"]]
    if run_dir:
        parts.append(losses_section(Path(run_dir)))
    parts.append("<h2>Protocol</h2>")
    parts += [f"<h3>{html.escape(k)}</h3>" + (table(v) if isinstance(v, dict) else
                                                f"<p>{html.escape(_fmt(v))}</p>")
              for k, v in metrics["protocol"].items()]
    paths["report"].write_text(PAGE.format(title=html.escape(title), body="\n".join(parts)),
                               encoding="utf-8")
    return paths


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: one table row per number."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def evaluate_text_run(model: Any, options: Any, out: str,
                      n_given: bool) -> tuple[list[str], dict[str, Path]]:
    """The text modality's evaluator (genforge.eval.runs); (summary lines, written paths)."""
    from genforge.eval.runs import precision_field, summary_line

    metrics = evaluate_text(model, n_samples=options.n if n_given else 64, seed=options.seed,
                            data_root=options.data_root)
    metrics["precision"] = precision_field(options)
    paths = write_text_report(metrics, out, run_dir=model.path)
    keys = ("val_loss", "perplexity", "bits_per_char", "distinct_2", "copy_rate_8")
    return [summary_line(metrics["metrics"], keys)], paths
