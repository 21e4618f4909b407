"""`genforge sample` and `genforge complete`: thin adapters over GenerativeModel.

The family-specific flags of `sample` and `complete` are made from the options the families
declare (genforge.registry.sample_options, complete_options), the same definitions the
server's request fields come from; a flag is checked by its option and passed on only when
given, and a family that does not take it refuses it in one line.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from genforge.cli.common import user_errors
from genforge.errors import ConfigError
from genforge.options import Option
from genforge.registry import complete_options, sample_options


def sample(run: str, n: int | None, seed: int, label: int | None, out: str | None,
           nrow: int | None, device: str, stream: bool, watermark: bool = False,
           no_provenance: bool = False, precision: str = "auto", **given: Any) -> None:
    """Draw samples from a trained run (images, text or series paths) into --out. Every file
    carries a provenance record (--no-provenance skips it); --watermark adds an invisible
    keyed watermark to images and text (key: the run's labelling.key or
    GENFORGE_WATERMARK_KEY)."""
    from genforge.api import load

    options = {k: v for k, v in given.items() if v is not None}  # checked by the flags' wrapper
    with user_errors():
        model = load(run, device=device)
        modality = model.modality_spec
        model.precision = precision  # tables sample in chunks, outside `sample`
        out = out or model.output.default_out
        n = n if n is not None else model.output.default_n
        if not modality.prints and (stream or out == "-"):
            raise ConfigError("--stream and --out - (the terminal) apply to text models only; "
                              f"{model.modality} samples go to "
                              f"{', '.join(model.output.suffixes)} files")
        if stream and out == "-":
            options["on_text"] = _print_piece  # the first text, as its tokens come
        key = _watermark_key(model, out, n, nrow) if watermark else None
        if label is not None and modality.label_refusal:
            raise ConfigError(f"--label: {modality.label_refusal}")
        if modality.in_chunks:  # chunk by chunk into the file: bounded memory for any n
            samples = model.sample_chunks(n, seed=seed, **options)
        else:
            samples = model.sample(n, seed=seed, label=label, watermark=key if
                                   modality.watermark_stage == "sample" else None, **options)
        if out != "-":
            record = None if no_provenance else model.provenance_record(
                seed=seed, **({"watermark": _scheme(modality)} if key else {}))
            model.write(samples, Path(out), nrow=nrow, provenance=record,
                        watermark=key if modality.watermark_stage == "write" else None)
    if out != "-":
        typer.echo(f"wrote {n} samples to {out}")
    else:
        sys.stdout.write(modality.format_terminal(samples, streamed=stream))
    sys.stdout.flush()


def _watermark_key(model: Any, out: str, n: int, nrow: int | None) -> bytes:
    """The run's watermark key; refuses models and image sizes the watermark cannot take
    before any sampling is done."""
    from genforge.labelling import KEY_ENV
    from genforge.registry import modalities

    if model.modality_spec.watermark_stage is None:
        marked = [m.name for m in modalities().values() if m.watermark_stage is not None]
        raise ConfigError(f"--watermark: applies to {' and '.join(marked)}, not "
                          f"{model.modality}")
    key = model.labelling_key()
    if not key:
        raise ConfigError(f"--watermark needs a key: set labelling.key in the run's config or "
                          f"the {KEY_ENV} environment variable")
    model.modality_spec.check_watermark(model.data_info, Path(out), n, nrow)
    return key


def _scheme(modality: Any) -> str:
    """The name of the watermark scheme `modality` marks its samples with."""
    from genforge.modalities.base import resolve

    return str(resolve(modality.watermark_scheme))


def _print_piece(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


SAMPLE_FLAGS = [  # `sample`'s flags besides its family options
    ("run", Annotated[str, typer.Argument(help="Run folder (or a transformers folder).")],
     inspect.Parameter.empty),
    ("n", Annotated[int | None, typer.Option(help="Number of samples (the modality's "
                                                  "default: 64 images, 1 text).")], None),
    ("seed", Annotated[int, typer.Option(help="Random seed.")], 0),
    ("label", Annotated[int | None, typer.Option(help="Class label (conditional "
                                                      "models).")], None),
    ("out", Annotated[str | None, typer.Option(help="A .png grid or an .npz; text: .txt, "
                                                    ".jsonl or - (the terminal); series: "
                                                    ".csv or .npz.")], None),
    ("nrow", Annotated[int | None, typer.Option(help="Images per grid row.")], None),
    ("device", Annotated[str, typer.Option(help="cpu or cuda.")], "cpu"),
    ("precision", Annotated[str, typer.Option(
        help="auto (bf16 where the hardware has it, else fp32), fp32 or bf16.")], "auto"),
    ("stream", Annotated[bool, typer.Option(help="Text: print tokens as they come.")],
     False),
    ("watermark", Annotated[bool, typer.Option(
        "--watermark", help="Add an invisible keyed watermark (images, text); key: the "
        "run's labelling.key or GENFORGE_WATERMARK_KEY.")], False),
    ("no_provenance", Annotated[bool, typer.Option(
        "--no-provenance", help="Write no provenance record (on by default).")], False),
]


def _with_option_flags(options: dict[str, Option],
                       flags: list[tuple[str, Any, Any]] | None = None) -> Any:
    """Give a command typer parameters: `flags` (default: the command's own parameters),
    then one per option of `options` (the registry's sample or complete options, the same
    the server's request fields come from). Given options are checked by their Option, and
    --precision by genforge.runtime.precision, before the command runs."""

    def wrap(fn: Any) -> Any:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = own if flags is None else [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hint,
                              default=default) for name, hint, default in flags]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
        for option in options.values():
            kind = list[str] if option.type is list else option.type
            hint = Annotated[kind | None, typer.Option(help=option.help)]
            params.append(inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=hint, default=None))

        def command(**kwargs: Any) -> None:
            with user_errors():
                for name, value in kwargs.items():
                    if name in options and value is not None:
                        kwargs[name] = options[name].check(value)
                if "precision" in kwargs:  # its one check, before a model is loaded
                    from genforge.runtime.precision import choose_precision

                    choose_precision(kwargs["precision"], kwargs.get("device", "cpu"))
            fn(**kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__doc__ = fn.__doc__
        command.__name__ = fn.__name__
        return command

    return wrap


sample_command = _with_option_flags(sample_options(), SAMPLE_FLAGS)(sample)


@_with_option_flags(complete_options())
def complete(
    run: Annotated[str, typer.Argument(help="Run folder.")],
    input: Annotated[str, typer.Option(help=".npz/.npy/.png images, or DATASET:SPLIT; tables: "
                                            "a .csv/.parquet of rows with empty cells.")],
    mask: Annotated[str, typer.Option(help="bottom-half, top-half, left-half, right-half, "
                                           "center, random:P, or a mask file.")] = "bottom-half",
    out: Annotated[str, typer.Option(help="A .png grid or an .npz.")] = "filled.png",
    n: Annotated[int, typer.Option(help="Images to take from DATASET:SPLIT.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    show_input: Annotated[bool, typer.Option(help="Rows of original, masked, filled.")] = False,
    no_provenance: Annotated[bool, typer.Option(
        "--no-provenance", help="Write no provenance record (on by default).")] = False,
    precision: Annotated[str, typer.Option(
        help="auto (bf16 where the hardware has it, else fp32), fp32 or bf16.")] = "auto",
    **given: Any,  # the family options (genforge.registry.complete_options), one flag each
):
    """Fill in the masked pixels of images: a VAE optimises or iterates its latent, a diffusion
    model keeps the known pixels at every noise level (RePaint resampling by default)."""
    from genforge.api import load

    with user_errors():
        model = load(run)
        model.precision = precision
        fills_cells = model.modality_spec.completes == "cells"
        if fills_cells:
            rows = _complete_rows(model, input, out, seed, no_provenance)
    if fills_cells:
        typer.echo(f"wrote {rows} completed rows to {_table_out(out)}")
        return
    with user_errors():
        images, labels = _read_input(input, n)
        options = {k: v for k, v in given.items() if v is not None}
        label = labels if model.num_classes and labels is not None else None
        filled = model.complete(images, mask, seed=seed, label=label, **options)
        if show_input:
            filled = _compare(images, filled, mask, seed)
        record = None if no_provenance else model.provenance_record(
            seed=seed, operation="complete", mask=mask, input=Path(input).name)
        model.write(filled, Path(out), nrow=images.shape[0] if show_input else None,
                    provenance=record)
    typer.echo(f"wrote {len(images)} completed images to {out}")


def _table_out(out: str) -> str:
    return "filled.csv" if out == "filled.png" else out  # the images default does not apply


def _complete_rows(model: Any, input: str, out: str, seed: int, no_provenance: bool) -> int:
    """Tables: fill the empty cells of the rows in --input (.csv/.parquet) into --out."""
    filled = model.complete_rows(input, seed=seed)
    record = None if no_provenance else model.provenance_record(
        seed=seed, operation="complete", input=Path(input).name)
    model.write(filled, Path(_table_out(out)), provenance=record)
    return len(filled)


def _read_input(spec: str, n: int):
    import numpy as np

    from genforge.modalities.images.inputs import read_images

    if not Path(spec).exists() and ":" in spec and "/" not in spec:
        from genforge.config import DataConfig
        from genforge.modalities.images.data import load_images

        dataset, split = spec.split(":", 1)
        data = load_images(DataConfig(dataset=dataset, split=split, limit=n))
        return data.images.numpy(), None if data.labels is None else data.labels.numpy()
    images, labels = read_images(spec)
    return np.ascontiguousarray(images[:n]), None if labels is None else labels[:n]


def _compare(images, filled, mask: str, seed: int):
    """Stack original, masked (missing pixels grey) and filled images for a side-by-side grid."""
    import torch

    from genforge.modalities.images.masks import make_mask

    x = torch.as_tensor(images)
    m = make_mask(mask, tuple(x.shape), seed=seed).expand_as(x)
    return torch.cat([x, torch.where(m, torch.full_like(x, 128), x), filled])
