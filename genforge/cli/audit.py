"""`genforge audit`: a thin adapter over genforge.eval.tables.audit (the one-run privacy audit of a
table run: canaries in, one retraining, a lower bound on epsilon).

    genforge audit runs/tvae1                          # -> runs/tvae1/audit/audit.json
    genforge audit runs/dp1 --canaries 1000 --confidence 0.95 --seed 0 --steps 1000
"""

from __future__ import annotations

from typing import Annotated

import typer

from genforge.cli.common import user_errors


def audit_command(
    run: Annotated[str, typer.Argument(help="A table run folder.")],
    canaries: Annotated[int, typer.Option(
        help="Canary rows m, each trained on with probability 1/2.")] = 1000,
    confidence: Annotated[float, typer.Option(
        help="Confidence of the lower bound, in (0, 1).")] = 0.95,
    seed: Annotated[int, typer.Option(help="Canaries, their inclusion and sampling.")] = 0,
    steps: Annotated[int | None, typer.Option(
        help="train.max_steps of the retraining (default: the run's); a DP run keeps its "
             "privacy config, so its claimed epsilon still applies.")] = None,
    delta: Annotated[float | None, typer.Option(
        help="Delta of the bound (default: the run's privacy.delta, else 1e-5).")] = None,
    data_root: Annotated[str | None, typer.Option(help="Where data sets live.")] = None,
):
    """Empirical privacy of a table run (Steinke, Nasr and Jagielski's one-run audit): retrain
    its config once on its rows plus random canaries, guess which canaries were in from the
    synthetic rows alone, and turn the right guesses into a lower bound on epsilon; into
    RUN/audit/audit.json (an older audit is moved aside), shown by `genforge eval`."""
    with user_errors():
        from genforge.eval.tables.audit import AuditOptions, audit_run

        options = AuditOptions(canaries=canaries, confidence=confidence, seed=seed,
                               steps=steps, delta=delta, data_root=data_root)
        lines, paths = audit_run(run, options)
    for line in lines:
        typer.echo(line)
    typer.echo(f"wrote {paths['audit']} and {paths['canaries']}")
