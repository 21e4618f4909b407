"""`evaluate_run`: a run's metrics and report, by its modality.

    lines, paths = evaluate_run("runs/dcgan1", EvalOptions(n=10000))

Each modality's evaluator (its Modality object's `evaluator`, "module:function") gets the
loaded model through the public API and writes metrics.json + report.html; it returns summary
lines for the CLI to show. A new modality names its function in its Modality object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genforge.api import load
from genforge.errors import ConfigError
from genforge.eval.images.pipeline import EvalOptions
from genforge.eval.privacy import add_privacy
from genforge.modalities.base import resolve


def default_out(run: str | None, fake: str | None) -> str:
    """Beside what was evaluated: RUN/eval, or <fake file without suffix>-eval/."""
    if run is not None:
        return str(Path(run) / "eval")
    path = Path(str(fake))
    return str(path.with_name(f"{path.stem}-eval"))


def evaluate_run(run: str, options: EvalOptions, out: str | None = None,
                 n_given: bool = True) -> tuple[list[str], dict[str, Path]]:
    """Evaluate the run folder `run` by its modality; (summary lines, written paths)."""
    model = load(run)
    model.precision = options.precision  # the samples are made in the precision recorded
    if model.modality_spec.evaluator is None:
        raise ConfigError(f"{run}: no evaluation for {model.modality} models yet")
    evaluator = resolve(model.modality_spec.evaluator)
    lines, paths = evaluator(model, options, out or default_out(run, None), n_given)
    return lines + add_privacy(run, paths), paths  # a DP-SGD run's guarantee, any modality


def evaluate_fakes(fake: str, options: EvalOptions,
                   out: str | None = None) -> tuple[list[str], dict[str, Path]]:
    """Two image sets (--real, --fake) instead of a run."""
    from genforge.eval.images.pipeline import evaluate
    from genforge.eval.images.report import image_lines

    return image_lines(evaluate(None, fake=fake, options=options), out or default_out(None, fake))


def precision_field(options: EvalOptions) -> dict[str, str]:
    """What the samples were computed in (`auto` resolved), for metrics.json."""
    return {"chosen": options.precision, "reason": options.precision_reason or "asked for"}


def summary_line(values: dict[str, Any], keys: tuple[str, ...]) -> str:
    """`key value` pairs of the metrics `keys` that have a value, for the CLI's summary."""
    return ", ".join(f"{k} {values[k]:.4g}" for k in keys if values.get(k) is not None)
