"""Tables over HTTP: rows (a pandas DataFrame) as CSV or JSON, and the CSV rows uploaded to
`POST /v1/complete` for their empty cells to be filled."""

from __future__ import annotations

import io
import json
from typing import Any

from genforge.errors import ConfigError, GenforgeError
from genforge.modalities.base import HttpCompletion, Labeller


def tables_body(frame: Any, fmt: str, meta: dict[str, Any],
                label: Labeller) -> tuple[bytes, str]:
    if fmt == "json":
        rows = json.loads(frame.to_json(orient="records"))
        return label(".json", json.dumps({**meta, "rows": rows}).encode()), "application/json"
    return label(".csv", frame.to_csv(index=False).encode()), "text/csv"


def imputation(model: Any, model_id: str, given: dict[str, Any], options: dict[str, Any],
               seed: int, max_upload: int) -> HttpCompletion:
    """CSV rows in (`rows`), the same rows with their empty cells filled out (CSV, or JSON
    with `format: json`)."""
    if "rows" not in given:
        raise ConfigError("rows: required for a tables model (CSV text with a header)")
    frame = read_rows("rows", given["rows"])

    def run() -> Any:
        try:
            return model.complete_rows(frame, seed=seed)
        except GenforgeError as err:  # "the rows: column 'x' is not in the model's schema"
            raise ConfigError(f"rows: {err}") from None

    return HttpCompletion(
        run=run, record={"operation": "complete", "input": "upload"},
        body=lambda filled, label: tables_body(filled, given.get("format") or "csv",
                                               {"model": model_id, "seed": seed}, label))


def read_rows(field: str, text: str) -> Any:
    """CSV text with a header -> a DataFrame; a ConfigError naming `field` otherwise."""
    import pandas as pd

    if text.startswith("# provenance: "):  # a CSV this server sent: its record line goes
        text = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as err:
        raise ConfigError(f"{field}: not CSV with a header row ({str(err).splitlines()[0]})") \
            from None
    if frame.empty:
        raise ConfigError(f"{field}: no rows under the header")
    return frame
