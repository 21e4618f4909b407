"""metrics.json and a self-contained report.html (images and plots embedded as base64 PNG).

An older evaluation in the output folder is never overwritten: a folder that holds a
metrics.json or report.html is renamed to `<name>-<timestamp of that file>` (e.g.
eval-20250101-120000/) before the new one is written. Plots use matplotlib's object API with
the Agg canvas, so that the caller's pyplot backend is left alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from genforge.eval.images.pipeline import EvalResult
from genforge.modalities.images.grids import make_grid

ROWS = [  # (label, path into a block's "metrics", what higher/lower means)
    ("FID", ("fid",), "lower is better"),
    ("KID (mean)", ("kid", "mean"), "lower is better; ~0 for identical distributions"),
    ("KID (standard error)", ("kid", "se"), "over subsets"),
    ("Precision (k=3)", ("precision",), "share of samples on the real manifold"),
    ("Recall (k=3)", ("recall",), "share of real images on the sample manifold"),
    ("Density (k=5)", ("density",), "~1 when samples sit like real images"),
    ("Coverage (k=5)", ("coverage",), "share of real neighbourhoods with a sample"),
    ("Inception Score (classifier)", ("inception_score", "mean"), "higher is better"),
    ("Class histogram TV to uniform", ("class_histogram", "tv_uniform"), "0 = balanced"),
    ("Class histogram KL to uniform", ("class_histogram", "kl_uniform"), "mode collapse: high"),
    ("Class histogram TV to real", ("class_histogram", "tv_real"), "0 = like the real set"),
    ("Conditional accuracy", ("conditional_accuracy", "accuracy"), "sample for k classed k"),
    ("Memorisation rate", ("memorisation", "rate"), "see the definition below"),
    ("Memorisation rate of real images", ("memorisation", "real_rate"), "the baseline"),
]


def prepare_out_dir(out: Path) -> Path | None:
    """Create `out`; an older evaluation there is moved to out-<timestamp>/ (returned). A
    folder holding no metrics.json or report.html is left where it is (it may be `.`)."""
    ours = [out / "metrics.json", out / "report.html"]
    moved = None
    if any(p.exists() for p in ours):
        stamp_of = next(p for p in ours if p.exists())
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(stamp_of.stat().st_mtime))
        moved = out.with_name(f"{out.name}-{stamp}")
        i = 1
        while moved.exists():
            moved, i = out.with_name(f"{out.name}-{stamp}-{i}"), i + 1
        out.rename(moved)
    out.mkdir(parents=True, exist_ok=True)
    return moved


def write_report(result: EvalResult, out: str | Path) -> dict[str, Path]:
    """Write out/metrics.json and out/report.html; returns their paths (and a moved folder)."""
    out = Path(out)
    moved = prepare_out_dir(out)
    paths = {"metrics": out / "metrics.json", "report": out / "report.html"}
    if moved is not None:
        paths["previous"] = moved
        result.metrics["previous_eval"] = str(moved)
    _write_text(paths["metrics"], json.dumps(result.metrics, indent=1, allow_nan=True) + "\n")
    _write_text(paths["report"], render_html(result))
    return paths


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Pictures


def png_base64(image: np.ndarray, scale: int = 1) -> str:
    """uint8 (H, W, C) -> an <img> data URI; `scale` enlarges small images, pixel for pixel."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid_uri(images: torch.Tensor, nrow: int | None = None) -> str:
    grid = make_grid(images.numpy(), nrow=nrow)  # (H', W', C)
    return png_base64(grid, scale=max(1, 512 // max(grid.shape[:2])))  # ~512 px wide


def _figure_uri(draw: Any, size: tuple[float, float] = (6, 3)) -> str:
    """Call draw(ax) on a fresh Agg figure and return it as a PNG data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    draw(fig.add_subplot(1, 1, 1))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def loss_curves(run_dir: Path | None) -> str | None:
    """The run's training losses (metrics.jsonl keys that start with "loss") against step."""
    path = None if run_dir is None else run_dir / "metrics.jsonl"
    if path is None or not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r if k.startswith("loss")})
    if not keys:
        return None

    def draw(ax: Any) -> None:
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
            ax.plot(*zip(*points, strict=True), label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)

    return _figure_uri(draw)


