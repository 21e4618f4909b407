"""Watermarks at the stage the modality names (`Modality.watermark_stage`): "sample" (text:
green-list logits while sampling) or "write" (images: the file written carries the mark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genforge.errors import ConfigError


def secret(watermark: str | bytes) -> bytes:
    """The key bytes of a watermark secret; an empty one is refused."""
    from genforge.labelling import secret_key

    key = secret_key(watermark)
    if not key:
        raise ConfigError("watermark: an empty key; set labelling.key or GENFORGE_WATERMARK_KEY")
    return key


def while_sampling(watermark: str | bytes, stage: str | None, modality: str,
                   path: Path) -> list[Any]:
    """The logits processors that mark a model's samples as they are drawn (stage
    "sample"); a model of another stage is refused, saying where its mark goes."""
    if stage != "sample":
        raise ConfigError(f"{path}: a {modality} model is watermarked when its samples are "
                          "written (write(..., watermark=key))" if stage == "write" else
                          f"{path}: watermarks apply to images and text, not {modality}")
    from genforge.labelling.text_watermark import WatermarkLogitsProcessor

    return [WatermarkLogitsProcessor(secret(watermark))]


def when_writing(watermark: str | bytes, stage: str | None, modality: str) -> dict[str, Any]:
    """The `write` keywords that mark the file written (stage "write"); others refused."""
    if stage != "write":
        raise ConfigError(f"--watermark: {modality} samples are not marked when written"
                          + (f" ({modality} is marked while sampling: "
                             "sample(..., watermark=key))" if stage == "sample" else ""))
    return {"watermark": secret(watermark)}
