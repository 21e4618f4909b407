"""Provenance on served outputs: the record `genforge sample` writes into its files, in every
response body, so that a client who saves a body as a file can check it with
`genforge inspect FILE`.

| body                                 | where the record is                          |
|--------------------------------------|----------------------------------------------|
| PNG (a grid; each PNG of format json) | PNG metadata (tEXt + XMP), as the CLI writes |
| JSON (images, arrays, texts, series, tables, the SSE `done` event) | a `provenance` field |
| CSV (tables, series)                 | a first line `# provenance: {...}`           |

The bytes are labelled by the same functions the CLI's writers use (genforge.labelling), so
the two cannot drift apart: in memory (`label_bytes`, the code `embed_provenance` runs on a
file's bytes) for every body above, on a temporary file for any other. Records are signed
with the run's labelling.key or GENFORGE_WATERMARK_KEY when one is set, as the CLI signs them.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genforge.labelling import embed_provenance, label_bytes

Labeller = Callable[[str, bytes], bytes]  # (suffix, body) -> the labelled body


def labeller(model: Any, seed: int | None, **extra: Any) -> Labeller:
    """Labels bodies made by `model` for one response (one record: seed, time, `extra`)."""
    record = _record(model, seed, extra)
    key = model.labelling_key()

    def label(suffix: str, body: bytes) -> bytes:
        # in memory: the temporary file's syscalls cost ~1 ms a response of the event loop's
        # time, which a model step on the other thread waits for (GIL)
        labelled = label_bytes(suffix, body, record, key=key)
        if labelled is not None:
            return labelled
        path = _scratch() / f"{uuid.uuid4().hex}{suffix}"
        try:
            path.write_bytes(body)
            embed_provenance(path, record, key=key, csv_comment=True)
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
    return label


_RECORDS: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]] = \
    weakref.WeakKeyDictionary()


def _record(model: Any, seed: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    """`model.provenance_record(seed=seed, **extra)`, its fixed part made once per model (the
    config hash alone costs milliseconds; a loaded model's weights do not change)."""
    made = _RECORDS.setdefault(model, {})
    key = json.dumps(extra, sort_keys=True, default=str)
    if key not in made:
        made[key] = model.provenance_record(seed=None, **extra)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {**made[key], "seed": seed, "created": now}  # as build_record writes them


@functools.cache
def _scratch() -> Path:
    """This process's private folder for the bodies being labelled: in /dev/shm where there is
    one (memory; on an overlay /tmp a create-and-remove costs ~10 ms a response)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="genforge-serve-", dir=base))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def label_doc(label: Labeller, doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON object with its `provenance` field (for a body built as a dict, an SSE event)."""
    return json.loads(label(".json", json.dumps(doc, ensure_ascii=False).encode()))


def unlabelled(label: Labeller | None) -> Labeller:
    return label or (lambda _suffix, body: body)
