"""The tabular family as the registry sees it (genforge.families.spec)."""

from __future__ import annotations

from genforge.families.spec import FamilySpec
from genforge.families.tabular.config import TabularConfig
from genforge.options import Option

FAMILY = FamilySpec(
    name="tabular",
    description="Tables: Gaussian copula, TVAE, CTGAN, TabDDPM, AIM, MST; conditions and "
                "imputation",
    model_config=TabularConfig,
    objective="genforge.families.tabular.build:build_objective",
    modalities=("tables",),
    sample_options=(
        Option("where", str, "Tables: fix columns, e.g. 'sex=Female,income=>50K' (a number "
               "or LOW..HIGH for a numeric column)."),
        Option("temperature", float, "Tables (tabddpm): below 1 sharpens the categorical "
               "columns (> 0).", 0.0, 100.0),
    ),
    options_by_kind=True,  # TabularObjective.sample_options: only TabDDPM takes a temperature
    can_complete=True,  # the empty cells of rows; no options of its own
)
