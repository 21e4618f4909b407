"""The audio modality: what the engines ask of audio (genforge.modalities.base)."""

from __future__ import annotations

import json
from typing import Any

from genforge.modalities.audio.data import AudioDataConfig
from genforge.modalities.base import Labeller, Modality


class Audio(Modality):
    name = "audio"
    description = "WAV folders (FSDD spoken digits) as log-mel images; sound by Griffin-Lim"
    data_config = AudioDataConfig
    loader = "genforge.modalities.audio.data:load_audio"
    output = "genforge.modalities.audio.data:AudioOutput"
    evaluator = "genforge.eval.audio.evaluate:evaluate_audio_run"

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Labeller) -> tuple[bytes, str]:
        import numpy as np

        # waves in [-1, 1] (n, L); `meta` carries the sample rate (http_meta)
        body = json.dumps({**meta, "waves": np.asarray(samples, np.float32).tolist()}).encode()
        return label(".json", body), "application/json"

    def http_meta(self, data_info: dict[str, Any]) -> dict[str, Any]:
        return {"sample_rate": int(data_info["sample_rate"])}


MODALITY = Audio()
