"""The text modality: what the engines ask of text (genforge.modalities.base)."""

from __future__ import annotations

import json
from typing import Any

from genforge.modalities.base import Labeller, Modality
from genforge.modalities.text.data import TextDataConfig


class Text(Modality):
    name = "text"
    description = "UTF-8 corpora, char or byte-level BPE tokens"
    data_config = TextDataConfig
    loader = "genforge.modalities.text.data:load_text"
    output = "genforge.modalities.text.data:TextOutput"
    evaluator = "genforge.eval.text.evaluate:evaluate_text_run"
    prints = True
    http_default_n = 1
    watermark_stage = "sample"
    watermark_scheme = "genforge.labelling.text_watermark:SCHEME"

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Labeller) -> tuple[bytes, str]:
        body = json.dumps({**meta, "texts": list(samples)}, ensure_ascii=False).encode()
        return label(".json", body), "application/json"

    def format_terminal(self, samples: Any, *, streamed: bool = False) -> str:
        if streamed:  # the first text is on the terminal already; the others follow it
            return "\n" + "".join(f"\n=== sample {i} ===\n{t}\n"
                                  for i, t in enumerate(samples[1:], 1))
        from genforge.modalities.text.data import format_texts

        return format_texts(samples)


MODALITY = Text()
