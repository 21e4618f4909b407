"""Image evaluation: feature extractors, metrics with their protocol, and the report.

    from genforge.eval import EvalOptions, evaluate, write_report
    result = evaluate("runs/dcgan1", options=EvalOptions(n=10000, features="domain"))
    write_report(result, "runs/dcgan1/eval")          # metrics.json + report.html

Modules: features (Inception, batching), classifier (the domain classifier), stats (reference
statistics cache), metrics (FID, KID, PR, DC, IS, memorisation), pipeline (the steps of
`evaluate`), report (JSON + HTML), command (`genforge eval`). Names are imported on first
use so that the CLI starts without loading torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalOptions", "EvalResult", "evaluate", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("EvalOptions", "EvalResult", "evaluate"):
        from genforge.eval.images import pipeline as module

        return getattr(module, name)
    if name == "write_report":
        from genforge.eval.images.report import write_report

        return write_report
    raise AttributeError(f"module 'genforge.eval' has no attribute {name!r}")
