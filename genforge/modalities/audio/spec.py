"""The audio modality: what the engines ask of audio (genforge.modalities.base)."""

from __future__ import annotations

from genforge.modalities.audio.data import AudioDataConfig
from genforge.modalities.base import Modality


class Audio(Modality):
    name = "audio"
    description = "WAV folders (FSDD spoken digits) as log-mel images; sound by Griffin-Lim"
    data_config = AudioDataConfig
    loader = "genforge.modalities.audio.data:load_audio"
    output = "genforge.modalities.audio.data:AudioOutput"
    evaluator = "genforge.eval.runs:evaluate_audio_run"


MODALITY = Audio()