DP_NO_CURVES = ("<h2>Training losses</h2><p>Not shown: this run was trained with "
                "differential privacy, and losses computed on the private records without "
                "noise would release more than its epsilon covers, so none were logged.</p>")
DP_NO_CLOSEST = ("<p>The samples nearest to the training set and their nearest training "
                 "images are not shown: this run was trained with differential privacy, and "
                 "showing training images would publish private records outright. (The rates "
                 "above are computed on the training images without noise: an evaluation "
                 "statistic outside the guarantee.)</p>")


def losses_section(run_dir: Path | None) -> str:
    """The loss curves of a run, a sentence why not for a DP run, or nothing."""
    from genforge.eval.privacy import privacy_record

    if privacy_record(run_dir) is not None:
        return DP_NO_CURVES
    curves = loss_curves(run_dir)
    return f"<h2>Training losses</h2><img alt='loss curves' src='{curves}'>" if curves else ""


def histogram_plot(hist: dict[str, Any], class_names: list[str]) -> str:
    share = np.asarray(hist["share"])
    names = class_names if len(class_names) == len(share) else [str(i) for i in range(len(share))]

    def draw(ax: Any) -> None:
        x = np.arange(len(share))
        ax.bar(x - 0.2, share, 0.4, label="samples")
        if "real_share" in hist:
            ax.bar(x + 0.2, hist["real_share"], 0.4, label="real")
        ax.axhline(1 / len(share), color="grey", ls="--", lw=1, label="uniform")
        ax.set_xticks(x, names, rotation=45 if max(map(len, names)) > 3 else 0, ha="right")
        ax.set_ylabel("share (classifier argmax)")
        ax.legend()

    return _figure_uri(draw, (7, 3.2))


# --------------------------------------------------------------------------------------------
# The page


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _get(metrics: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def metric_table(blocks: dict[str, Any]) -> str:
    """One row per metric, a column per feature extractor, and the real-vs-real baseline."""
    columns = [(name, b["metrics"]) for name, b in blocks.items()]
    columns += [(f"{name}: real vs real", b["baseline"]) for name, b in blocks.items()
                if b.get("baseline")]
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns)
    body = []
    for label, path, note in ROWS:
        cells = [_get(m, path) for _, m in columns]
        if all(c is None for c in cells):
            continue
        body.append(f"<tr><td>{label}</td>{''.join(f'<td>{_fmt(c)}</td>' for c in cells)}"
                    f"<td class=note>{html.escape(note)}</td></tr>")
    return (f"<table class=metrics><tr><th>metric</th>{head}<th></th></tr>"
            + "".join(body) + "</table>")


def _record_table(record: dict[str, Any] | None) -> str:
    if not record:
        return "<p>–</p>"
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>"
                   for k, v in record.items())
    return f"<table class=record>{rows}</table>"


def protocol_section(metrics: dict[str, Any]) -> str:
    protocol = metrics["protocol"]
    params = ", ".join(f"{k} = {v}" for k, v in protocol["params"].items())
    parts = ["<h2>Protocol</h2>",
             f"<p>seed {protocol['seed']}; {html.escape(params)}. Numbers are comparable only "
             "between evaluations with the same protocol hash: domain-classifier numbers only "
             "with the same classifier file (sha256), and none of them with published "
             "Inception FIDs.</p>"]
    for name, block in metrics["features"].items():
        parts.append(f"<h3>Features: {html.escape(name)} (protocol hash "
                     f"<code>{block['protocol_hash'][:16]}</code>, reference statistics "
                     f"{block['reference_cache']})</h3>{_record_table(block['extractor'])}")
    for role in ("fake", "real", "train"):
        parts.append(f"<h3>{role} images</h3>{_record_table(protocol[role])}")
    return "\n".join(parts)


