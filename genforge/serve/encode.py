"""Samples to response bodies, and uploads to arrays, for each modality.

images: a PNG grid, or JSON with one base64 PNG a sample, or JSON raw uint8 arrays;
text: JSON texts, or server-sent events; series: CSV (sample, step, one column a dimension)
or JSON; tables: CSV or JSON rows (pandas DataFrames); audio: JSON waves and their rate.
`label` (genforge.serve.label) puts the provenance record into each body: PNG metadata, a
JSON `provenance` field, a CSV first line `# provenance: {...}`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from typing import Any

import numpy as np
import torch
from PIL import Image

from genforge.errors import ConfigError
from genforge.serve.label import Labeller, unlabelled

FORMATS = {"images": ("png", "json", "array"), "text": ("json",), "series": ("csv", "json"),
           "tables": ("csv", "json"), "audio": ("json",)}


def default_format(modality: str) -> str:
    return FORMATS.get(modality, ("json",))[0]


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (C, H, W) or (H, W, C) grid -> PNG."""
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def images_body(images: Any, fmt: str, meta: dict[str, Any],
                label: Labeller | None = None) -> tuple[bytes, str]:
    from genforge.modalities.images.grids import make_grid

    label = unlabelled(label)
    array = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
    if fmt == "png":
        return label(".png", png_bytes(make_grid(array))), "image/png"
    if fmt == "json":  # each PNG carries its record, and so does the document
        body = {**meta, "images": [base64.b64encode(label(".png", png_bytes(x))).decode()
                                   for x in array]}
    else:
        body = {**meta, "shape": list(array.shape), "dtype": "uint8", "data": array.tolist()}
    return label(".json", json.dumps(body).encode()), "application/json"


def series_body(paths: Any, fmt: str, meta: dict[str, Any],
                label: Labeller | None = None) -> tuple[bytes, str]:
    label = unlabelled(label)
    array = np.asarray(paths.cpu() if isinstance(paths, torch.Tensor) else paths, np.float64)
    array = array.reshape(array.shape[0], array.shape[1], -1)  # (n, horizon, D)
    if fmt == "json":
        return label(".json", json.dumps({**meta, "paths": array.tolist()}).encode()), \
            "application/json"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample", "step", *[f"y{d}" for d in range(array.shape[2])]])
    for i, path in enumerate(array):
        for t, row in enumerate(path):
            writer.writerow([i, t + 1, *[f"{v:.6g}" for v in row]])
    return label(".csv", buf.getvalue().encode()), "text/csv"


def tables_body(frame: Any, fmt: str, meta: dict[str, Any],
                label: Labeller | None = None) -> tuple[bytes, str]:
    label = unlabelled(label)
    if fmt == "json":
        rows = json.loads(frame.to_json(orient="records"))
        return label(".json", json.dumps({**meta, "rows": rows}).encode()), "application/json"
    return label(".csv", frame.to_csv(index=False).encode()), "text/csv"


def body_for(modality: str, samples: Any, fmt: str, meta: dict[str, Any],
             label: Labeller | None = None) -> tuple[bytes, str]:
    if modality == "images":
        return images_body(samples, fmt, meta, label)
    if modality == "series":
        return series_body(samples, fmt, meta, label)
    if modality == "tables":
        return tables_body(samples, fmt, meta, label)
    if modality == "audio":  # waves in [-1, 1] (n, L); meta carries the sample rate
        body = json.dumps({**meta, "waves": np.asarray(samples, np.float32).tolist()}).encode()
        return unlabelled(label)(".json", body), "application/json"
    body = json.dumps({**meta, "texts": list(samples)}, ensure_ascii=False).encode()
    return unlabelled(label)(".json", body), "application/json"


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; data as JSON (so line breaks in a token stay in one event)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


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


def read_rows(field: str, text: str) -> Any:
    """CSV text with a header -> a DataFrame; a ConfigError naming `field` otherwise."""
    import pandas as pd

    if text.startswith("# provenance: "):  # a CSV this server sent: its record line goes
        text = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as err:
        raise ConfigError(f"{field}: not CSV with a header row ({str(err).splitlines()[0]})") \
            from None
    if frame.empty:
        raise ConfigError(f"{field}: no rows under the header")
    return frame
