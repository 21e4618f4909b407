"""The Modality contract: what the server and the CLI ask of every registered modality."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

from genforge.errors import ConfigError
from genforge.modalities.base import Modality
from genforge.registry import modalities

# Written by hand from the HTTP docs (serve/app.py, modalities/<m>/http.py): each format a
# modality serves and the media type its body has. The first format is the default.
MEDIA = {
    "images": {"png": "image/png", "json": "application/json", "array": "application/json"},
    "text": {"json": "application/json"},
    "series": {"csv": "text/csv", "json": "application/json"},
    "tables": {"csv": "text/csv", "json": "application/json"},
    "audio": {"json": "application/json"},
}
SAMPLES = {  # two small decoded samples of each
    "images": np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4),
    "text": ["héllo", "world"],
    "series": np.array([[[1.0], [2.5]], [[3.0], [-4.0]]]),
    "tables": pd.DataFrame({"age": [30, 41], "sex": ["f", "m"]}),
    "audio": np.array([[0.0, 0.5, -0.5], [1.0, -1.0, 0.25]], np.float32),
}
SUFFIX = {"image/png": ".png", "application/json": ".json", "text/csv": ".csv"}


def _labelled(suffixes: list[str]):
    def label(suffix: str, body: bytes) -> bytes:
        suffixes.append(suffix)
        return body
    return label


def test_every_modality_of_the_registry_is_pinned_here():
    assert set(modalities()) >= set(MEDIA)


@pytest.mark.parametrize("name", sorted(MEDIA))
def test_http_body_has_the_media_type_its_format_names(name):
    spec = modalities()[name]
    assert tuple(spec.http_formats) == tuple(MEDIA[name])
    meta = {"model": "m", "n": 2, "seed": 7}
    for fmt, media in MEDIA[name].items():
        suffixes: list[str] = []
        body, got = spec.http_body(SAMPLES[name], fmt, meta, _labelled(suffixes))
        assert got == media, (name, fmt)
        assert suffixes[-1] == SUFFIX[media]  # the whole body is labelled as what it is
        if media == "image/png":
            assert body.startswith(b"\x89PNG\r\n\x1a\n")
        elif media == "text/csv":
            header = next(csv.reader(io.StringIO(body.decode())))
            assert header[0] in ("sample", "age")
        else:
            assert json.loads(body)["seed"] == 7


def test_http_bodies_carry_the_samples_values():
    spec = modalities()
    series = spec["series"].http_body(SAMPLES["series"], "csv", {}, lambda s, b: b)[0].decode()
    assert series == "sample,step,y0\n0,1,1\n0,2,2.5\n1,1,3\n1,2,-4\n"
    tables = spec["tables"].http_body(SAMPLES["tables"], "csv", {}, lambda s, b: b)[0].decode()
    assert tables == "age,sex\n30,f\n41,m\n"
    text = json.loads(spec["text"].http_body(SAMPLES["text"], "json", {}, lambda s, b: b)[0])
    assert text == {"texts": ["héllo", "world"]}
    audio = spec["audio"].http_meta({"sample_rate": 8000})
    assert audio == {"sample_rate": 8000}
    image = spec["images"].http_body(SAMPLES["images"], "array", {}, lambda s, b: b)[0]
    assert json.loads(image)["shape"] == [2, 3, 4, 4]


# What the CLI did by name before the modalities answered it (cli/sample.py, git 1eb5548):
# only text printed and was marked while sampling, only images were marked in the file
# written, only tables sampled in chunks, refused --label and completed cells.
CLI = {  # name: (prints, in_chunks, watermark_stage, completes, refuses --label)
    "images": (False, False, "write", "pixels", False),
    "text": (True, False, "sample", None, False),
    "series": (False, False, None, None, False),
    "tables": (False, True, None, "cells", True),
    "audio": (False, False, None, None, False),
}


@pytest.mark.parametrize("name", sorted(CLI))
def test_what_the_cli_asks_is_what_it_did_by_name(name):
    m = modalities()[name]
    assert (m.prints, m.in_chunks, m.watermark_stage, m.completes,
            m.label_refusal is not None) == CLI[name]
    assert (m.watermark_scheme is None) == (m.watermark_stage is None)


def test_the_terminal_shows_text_as_the_cli_always_has():
    text = modalities()["text"]
    assert text.prints and text.format_terminal(["a"]) == "a\n"
    assert text.format_terminal(["a", "b"]) == "=== sample 0 ===\na\n=== sample 1 ===\nb\n"
    assert text.format_terminal(["a", "b"], streamed=True) == "\n\n=== sample 1 ===\nb\n"
    with pytest.raises(ConfigError, match="written to files"):
        modalities()["series"].format_terminal([1.0])


def test_a_plugin_modality_needs_no_http_code():
    class Points(Modality):
        name = "points"

    suffixes: list[str] = []
    body, media = Points().http_body(np.array([[0.5, 1.0]]), "json", {"n": 1},
                                     _labelled(suffixes))
    assert (json.loads(body), media, suffixes) == ({"n": 1, "samples": [[0.5, 1.0]]},
                                                   "application/json", [".json"])
    with pytest.raises(ConfigError, match="m1 \\(points\\) cannot complete"):
        Points().http_completion(None, "m1", {}, {}, 0, 1000)


@pytest.mark.parametrize("name, missing", [("images", "image: required"),
                                           ("tables", "rows: required")])
def test_completing_modalities_name_the_missing_upload(name, missing):
    spec = modalities()[name]
    assert spec.completes is not None
    with pytest.raises(ConfigError, match=missing):
        spec.http_completion(object(), "m1", {}, {}, 0, 1000)
