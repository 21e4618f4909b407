"""Images over HTTP: response bodies of samples, and the uploads of `POST /v1/complete`.

Formats: `png` (one grid), `json` (one base64 PNG a sample; each PNG carries its provenance
record, and so does the document) and `array` (JSON raw uint8 arrays).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

import numpy as np
import torch
from PIL import Image

from genforge.errors import ConfigError
from genforge.modalities.base import HttpCompletion, Labeller


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (C, H, W) or (H, W, C) grid -> PNG."""
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def images_body(images: Any, fmt: str, meta: dict[str, Any],
                label: Labeller) -> tuple[bytes, str]:
    from genforge.modalities.images.grids import make_grid

    array = _numpy(images)
    if fmt == "png":
        return label(".png", png_bytes(make_grid(array))), "image/png"
    if fmt == "json":  # each PNG carries its record, and so does the document
        body = {**meta, "images": [base64.b64encode(label(".png", png_bytes(x))).decode()
                                   for x in array]}
    else:
        body = {**meta, "shape": list(array.shape), "dtype": "uint8", "data": array.tolist()}
    return label(".json", json.dumps(body).encode()), "application/json"


def inpainting(model: Any, model_id: str, given: dict[str, Any], options: dict[str, Any],
               seed: int, max_upload: int) -> HttpCompletion:
    """An uploaded image (`image`, base64) and its mask (`mask`, a name, or `mask_image`, a
    PNG white where pixels are missing) -> the model's `complete`; answers a PNG, or JSON
    with it (`format: json`)."""
    if "image" not in given:
        raise ConfigError("image: required (a base64 PNG or JPEG)")
    info = model.data_info
    x = decode_image("image", given["image"], int(info["channels"]), int(info["image_size"]),
                     max_bytes=max_upload)
    mask = _mask(given, info, max_upload)
    label = given.get("label")
    if isinstance(label, list) and len(label) != 1:
        raise ConfigError(f"label: {len(label)} labels for n=1; give one, or one a sample")
    if label is None and int(getattr(model, "num_classes", 0) or 0):  # the VAE's needs one
        raise ConfigError(f"label: {model_id} is class-conditional; give the image's label")

    def body(filled: Any, label: Labeller) -> tuple[bytes, str]:
        png = label(".png", png_bytes(_numpy(filled)[0]))
        if given.get("format") == "json":
            doc = json.dumps({"model": model_id, "seed": seed,
                              "image": base64.b64encode(png).decode()}).encode()
            return label(".json", doc), "application/json"
        return png, "image/png"

    return HttpCompletion(
        run=lambda: model.complete(x[None], mask, seed=seed, label=label, **options),
        record={"operation": "complete", "mask": given.get("mask", "mask_image"),
                "input": "upload"},
        body=body)


def decode_image(field: str, text: str, channels: int, size: int, *,
                 max_bytes: int) -> np.ndarray:
    """A base64 PNG/JPEG upload -> uint8 (C, H, W) of the model's size; a ConfigError naming
    `field` for anything else."""
    try:
        raw = base64.b64decode(text.split(",", 1)[-1], validate=True)  # data: URLs too
    except (binascii.Error, ValueError):
        raise ConfigError(f"{field}: not base64") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{field}: {len(raw)} bytes; at most {max_bytes}")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format not in ("PNG", "JPEG"):
                raise ConfigError(f"{field}: a {im.format} image; send a PNG or JPEG")
            if im.size != (size, size):  # checked before decoding a single pixel
                raise ConfigError(f"{field}: {im.size[0]}x{im.size[1]} pixels; this model "
                                  f"takes {size}x{size}")
            array = np.array(im.convert("L" if channels == 1 else "RGB"))  # writable
    except ConfigError:
        raise
    except Exception:  # PIL's many ways of saying "not an image"
        raise ConfigError(f"{field}: not a readable PNG or JPEG image") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _mask(given: dict[str, Any], info: dict[str, Any], max_upload: int) -> torch.Tensor:
    """The mask of /v1/complete: a named one (never a file: the schema's pattern allows no
    path) or an uploaded picture, white where pixels are missing. (1, 1, H, W) bool."""
    size = int(info["image_size"])
    if ("mask" in given) == ("mask_image" in given):
        raise ConfigError("mask: give either mask (a name) or mask_image (a PNG), not both")
    if "mask" in given:
        from genforge.modalities.images.masks import make_mask

        return make_mask(given["mask"], (1, int(info["channels"]), size, size),
                         seed=given.get("seed", 0))
    pixels = decode_image("mask_image", given["mask_image"], 1, size, max_bytes=max_upload)
    return torch.from_numpy(pixels >= 128)[None]  # (1, 1, H, W)


def _numpy(values: Any) -> np.ndarray:
    return np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
