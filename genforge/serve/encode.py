"""What the server's bodies share across modalities: server-sent events.

A modality's own bodies and uploads are its object's: `Modality.http_formats`,
`http_body`, `http_meta`, `http_model_info` and `http_completion` (genforge.modalities.base;
genforge's own in genforge/modalities/<name>/http.py). `label` (genforge.serve.label) puts
the provenance record into each body: PNG metadata, a JSON `provenance` field, a CSV first
line `# provenance: {...}`.
"""

from __future__ import annotations

import json
from typing import Any


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; data as JSON (so line breaks in a token stay in one event)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
