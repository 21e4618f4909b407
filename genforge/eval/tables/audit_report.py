"""The privacy audit's summary lines and report section, read from RUN/audit/audit.json.

Kept apart from genforge.eval.tables.audit (which trains and scores) so that the tables report can
show an audit without importing the audit engine, which itself uses the tables metrics."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.json"


def summary_lines(result: dict[str, Any]) -> list[str]:
    t = result["retraining"]
    lines = [f"audit: {result['m']} canaries ({result['included']} trained on), retrained "
             f"{t['steps']} steps (the run: {t['run_steps']}) in {t['train_seconds']:.0f} s",
             f"best guesses: {result['k_plus']} in, {result['k_minus']} out: "
             f"{result['correct']} of {result['guesses']} right",
             f"epsilon >= {result['epsilon_lower_bound']:.3f} at {result['confidence']:.0%} "
             f"confidence (delta {result['delta']:.3g}; {result['pairs_tested']} (k+, k-) pairs, "
             "Bonferroni)"]
    if result["claimed_epsilon"] is None:
        lines.append("no DP claim to check: the run was trained without privacy.epsilon")
    else:
        verdict = "within" if result["bound_within_claim"] else "ABOVE"
        lines.append(f"claimed epsilon {result['claimed_epsilon']:.3g} (the retraining's, "
                     f"privacy config kept): the bound is {verdict} the claim")
    return lines


def audit_html(run_dir: str | Path) -> str:
    """The eval report's audit section, or "" when the run has no RUN/audit/audit.json."""
    path = Path(run_dir) / "audit" / AUDIT_FILE
    if not path.exists():
        return ""
    result = json.loads(path.read_text(encoding="utf-8"))
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(result))
    return ("<h2>Privacy audit (one run, canaries)</h2>"
            f"<p>{html.escape(result['method'])}, {html.escape(result['created'])}; a lower "
            "bound on epsilon from a membership attack on inserted canary rows. A bound above "
            "the claim refutes it; below it, the attack found nothing more.</p>"
            f"<ul>{items}</ul>")
