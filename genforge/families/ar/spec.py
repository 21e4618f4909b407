"""The ar family as the registry sees it (genforge.families.spec)."""

from __future__ import annotations

from genforge.families.ar.config import ARConfig
from genforge.families.spec import FamilySpec
from genforge.options import Option

FAMILY = FamilySpec(
    name="ar",
    description="Autoregressive text: GPT-2/Llama-style decoders, char or byte-level BPE",
    model_config=ARConfig,
    objective="genforge.families.ar.objective:ARObjective",
    modalities=("text",),
    sample_options=(
        Option("prompt", str, "Text: the prompt the samples continue.", default=""),
        Option("max_new_tokens", int, "Text: tokens to add.", minimum=1, maximum=100000),
        Option("temperature", float, "Text: temperature (0 = greedy).", 0.0, 100.0),
        Option("top_k", int, "Text: keep the k likeliest tokens.", minimum=1),
        Option("top_p", float, "Text: nucleus top-p.", 0.0, 1.0, exclusive_minimum=True),
        Option("repetition_penalty", float, "Text: repetition penalty.", 0.0, 100.0,
               exclusive_minimum=True),
        Option("stop", list, "Text: stop string(s)."),
    ),
)
