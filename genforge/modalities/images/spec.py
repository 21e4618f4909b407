"""The images modality: what the engines ask of images (genforge.modalities.base)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from genforge.config import DataConfig
from genforge.modalities.base import HttpCompletion, Labeller, Modality


class Images(Modality):
    name = "images"
    description = "uint8 images: MNIST, Fashion-MNIST, CIFAR-10, folders, npz"
    data_config = DataConfig
    loader = "genforge.modalities.images.data:load_images"
    output = "genforge.modalities.images.data:ImageOutput"
    evaluator = "genforge.eval.images.report:evaluate_images_run"
    datasets = "genforge.modalities.images.sources:SOURCES"
    completes = "pixels"
    http_formats = ("png", "json", "array")
    watermark_stage = "write"
    watermark_scheme = "genforge.labelling.image_watermark:SCHEME"

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Labeller) -> tuple[bytes, str]:
        from genforge.modalities.images.http import images_body

        return images_body(samples, fmt, meta, label)

    def http_model_info(self, data_info: dict[str, Any]) -> dict[str, Any]:
        return {"image": {"channels": int(data_info["channels"]),
                          "size": int(data_info["image_size"])}}

    def http_completion(self, model: Any, model_id: str, given: dict[str, Any],
                        options: dict[str, Any], seed: int, max_upload: int) -> HttpCompletion:
        from genforge.modalities.images.http import inpainting

        return inpainting(model, model_id, given, options, seed, max_upload)

    def check_watermark(self, data_info: dict[str, Any], out: Path, n: int,
                        nrow: int | None) -> None:
        from genforge.labelling.image_watermark import check_size

        side = int(data_info.get("image_size", 0))
        if out.suffix == ".png":  # the grid is the image that carries the mark
            cols = nrow or math.ceil(math.sqrt(n))
            check_size(math.ceil(n / cols) * (side + 2) + 2, cols * (side + 2) + 2)
        else:
            check_size(side, side)


MODALITY = Images()
