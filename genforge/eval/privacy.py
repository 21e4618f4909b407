"""The privacy guarantee of a DP run, as `genforge eval` and `genforge train` state it.

The loop writes the guarantee into run.json ("privacy": the total epsilon and delta, the
items it is made of, the assumptions it rests on, the DP-SGD settings; see
genforge/training/privacy.py). `add_privacy` copies it into the evaluation's metrics.json,
puts a section into its report.html and returns the lines the CLI shows: the (epsilon, delta)
total with its assumptions, then one line per item. Runs trained without privacy are left as
they are; a record written before the itemisation is shown as it is.

Any DP run (DP-SGD or not) is itemised when its record has "epsilon", "delta", "items" (each
{"step", "mechanism", "epsilon", "delta", "detail"}), "total" ({"epsilon", "delta",
"composition"}: how the items were composed), "assumptions" (strings) and "accountant".
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
ITEM_COLUMNS = ("step", "mechanism", "epsilon", "delta", "composition", "detail")


def privacy_record(run_dir: str | Path | None) -> dict[str, Any] | None:
    """run.json's "privacy" entry, or None (no run, or trained without privacy)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("privacy")


def summary_line(record: dict[str, Any]) -> str:
    """The (epsilon, delta) total and, beside it, what it assumes."""
    line = (f"privacy: (epsilon {record['epsilon']:.3g}, delta {record['delta']:.3g})-DP")
    if "items" not in record:  # a run recorded before the itemisation
        return (f"{line} for {', '.join(record['private_nets'])} by DP-SGD (sigma "
                f"{record['noise_multiplier']:.3g}, C {record['max_grad_norm']:.3g}, "
                f"{record['private_steps']} steps)")
    by = f" by {record['mechanism']}" if "mechanism" in record else ""
    accountant = record.get("accountant", "rdp")
    accountant = accountant.upper() if accountant in ("rdp", "prv") else accountant
    return (f"{line}{by} in total over {len(record['items'])} item(s) ({accountant}); "
            "assuming: " + "; ".join(record.get("assumptions", [])))


def item_lines(record: dict[str, Any]) -> list[str]:
    """One line per item of the budget (its own epsilon, as if alone, at its delta)."""
    return [f"  {i['step']}: epsilon {i['epsilon']:.3g} alone, delta {i['delta']:.3g} "
            f"({i['mechanism']})" for i in record.get("items", [])]


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
    if "items" not in record:
        return (f"<h2>Differential privacy</h2><p><b>{html.escape(summary_line(record))}"
                "</b>.</p>" f"<table class=record>{rows}</table>")
    total = record.get("total", {"epsilon": record["epsilon"], "delta": record["delta"],
                                 "composition": "as recorded"})
    head = "".join(f"<th>{c}</th>" for c in ITEM_COLUMNS)
    items = "".join("<tr>" + "".join(f"<td>{cell(i.get(c))}</td>" for c in ITEM_COLUMNS)
                    + "</tr>" for i in record["items"])
    assumptions = "".join(f"<li>{html.escape(a)}</li>" for a in record.get("assumptions", []))
    return (f"<h2>Differential privacy</h2><p><b>(epsilon {total['epsilon']:.4g}, delta "
            f"{total['delta']:.3g})-DP in total</b>: {html.escape(total['composition'])}.</p>"
            "<h3>Where epsilon went</h3><p class=note>Each item's epsilon is what it would "
            "spend alone at its delta; composed by the accountant they spend less than their "
            f"sum.</p><table class=record><tr>{head}</tr>{items}</table>"
            f"<h3>Assumptions</h3><ul>{assumptions}</ul>"
            f"<h3>DP-SGD settings</h3><table class=record>{rows}</table>")


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
    return [summary_line(record), *item_lines(record)]
