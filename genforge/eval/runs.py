"""`evaluate_run`: a run's metrics and report, by its modality.

    lines, paths = evaluate_run("runs/dcgan1", EvalOptions(n=10000))

Each modality's evaluator (its Modality object's `evaluator`, "module:function") gets the
loaded model through the public API and writes metrics.json + report.html; it returns summary
lines for the CLI to show. A new modality names its function in its Modality object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genforge.api import GenerativeModel, load
from genforge.errors import ConfigError
from genforge.eval.images.pipeline import EvalOptions
from genforge.eval.privacy import add_privacy
from genforge.modalities.base import resolve

IMAGE_SUMMARY = (("fid", "FID"), ("kid", "KID"), ("precision", "precision"),
                 ("recall", "recall"), ("density", "density"), ("coverage", "coverage"))


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

    return _image_lines(evaluate(None, fake=fake, options=options), out or default_out(None, fake))


def evaluate_images(model: GenerativeModel, options: EvalOptions, out: str,
                    n_given: bool) -> tuple[list[str], dict[str, Path]]:
    from genforge.eval.images.pipeline import evaluate

    return _image_lines(evaluate(str(model.path), options=options), out)


def _image_lines(result: Any, out: str) -> tuple[list[str], dict[str, Path]]:
    from genforge.eval.images.report import write_report

    paths = write_report(result, out)
    lines = []
    for name, block in result.metrics["features"].items():
        values = block["metrics"]
        lines.append(f"{name}: " + ", ".join(
            f"{label} {values[key]['mean'] if key == 'kid' else values[key]:.4g}"
            for key, label in IMAGE_SUMMARY))
    down = result.metrics.get("downstream")
    if down:
        cas, aug = down["cas"], down["augmentation"]
        lines.append(f"downstream: CAS {cas['accuracy']:.4f} (real reference "
                     f"{cas['real_reference']:.4f}, n {cas['n']}); augmentation "
                     f"{aug['real_only']:.4f} -> {aug['real_plus_generated']:.4f} (gain "
                     f"{aug['gain']:+.4f}, {aug['real_n']} real + {aug['generated_m']} generated)")
    if "previous" in paths:
        lines.append(f"the previous evaluation was moved to {paths['previous']}")
    return lines, paths


def evaluate_text_run(model: GenerativeModel, options: EvalOptions, out: str,
                      n_given: bool) -> tuple[list[str], dict[str, Path]]:
    from genforge.eval.text.evaluate import evaluate_text, write_text_report

    metrics = evaluate_text(model, n_samples=options.n if n_given else 64, seed=options.seed,
                            data_root=options.data_root)
    metrics["precision"] = _precision(options)
    paths = write_text_report(metrics, out, run_dir=model.path)
    keys = ("val_loss", "perplexity", "bits_per_char", "distinct_2", "copy_rate_8")
    return [_line(metrics["metrics"], keys)], paths


def evaluate_series_run(model: GenerativeModel, options: EvalOptions, out: str,
                        n_given: bool) -> tuple[list[str], dict[str, Path]]:
    from genforge.eval.series.evaluate import evaluate_series, write_series_report

    metrics = evaluate_series(model, n_paths=options.n if n_given else 200, seed=options.seed)
    metrics["precision"] = _precision(options)
    paths = write_series_report(metrics, out, run_dir=model.path, info=model.data_info)
    keys = ("crps", "mase", "mase_relative_to_seasonal_naive", "coverage_50", "coverage_80",
            "coverage_95")
    lines = [_line(metrics["metrics"], keys)]
    noise = metrics["metrics"]["coverage_noise"]
    if "band_90" in noise:  # not skipped: say how much a coverage on so few rows can move
        bands = ", ".join(f"{lv} {a:.2f}-{b:.2f}" for lv, (a, b)
                          in zip(("50%", "80%", "95%"), noise["band_90"], strict=True))
        lines.append(f"coverage a calibrated forecaster reaches on these rows 90% of the time: "
                     f"{bands} (this run's coverage: p = {noise['p_value']:.2g})")
    else:  # a named condition (too few rows, no ARIMA fits them): say which
        lines.append(f"coverage noise skipped: {noise['skipped']}")
    return lines, paths


def evaluate_audio_run(model: GenerativeModel, options: EvalOptions, out: str,
                       n_given: bool) -> tuple[list[str], dict[str, Path]]:
    from genforge.eval.audio.evaluate import evaluate_audio, summary_lines, write_audio_report

    metrics, clips = evaluate_audio(model, n=options.n if n_given else 500, seed=options.seed,
                                    data_root=options.data_root, classifier=options.classifier)
    metrics["precision"] = _precision(options)
    paths = write_audio_report(metrics, clips, out, run_dir=model.path)
    return summary_lines(metrics), paths


def _precision(options: EvalOptions) -> dict[str, str]:
    """What the samples were computed in (`auto` resolved), for metrics.json."""
    return {"chosen": options.precision, "reason": options.precision_reason or "asked for"}


def _line(values: dict[str, Any], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {values[k]:.4g}" for k in keys if values.get(k) is not None)