def downstream_section(block: dict[str, Any]) -> str:
    """CAS and augmentation gain (genforge.eval.images.downstream), with their protocol."""
    cas, aug, protocol = block["cas"], block["augmentation"], block["protocol"]
    rows = [("CAS: trained on generated only", cas["accuracy"], cas["what"]),
            ("CAS: real reference", cas["real_reference"], f"trained on {cas['n']} real"),
            ("CAS / real reference", cas["ratio"], "1 = as useful as real images"),
            ("Augmentation: real only", aug["real_only"], f"{aug['real_n']} real images"),
            ("Augmentation: real + generated", aug["real_plus_generated"], aug["what"]),
            ("Augmentation gain", aug["gain"], "positive: the generated images help")]
    body = "".join(f"<tr><td>{label}</td><td>{_fmt(value)}</td>"
                   f"<td class=note>{html.escape(note)}</td></tr>" for label, value, note in rows)
    record = {k: v for k, v in protocol.items() if k != "settings"}
    return ("<h2>Downstream: generated data for a classifier</h2>"
            "<p>Test accuracies on the real test split.</p>"
            f"<table class=metrics><tr><th>measure</th><th>accuracy</th><th></th></tr>{body}"
            f"</table><h3>Downstream protocol</h3>{_record_table(record)}")


def render_html(result: EvalResult) -> str:
    from genforge.eval.privacy import privacy_record

    m = result.metrics
    private = privacy_record(result.run_dir) is not None
    title = f"genforge eval: {result.run_dir or m['protocol']['fake'].get('path', '')}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{_fmt(m['created'])} · genforge {_fmt(m['genforge'])} · torch "
             f"{_fmt(m['torch'])} · {len(result.samples)} of "
             f"{m['protocol']['fake']['n']} samples shown</p>",
             f"<h2>Samples</h2><img alt=samples src='{_grid_uri(result.samples)}'>",
             "<h2>Metrics</h2>", metric_table(m["features"])]
    domain = m["features"].get("domain", {}).get("metrics", {})
    if domain.get("class_histogram"):
        uri = histogram_plot(domain["class_histogram"], result.class_names)
        parts.append(f"<h2>Class histogram</h2><img alt='class histogram' src='{uri}'>")
    if domain.get("conditional_accuracy"):
        per = domain["conditional_accuracy"]["per_class"]
        parts.append("<h3>Conditional accuracy per label</h3>"
                     + _record_table({str(k): v for k, v in enumerate(per)}))
    memo = domain.get("memorisation")
    if memo:
        verdict = "FLAGGED: samples sit closer to training images than expected" \
            if memo["flagged"] else "not flagged"
        parts.append(f"<h2>Memorisation</h2><p><b>{verdict}</b>. rate {_fmt(memo['rate'])}, "
                     f"real images {_fmt(memo['real_rate'])}, threshold "
                     f"{_fmt(memo['threshold'])}.</p>"
                     f"<p class=note>{html.escape(memo['definition'])}</p>")
        if private:
            parts.append(DP_NO_CLOSEST)
        elif result.closest is not None:
            uri = _grid_uri(result.closest, nrow=len(result.closest) // 2)
            parts.append("<p>Top row: the samples nearest to the training set; bottom row: "
                         f"their nearest training images.</p><img alt=closest src='{uri}'>")
    if m.get("downstream"):
        parts.append(downstream_section(m["downstream"]))
    parts.append(losses_section(result.run_dir))
    parts.append(protocol_section(m))
    return PAGE.format(title=html.escape(title), body="\n".join(parts))


PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
table.metrics td:not(:first-child):not(.note) {{ font-variant-numeric: tabular-nums; }}
table.record td:last-child {{ word-break: break-all; max-width: 700px; }}
.note {{ color: #666; font-size: 0.9em; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""


IMAGE_SUMMARY = (("fid", "FID"), ("kid", "KID"), ("precision", "precision"),
                 ("recall", "recall"), ("density", "density"), ("coverage", "coverage"))


def evaluate_images_run(model: Any, options: Any, out: str,
                         n_given: bool) -> tuple[list[str], dict[str, Path]]:
    """The images modality's evaluator (genforge.eval.runs): the pipeline's metrics of the
    run, written as metrics.json and report.html into `out`; (summary lines, paths)."""
    from genforge.eval.images.pipeline import evaluate

    return image_lines(evaluate(str(model.path), options=options), out)


def image_lines(result: Any, out: str) -> tuple[list[str], dict[str, Path]]:
    """Write `result`'s report into `out`; (the lines the CLI shows, written paths)."""
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
