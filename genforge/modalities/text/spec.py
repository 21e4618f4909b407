"""The text modality: what the engines ask of text (genforge.modalities.base)."""

from __future__ import annotations

from genforge.modalities.base import Modality
from genforge.modalities.text.data import TextDataConfig


class Text(Modality):
    name = "text"
    description = "UTF-8 corpora, char or byte-level BPE tokens"
    data_config = TextDataConfig
    loader = "genforge.modalities.text.data:load_text"
    output = "genforge.modalities.text.data:TextOutput"
    evaluator = "genforge.eval.runs:evaluate_text_run"
    prints = True
    http_default_n = 1
    watermark_stage = "sample"
    watermark_scheme = "genforge.labelling.text_watermark:SCHEME"


MODALITY = Text()
