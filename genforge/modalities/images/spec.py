"""The images modality: what the engines ask of images (genforge.modalities.base)."""

from __future__ import annotations

from genforge.config import DataConfig
from genforge.modalities.base import Modality


class Images(Modality):
    name = "images"
    description = "uint8 images: MNIST, Fashion-MNIST, CIFAR-10, folders, npz"
    data_config = DataConfig
    loader = "genforge.modalities.images.data:load_images"
    output = "genforge.modalities.images.data:ImageOutput"
    evaluator = "genforge.eval.runs:evaluate_images"
    http_formats = ("png", "json", "array")
    watermark_stage = "write"
    watermark_scheme = "genforge.labelling.image_watermark:SCHEME"


MODALITY = Images()
