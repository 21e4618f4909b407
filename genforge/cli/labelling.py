"""`genforge inspect` and `genforge detect`: read provenance records and look for watermarks.

    genforge inspect grid.png table.csv story.txt     # one line per file
    genforge detect w.png photo.jpg                    # image watermark: bits matched, p-value
    genforge detect --text t.txt --run runs/gpt1       # text watermark: z-score, p-value

The key (for HMAC-signed records and for watermarks) is the run's labelling.key when --run is
given, else GENFORGE_WATERMARK_KEY.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from genforge.cli.common import user_errors
from genforge.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _key(run: str | None) -> bytes | None:
    from genforge.labelling import secret_key

    if run is None:
        return secret_key()
    from genforge.api import load

    return load(run).labelling_key()


def inspect_command(
    files: Annotated[list[str], typer.Argument(help="Files to read the provenance of.")],
    run: Annotated[str | None, typer.Option(help="Check HMACs with this run's labelling.key "
                                                 "(default: GENFORGE_WATERMARK_KEY).")] = None,
) -> None:
    """Show each file's provenance record (generator, run, config and weights hashes, seed,
    time, the "AI-generated" label) and whether it checks out: VERIFIED, INTACT or TAMPERED."""
    from genforge.errors import DataError
    from genforge.labelling import describe, read_provenance

    with user_errors():
        key = _key(run)
    for name in files:
        path = Path(name)
        if not path.is_file():
            typer.echo(f"{name}: no such file")
            continue
        try:
            typer.echo(describe(name, read_provenance(path, key=key)))
        except DataError as err:  # a damaged or mislabelled file: its own line, go on
            typer.echo(f"{name}: unreadable ({err})")


def detect_command(
    files: Annotated[list[str] | None, typer.Argument(help="Images to test.")] = None,
    text: Annotated[list[str] | None, typer.Option(
        help="A text file (.txt, .jsonl, .json) to test; needs --run for the tokenizer.")] = None,
    run: Annotated[str | None, typer.Option(help="The run (or transformers folder) whose "
                                                 "tokenizer and labelling.key to use.")] = None,
) -> None:
    """Look for genforge's invisible watermarks: images (bits matched, binomial p-value) and
    text (green-list z-score, p-value); one line per file."""
    from genforge.labelling import KEY_ENV

    if not files and not text:
        raise typer.BadParameter("give image files, or --text FILE --run RUN")
    with user_errors():
        if text and run is None:
            raise ConfigError("--text needs --run RUN: the tokenizer of the model that wrote it")
        model = _load(run) if run else None
        key = model.labelling_key() if model is not None else _key(None)
        if not key:
            raise ConfigError(f"detect needs the watermark key: set {KEY_ENV} (or labelling.key "
                              "in the run's config and pass --run)")
    for name in files or []:
        typer.echo(_detect_image(Path(name), key))
    for name in text or []:
        typer.echo(_detect_text(Path(name), model, key))


def _load(run: str) -> Any:
    from genforge.api import load

    return load(run)


def _detect_image(path: Path, key: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    from genforge.labelling.image_watermark import MIN_SIZE, detect

    if not path.is_file():
        return f"{path}: no such file"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"{path}: not an image; for text use --text {path} --run RUN"
    try:
        with Image.open(path) as im:
            im.load()
            if min(im.size) < MIN_SIZE:
                return (f"{path}: {im.size[0]}x{im.size[1]} is below the watermark's minimum "
                        f"{MIN_SIZE}x{MIN_SIZE}: cannot hold one")
            return f"{path}: {detect(im, key).line()}"
    except (UnidentifiedImageError, OSError) as err:
        return f"{path}: unreadable image ({type(err).__name__})"


def read_texts(path: Path) -> str:
    """The generated text of a sample file: .txt (less '=== sample i ===' lines), .jsonl
    ("text" fields) or .json (a list of texts, or an object with "samples")."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return "\n".join(json.loads(line).get("text", "") for line in raw.splitlines()
                         if line.strip())
    if path.suffix == ".json":
        doc = json.loads(raw)
        doc = doc.get("samples", []) if isinstance(doc, dict) else doc
        return "\n".join(str(t) for t in doc)
    return "\n".join(line for line in raw.splitlines() if not line.startswith("=== sample "))


def _detect_text(path: Path, model: Any, key: bytes) -> str:
    from genforge.labelling.text_watermark import detect_tokens

    if not path.is_file():
        return f"{path}: no such file"
    if model.tokenizer is None:
        return f"{path}: --run {model.path} is not a text model (no tokenizer)"
    try:
        body = read_texts(path)
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        return f"{path}: unreadable text ({type(err).__name__})"
    ids = model.tokenizer.encode(body, add_special_tokens=False)
    if len(ids) < 2:
        return f"{path}: too short to test ({len(ids)} tokens)"
    return f"{path}: {detect_tokens(ids, key).line()} ({len(ids)} tokens)"
