"""The registry's constructor of a tabular objective: the synthesizer `model.kind` names.

Apart from objective.py (the shared base each synthesizer subclasses) so that no module of the
family imports another that imports it back.
"""

from __future__ import annotations

from typing import Any


def build_objective(cfg: Any, data_info: dict[str, Any]) -> Any:
    """The registry's constructor: the synthesizer `cfg.kind` names."""
    if cfg.kind == "copula":
        from genforge.families.tabular.copula import CopulaObjective as cls
    elif cfg.kind == "tvae":
        from genforge.families.tabular.tvae import TVAEObjective as cls
    elif cfg.kind in ("aim", "mst"):
        from genforge.families.tabular.marginal import MarginalObjective as cls
    elif cfg.kind == "ctgan":
        from genforge.families.tabular.ctgan import CTGANObjective as cls
    else:
        from genforge.families.tabular.tabddpm import TabDDPMObjective as cls
    return cls(cfg, data_info)
