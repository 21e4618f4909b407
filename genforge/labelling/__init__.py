"""Labelling generated content: provenance records in every output file, invisible keyed
watermarks for images and text, and their detectors.

A low layer: it imports only genforge.errors / genforge.version, numpy, torch, PIL and the
standard library (pyarrow only to label Parquet files), so every writer above may use it.
"""

from genforge.labelling.formats import embed_provenance, label_bytes, read_provenance
from genforge.labelling.provenance import (
    KEY_ENV,
    LABEL,
    Provenance,
    build_record,
    config_hash,
    describe,
    file_hash,
    secret_key,
    using_key,
)

__all__ = ["KEY_ENV", "LABEL", "Provenance", "build_record", "config_hash", "describe",
           "embed_provenance", "file_hash", "label_bytes", "read_provenance", "secret_key",
           "using_key"]
