"""The privacy guarantee of a DP-SGD run, as `genforge eval` states it for every modality.

The loop writes the guarantee into run.json ("privacy": epsilon spent, delta, noise multiplier,
clipping norm, sampling assumption, ...; see genforge/training/privacy.py). `add_privacy`
copies it into the evaluation's metrics.json, puts a section into its report.html and returns
the line the CLI shows. Runs trained without privacy are left as they are.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

ROWS = (  # (record key, label)
    ("epsilon", "epsilon spent"),
    ("epsilon_target", "epsilon target"),
    ("delta", "delta"),
    ("noise_multiplier", "noise multiplier (sigma)"),
    ("max_grad_norm", "per-sample clipping norm (C)"),
    ("accountant", "accountant"),
    ("private_steps", "private optimizer steps"),
    ("batch_size", "batch size"),
    ("records", "training records (n)"),
    ("record_unit", "one record is"),
    ("sample_rate", "sample rate q = batch / n"),
    ("private_nets", "privatised nets"),
    ("public_nets", "nets trained only through the private ones"),
    ("fixed_layers", "layers replaced for Opacus"),
    ("sampling", "sampling"),
    ("not_covered", "not covered"),
)


def privacy_record(run_dir: str | Path | None) -> dict[str, Any] | None:
    """run.json's "privacy" entry, or None (no run, or trained without privacy)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("privacy")


def summary_line(record: dict[str, Any]) -> str:
    if "private_nets" not in record:  # a mechanism of its own (AIM, MST): itemised steps
        steps = ", ".join(f"{i['step']} {i['epsilon']:.3g}" for i in record.get("items", []))
        return (f"privacy: (epsilon {record['epsilon']:.3g}, delta {record['delta']:.3g})-DP "
                f"by {record.get('mechanism', 'its own mechanism')} (epsilon: {steps})")
    return (f"privacy: (epsilon {record['epsilon']:.3g}, delta {record['delta']:.3g})-DP for "
            f"{', '.join(record['private_nets'])} by DP-SGD (sigma "
            f"{record['noise_multiplier']:.3g}, C {record['max_grad_norm']:.3g}, "
            f"{record['private_steps']} steps)")


def privacy_html(record: dict[str, Any]) -> str:
    """The report section: the guarantee in one sentence, then every recorded fact."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list | dict):
            return html.escape(json.dumps(value)) if value else "–"
        return "–" if value is None else html.escape(str(value))

    rows = "".join(f"<tr><td>{label}</td><td>{cell(record.get(key))}</td></tr>"
                   for key, label in ROWS if key in record)
    return (f"<h2>Differential privacy</h2><p><b>{html.escape(summary_line(record))}</b>. "
            "The guarantee covers the training records through every privatised net's "
            "updates; the accountant assumes Poisson sampling (see below).</p>"
            f"<table class=record>{rows}</table>")


def add_privacy(run_dir: str | Path | None, paths: dict[str, Path]) -> list[str]:
    """Copy the run's guarantee into the written metrics.json and report.html; the CLI line."""
    record = privacy_record(run_dir)
    if record is None:
        return []
    metrics = paths.get("metrics")
    if metrics is not None and Path(metrics).exists():
        data = json.loads(Path(metrics).read_text())
        data["privacy"] = record
        Path(metrics).write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
    report = paths.get("report")
    if report is not None and Path(report).exists():
        page = Path(report).read_text(encoding="utf-8")
        cut = page.rfind("</body>")
        if cut >= 0:
            page = page[:cut] + privacy_html(record) + "\n" + page[cut:]
            Path(report).write_text(page, encoding="utf-8")
    return [summary_line(record)]
