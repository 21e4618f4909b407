"""`genforge convert`: other libraries' checkpoints -> transformers folders genforge can load.

    genforge convert llama2c stories260K.bin --tokenizer tok512.bin --out models/stories260K
    genforge sample models/stories260K --prompt "Once upon a time" --stream
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genforge.cli.common import user_errors
from genforge.errors import ConfigError

FORMATS = ("llama2c",)


def convert_command(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="Source format: llama2c.")],
    checkpoint: Annotated[str, typer.Argument(help="The checkpoint file (model.bin).")],
    out: Annotated[str, typer.Option(help="The transformers folder to write.")],
    tokenizer: Annotated[str | None, typer.Option(
        help="llama2c: its tokenizer .bin (default: tokenizer.bin beside the checkpoint).")] = None,
):
    """Convert a checkpoint into a transformers folder (config.json, safetensors, tokenizer)."""
    with user_errors():
        if fmt not in FORMATS:
            raise ConfigError(f"format {fmt!r}: allowed values are {', '.join(FORMATS)}")
        from genforge.families.ar.convert import convert_llama2c

        tok = Path(tokenizer) if tokenizer else Path(checkpoint).with_name("tokenizer.bin")
        if not tok.exists():
            raise ConfigError(f"{tok}: no such tokenizer file; pass --tokenizer (llama2.c's "
                              "tokenizer.bin, or tok512.bin etc. for a custom vocabulary)")
        folder = convert_llama2c(checkpoint, tok, out)
    typer.echo(f"wrote {folder}; try: genforge sample {folder} --prompt \"Once upon a time\"")
