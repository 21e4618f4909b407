"""Any local transformers causal-LM folder (config.json + weights + tokenizer) as the parts of
a genforge model; `genforge.load(folder)` wraps them, so `genforge sample FOLDER --prompt ...`
and `genforge eval FOLDER` work on it as on a run.

    model = genforge.load("models/stories260K")
    model.sample(4, seed=0, prompt="Once upon a time", max_new_tokens=100, temperature=0.8)

Nothing is downloaded: the folder must hold everything (HF_HUB_OFFLINE is set while loading).
Sampling defaults come from the folder's generation_config.json where it has one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from genforge.errors import ConfigError
from genforge.families.ar.generate import SamplingOptions
from genforge.families.ar.nets import context_length, quiet_transformers
from genforge.families.ar.objective import ARObjective


class PretrainedObjective(ARObjective):
    """ARObjective's sampling, export and writing, around a loaded model and tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, data_info: dict[str, Any]) -> None:
        self.cfg = None
        self.data_info = data_info
        self.tokenizer = tokenizer
        self.nets = {"lm": model}
        self.prompt = ""
        self._prompts = None
        g = model.generation_config
        greedy = not g.do_sample  # transformers' meaning of do_sample=False
        self.defaults = SamplingOptions(
            max_new_tokens=g.max_new_tokens or 200,
            temperature=0.0 if greedy else (g.temperature or 1.0),
            top_k=g.top_k if g.do_sample else None,
            top_p=g.top_p if g.do_sample and g.top_p not in (None, 1.0) else None,
            repetition_penalty=g.repetition_penalty or 1.0)

    def _generation_defaults(self) -> dict[str, Any]:
        return {}  # keep the folder's own generation_config on export


def load_pretrained(folder: str | Path) -> tuple[PretrainedObjective, dict[str, Any]]:
    """Load `folder` with AutoModelForCausalLM and AutoTokenizer, offline, in float32:
    (the objective that samples it, its data facts)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                         dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        kind = config.get("model_type", "unknown")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{folder}: not a transformers causal-LM folder with its tokenizer "
                          f"(model_type {kind!r}): {first}") from None
    model.eval()
    info = {"kind": "text", "source": "transformers folder", "path": str(folder),
            "model_type": config.get("model_type"), "vocab_size": len(tokenizer),
            "block_size": context_length(model)}
    facts = folder / "genforge.json"  # written by genforge's export: tokenizer kind, corpus
    if facts.exists():
        info = {**json.loads(facts.read_text()), **info}
    return PretrainedObjective(model, tokenizer, info), info

