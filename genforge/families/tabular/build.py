"""The registry's constructor of a tabular objective: the synthesizer `model.kind` names.

Apart from objective.py (the shared base each synthesizer subclasses) so that no module of the
family imports another that imports it back.
"""

from __future__ import annotations

import importlib
from typing import Any

# model.kind -> "module:class" of its synthesizer (the tests check each one's declarations)
KINDS = {
    "copula": "genforge.families.tabular.copula:CopulaObjective",
    "tvae": "genforge.families.tabular.tvae:TVAEObjective",
    "aim": "genforge.families.tabular.marginal:MarginalObjective",
    "mst": "genforge.families.tabular.marginal:MarginalObjective",
    "ctgan": "genforge.families.tabular.ctgan:CTGANObjective",
    "tabddpm": "genforge.families.tabular.tabddpm:TabDDPMObjective",
}


def build_objective(cfg: Any, data_info: dict[str, Any]) -> Any:
    """The registry's constructor: the synthesizer `cfg.kind` names (TabDDPM by default)."""
    module, _, name = KINDS.get(cfg.kind, KINDS["tabddpm"]).partition(":")
    return getattr(importlib.import_module(module), name)(cfg, data_info)
