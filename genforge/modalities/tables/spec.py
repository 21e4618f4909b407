"""The tables modality: what the engines ask of tables (genforge.modalities.base)."""

from __future__ import annotations

from typing import Any

from genforge.modalities.base import HttpCompletion, Labeller, Modality
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
    label_refusal = "tables models are conditioned with --where"
    completes = "cells"
    http_formats = ("csv", "json")

    def http_body(self, samples: Any, fmt: str, meta: dict[str, Any],
                  label: Labeller) -> tuple[bytes, str]:
        from genforge.modalities.tables.http import tables_body

        return tables_body(samples, fmt, meta, label)

    def read_cells(self, source: Any, data_info: dict[str, Any]) -> Any:
        from genforge.modalities.tables.data import read_rows

        return read_rows(source, data_info)

    def http_completion(self, model: Any, model_id: str, given: dict[str, Any],
                        options: dict[str, Any], seed: int, max_upload: int) -> HttpCompletion:
        from genforge.modalities.tables.http import imputation

        return imputation(model, model_id, given, options, seed, max_upload)


MODALITY = Tables()
