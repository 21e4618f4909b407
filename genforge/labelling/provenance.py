"""Provenance records: who made a file, from what, when, and the explicit "AI-generated" label.

A record is a flat JSON object (schema `genforge-provenance/1`):

    label "AI-generated", generator "genforge <version>", modality, run, config_sha256,
    weights_sha256, seed, created (UTC ISO 8601), AIGC {Label, ContentProducer, ProduceID}
    (the implicit-label fields of China's GB 45438-2025), optional extra fields,
    content_sha256 (the file without the record), digest (the record itself), hmac (optional)

`embed_provenance(path, record)` puts it into the file the way its format allows (the `formats`
module); `read_provenance(path)` reads it back and checks it:
  - content_sha256 against the file as it is now, less the record: edited content -> tampered;
  - digest, a SHA-256 of the record's own fields: a hand-edited record -> tampered;
  - hmac, HMAC-SHA256 of the record under a key derived from the user's secret (config
    `labelling.key` or GENFORGE_WATERMARK_KEY): anyone can recompute a digest, only the key
    holder an HMAC, so only a record whose HMAC checks out is "verified".
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genforge.errors import ConfigError
from genforge.version import __version__

SCHEMA = "genforge-provenance/1"
LABEL = "AI-generated"
KEY_ENV = "GENFORGE_WATERMARK_KEY"
# IPTC's digital source type for content made by a trained model (what C2PA and XMP readers show)
IPTC_TRAINED_ALGORITHMIC = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SEALS = ("content_sha256", "digest", "hmac")  # fields computed at embedding, not by the caller


def generator() -> str:
    return f"genforge {__version__}"


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value (sorted keys, no spaces): what hashes are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(config))).hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime): sampling a run many times in one
    process hashes its weights once."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def build_record(*, modality: str, run: str | None = None, config_sha256: str | None = None,
                 weights_sha256: str | None = None, seed: int | None = None,
                 extra: Mapping[str, Any] | None = None, now: datetime | None = None
                 ) -> dict[str, Any]:
    """A provenance record for content of `modality` (images, text, tables, series, audio)."""
    created = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    record: dict[str, Any] = {
        "schema": SCHEMA, "label": LABEL, "generator": generator(), "modality": modality,
        "run": run, "config_sha256": config_sha256, "weights_sha256": weights_sha256,
        "seed": seed, "created": created.replace("+00:00", "Z"),
        "AIGC": {"Label": "1", "ContentProducer": generator(), "ProduceID": run or ""},
    }
    for name, value in (extra or {}).items():
        if name in record or name in SEALS:
            raise ConfigError(f"provenance extra field {name!r}: a reserved field name")
        record[name] = value
    return record


_KEY: ContextVar[bytes | None] = ContextVar("genforge_labelling_key", default=None)


def secret_key(secret: str | bytes | None = None) -> bytes | None:
    """The user's labelling secret: the argument, else the one `using_key` set, else
    GENFORGE_WATERMARK_KEY, else None. A str "file:PATH" is read from that file."""
    if secret is None:
        secret = _KEY.get() or os.environ.get(KEY_ENV) or None
    if secret is None:
        return None
    if isinstance(secret, str) and secret.startswith("file:"):
        path = Path(secret[5:]).expanduser()
        if not path.is_file():
            raise ConfigError(f"labelling.key={secret!r}: no such key file")
        return path.read_bytes().strip()
    return secret.encode() if isinstance(secret, str) else bytes(secret)


@contextlib.contextmanager
def using_key(secret: str | bytes | None) -> Iterator[bytes | None]:
    """Within the block, records are signed with `secret` (e.g. a run's labelling.key) when
    no key is passed explicitly; None leaves GENFORGE_WATERMARK_KEY in charge."""
    key = secret_key(secret) if secret is not None else None
    token = _KEY.set(key)
    try:
        yield key or secret_key()
    finally:
        _KEY.reset(token)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """One key per use (provenance HMAC, image watermark, text watermark) from one secret."""
    return hmac.new(secret, f"genforge/{purpose}".encode(), hashlib.sha256).digest()


def _unsealed(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("digest", "hmac")}


def seal(record: Mapping[str, Any], content_sha256: str, key: bytes | None) -> dict[str, Any]:
    """The record with its content hash, digest and (with a key) HMAC filled in."""
    sealed = {k: v for k, v in record.items() if k not in SEALS}
    for name, value in (("schema", SCHEMA), ("label", LABEL), ("generator", generator())):
        sealed.setdefault(name, value)  # a hand-made record still says what it is
    sealed["content_sha256"] = content_sha256
    sealed["digest"] = hashlib.sha256(canonical_json(sealed)).hexdigest()
    if key is not None:
        mac_key = derive_key(key, "provenance")
        sealed["hmac"] = hmac.new(mac_key, canonical_json(sealed), hashlib.sha256).hexdigest()
        # (the HMAC covers every other field, the digest included)
    return sealed


@dataclass
class Provenance:
    """A record read back from a file, and what checking it found.

    status: "verified" (content and HMAC check out), "intact" (content and digest check out;
    no HMAC, or no key to check it), "tampered" (content, digest or HMAC do not match)."""

    record: dict[str, Any]
    status: str
    detail: str
    where: str

    @property
    def trusted(self) -> bool:
        return self.status == "verified"


def verify(record: Mapping[str, Any], content_sha256: str, where: str,
           key: bytes | None) -> Provenance:
    record = dict(record)
    digest = hashlib.sha256(canonical_json(_unsealed(record))).hexdigest()
    if record.get("content_sha256") != content_sha256:
        return Provenance(record, "tampered", "content changed after labelling", where)
    if record.get("digest") != digest:
        return Provenance(record, "tampered", "the record was edited (digest mismatch)", where)
    if "hmac" not in record:
        return Provenance(record, "intact", "unsigned (no HMAC)", where)
    if key is None:
        return Provenance(record, "intact", f"HMAC not checked: no key (set {KEY_ENV})", where)
    mac_key = derive_key(key, "provenance")
    signed = {k: v for k, v in record.items() if k != "hmac"}
    expected = hmac.new(mac_key, canonical_json(signed), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(record["hmac"])):
        return Provenance(record, "tampered", "HMAC mismatch (edited record or another key)",
                          where)
    return Provenance(record, "verified", "content hash and HMAC match", where)


def describe(path: str | Path, found: Provenance | None) -> str:
    """One line for `genforge inspect`."""
    if found is None:
        return (f"{path}: no provenance record (not made by genforge, or its metadata or "
                "sidecar was stripped)")
    r = found.record
    fields = [f"{r.get('label', '?')}", f"generator={r.get('generator')}",
              f"modality={r.get('modality')}", f"run={r.get('run')}",
              f"config={str(r.get('config_sha256'))[:12]}",
              f"weights={str(r.get('weights_sha256'))[:12]}", f"seed={r.get('seed')}",
              f"time={r.get('created')}"]
    fields += [f"{k}={v}" for k, v in r.items()
               if k not in {"schema", "label", "generator", "modality", "run", "config_sha256",
                            "weights_sha256", "seed", "created", "AIGC", *SEALS}]
    return f"{path}: {found.status.upper()} ({found.detail}; in {found.where}) " + " ".join(fields)
