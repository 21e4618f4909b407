"""The tables modality: what the engines ask of tables (genforge.modalities.base)."""

from __future__ import annotations

from genforge.modalities.base import Modality
from genforge.modalities.tables.config import TablesDataConfig


class Tables(Modality):
    name = "tables"
    description = ("CSV/Parquet tables (Adult, German credit by name) as rows obeying an "
                   "inferred schema")
    data_config = TablesDataConfig
    loader = "genforge.modalities.tables.data:load_tables"
    output = "genforge.modalities.tables.data:TablesOutput"
    evaluator = "genforge.eval.tables.evaluate:evaluate_tables_run"
    in_chunks = True
    http_formats = ("csv", "json")


MODALITY = Tables()
