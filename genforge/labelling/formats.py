"""Where a provenance record lives in each file format, and what "the content" is there.

| format  | record                                              | content hashed               |
|---------|-----------------------------------------------------|------------------------------|
| PNG     | tEXt `genforge:provenance` + iTXt XMP packet        | the file less those chunks   |
| JPEG    | APP1 XMP packet + a COM label                       | the file less those segments |
| WAV     | RIFF LIST/INFO chunk (ISFT generator, ICMT record)  | the file less that chunk     |
| Parquet | key-value metadata `genforge.provenance`            | the table's data (Arrow IPC) |
| JSON    | a top-level `provenance` field (objects)            | the document less the field  |
| CSV     | sidecar `<file>.provenance.json`; on request a first line `# provenance: {...}` |
|         |                                                     | the file (less that line)    |
| others  | sidecar `<file>.provenance.json` (TXT, JSONL, NPZ, JSON arrays...) | the file      |

Records are inserted into the bytes of a file already written (PNG, JPEG, WAV), so any such
file can be labelled, not only those genforge wrote; a second embedding replaces the first.
`label_bytes` labels the in-file forms (PNG, a JSON object, CSV with its comment line) in
memory, by the same code that `embed_provenance` runs on a file's bytes (the server's bodies).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Mapping
from html import escape, unescape
from pathlib import Path
from typing import Any

from genforge.errors import ConfigError, DataError
from genforge.labelling.provenance import (
    IPTC_TRAINED_ALGORITHMIC,
    LABEL,
    SCHEMA,
    Provenance,
    canonical_json,
    generator,
    seal,
    secret_key,
    verify,
)

XMP_NS = "urn:genforge:provenance:1#"
RECORD_KEY = "genforge:provenance"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _parse_record(text: str) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("schema") == SCHEMA else None


def xmp_packet(record: Mapping[str, Any]) -> str:
    """An XMP packet with the IPTC digital source type, the label and the whole record."""
    body = escape(json.dumps(record, sort_keys=True, ensure_ascii=False), quote=True)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'    xmlns:genforge="{XMP_NS}"\n'
        f'    Iptc4xmpExt:DigitalSourceType="{IPTC_TRAINED_ALGORITHMIC}"\n'
        f'    xmp:CreatorTool="{escape(generator())}"\n'
        f'    genforge:Label="{LABEL}"\n'
        f'    genforge:Record="{body}"/>\n'
        ' </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>'
    )


def record_from_xmp(packet: str) -> dict[str, Any] | None:
    found = re.search(r'genforge:Record="([^"]*)"', packet)
    return _parse_record(unescape(found.group(1))) if found else None


# ------------------------------------------------------------------------------------ PNG
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes, path: Path | str) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise DataError(f"{path}: not a PNG file (no PNG signature)")
    chunks, i = [], len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        chunks.append((kind, data[i + 8 : i + 8 + length]))
        i += 12 + length
    return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_ours(kind: bytes, body: bytes) -> bool:
    if kind == b"tEXt":
        return body.startswith(RECORD_KEY.encode() + b"\0")
    return kind == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\0") and XMP_NS.encode() in body


class PNG:
    @staticmethod
    def _split(data: bytes, path: Path | str
               ) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        chunks = _png_chunks(data, path)
        return ([c for c in chunks if not _png_ours(*c)], [c for c in chunks if _png_ours(*c)])

    @staticmethod
    def _content(chunks: list[tuple[bytes, bytes]]) -> str:
        return _sha(b"".join(_png_chunk(k, b) for k, b in chunks))

    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, **_: Any) -> Path:
        _atomic_write(path, self.labelled(path.read_bytes(), record, key, path))
        return path

    def labelled(self, data: bytes, record: Mapping[str, Any], key: bytes | None,
                 name: Path | str = "PNG body", **_: Any) -> bytes:
        chunks, _ = self._split(data, name)
        sealed = seal(record, self._content(chunks), key)
        text = json.dumps(sealed, sort_keys=True, ensure_ascii=True)  # tEXt is Latin-1
        ours = [(b"tEXt", RECORD_KEY.encode() + b"\0" + text.encode("latin-1")),
                (b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp_packet(sealed).encode())]
        chunks[1:1] = ours  # right after IHDR, so readers that stop at IDAT still see it
        return PNG_SIGNATURE + b"".join(_png_chunk(k, b) for k, b in chunks)

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        chunks, ours = self._split(path.read_bytes(), path)
        text = next((b.split(b"\0", 1)[1].decode("latin-1") for k, b in ours if k == b"tEXt"),
                    None)
        xmp = next((b.split(b"\0", 5)[5].decode("utf-8", "replace") for k, b in ours
                    if k == b"iTXt"), None)
        record = _parse_record(text) if text is not None else None
        from_xmp = record_from_xmp(xmp) if xmp is not None else None
        if record is None and from_xmp is None:
            return None
        found = verify(record or from_xmp or {}, self._content(chunks),
                       "PNG tEXt+XMP" if record and from_xmp else
                       "PNG tEXt" if record else "PNG XMP", key)
        if record and from_xmp and record != from_xmp and found.status != "tampered":
            return Provenance(record, "tampered", "the tEXt record and its XMP copy differ",
                              found.where)
        return found


# ----------------------------------------------------------------------------------- JPEG
XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\0"
COM_PREFIX = b"genforge: "


def _jpeg_segments(data: bytes, path: Path) -> list[bytes]:
    """The file as a list of byte pieces: SOI, each marker segment, then the rest from SOS."""
    if not data.startswith(b"\xff\xd8"):
        raise DataError(f"{path}: not a JPEG file (no SOI marker)")
    pieces, i = [data[:2]], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise DataError(f"{path}: broken JPEG (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the entropy-coded data and the rest
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        pieces.append(data[i : i + 2 + length])
        i += 2 + length
    pieces.append(data[i:])
    return pieces


def _jpeg_ours(piece: bytes) -> bool:
    app1 = piece[:2] == b"\xff\xe1" and piece[4:].startswith(XMP_APP1) and XMP_NS.encode() in piece
    return app1 or (piece[:2] == b"\xff\xfe" and piece[4:].startswith(COM_PREFIX))


def _segment(marker: bytes, body: bytes) -> bytes:
    if len(body) + 2 > 0xFFFF:
        raise DataError(f"provenance record of {len(body)} bytes does not fit a JPEG segment")
    return marker + struct.pack(">H", len(body) + 2) + body


class JPEG:
    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, **_: Any) -> Path:
        pieces = [p for p in _jpeg_segments(path.read_bytes(), path) if not _jpeg_ours(p)]
        sealed = seal(record, _sha(b"".join(pieces)), key)
        ours = [_segment(b"\xff\xe1", XMP_APP1 + xmp_packet(sealed).encode()),
                _segment(b"\xff\xfe", COM_PREFIX + f"{LABEL} by {generator()}".encode())]
        at = 2 if not pieces[1].startswith(b"\xff\xe0") else 3  # after JFIF's APP0
        pieces[at:at] = ours
        _atomic_write(path, b"".join(pieces))
        return path

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        pieces = _jpeg_segments(path.read_bytes(), path)
        xmp = next((p[4 + len(XMP_APP1):].decode("utf-8", "replace") for p in pieces
                    if _jpeg_ours(p) and p[1] == 0xE1), None)
        record = record_from_xmp(xmp) if xmp else None
        if record is None:
            return None
        content = _sha(b"".join(p for p in pieces if not _jpeg_ours(p)))
        return verify(record, content, "JPEG XMP", key)


# ------------------------------------------------------------------------------------ WAV
def _riff_chunks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{path}: not a RIFF WAVE file")
    chunks, i = [], 12
    while i + 8 <= len(data):
        kind, (size,) = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])
        chunks.append((kind, data[i + 8 : i + 8 + size]))
        i += 8 + size + (size & 1)
    return chunks


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def _info_fields(body: bytes) -> dict[bytes, bytes]:
    """The sub-chunks of a LIST/INFO chunk's body (after 'INFO')."""
    fields, i = {}, 4
    while i + 8 <= len(body):
        kind, (size,) = body[i : i + 4], struct.unpack("<I", body[i + 4 : i + 8])
        fields[kind] = body[i + 8 : i + 8 + size].rstrip(b"\0")
        i += 8 + size + (size & 1)
    return fields


def _wav_ours(kind: bytes, body: bytes) -> bool:
    """Our LIST/INFO: its ICMT comment is a provenance record (JSON, so tools that show the
    comment show the label and the record)."""
    if kind != b"LIST" or body[:4] != b"INFO":
        return False
    comment = _info_fields(body).get(b"ICMT", b"")
    text = comment.decode("utf-8", "replace")
    return text.startswith("{") and _parse_record(text) is not None


class WAV:
    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, **_: Any) -> Path:
        chunks = [c for c in _riff_chunks(path.read_bytes(), path) if not _wav_ours(*c)]
        body = b"".join(_riff_chunk(k, b) for k, b in chunks)
        sealed = seal(record, _sha(body), key)
        info = (b"INFO" + _riff_chunk(b"ISFT", generator().encode() + b"\0")
                + _riff_chunk(b"ICMT", json.dumps(sealed, sort_keys=True).encode() + b"\0"))
        body += _riff_chunk(b"LIST", info)
        _atomic_write(path, b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
        return path

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        chunks = _riff_chunks(path.read_bytes(), path)
        ours = [b for k, b in chunks if _wav_ours(k, b)]
        if not ours:
            return None
        record = _parse_record(_info_fields(ours[0])[b"ICMT"].decode("utf-8", "replace"))
        body = b"".join(_riff_chunk(k, b) for k, b in chunks if not _wav_ours(k, b))
        return verify(record, _sha(body), "WAV LIST/INFO", key)


# -------------------------------------------------------------------------------- Parquet
PARQUET_KEY = b"genforge.provenance"


def _table_hash(parquet: Any) -> str:
    """The data of a Parquet file, row group by row group (one in memory at a time), each as an
    Arrow IPC stream without schema metadata, hashed."""
    import pyarrow as pa

    digest = hashlib.sha256()
    for i in range(parquet.num_row_groups):
        table = parquet.read_row_group(i).replace_schema_metadata(None)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


class Parquet:
    """Parquet keeps key-value metadata in its footer, written last: embedding copies the file
    row group by row group into one whose schema metadata holds the record."""

    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, **_: Any) -> Path:
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        sealed = seal(record, _table_hash(source), key)
        schema = source.schema_arrow
        meta = {k: v for k, v in (schema.metadata or {}).items() if k != PARQUET_KEY}
        meta[PARQUET_KEY] = json.dumps(sealed, sort_keys=True).encode()
        tmp = path.with_name(f".{path.name}.tmp")
        with pq.ParquetWriter(str(tmp), schema.with_metadata(meta)) as writer:
            for i in range(source.num_row_groups):
                writer.write_table(source.read_row_group(i))
        tmp.replace(path)
        return path

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        text = (source.schema_arrow.metadata or {}).get(PARQUET_KEY)
        record = _parse_record(text.decode()) if text else None
        if record is None:
            return None
        return verify(record, _table_hash(source), "Parquet metadata", key)


# -------------------------------------------------------------------- sidecars, CSV, JSON
def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".provenance.json")


class Sidecar:
    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, **_: Any) -> Path:
        sealed = seal(record, _file_sha(path), key)
        side = sidecar_path(path)
        _atomic_write(side, (json.dumps(sealed, indent=1, sort_keys=True, ensure_ascii=False)
                             + "\n").encode())
        return side

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        side = sidecar_path(path)
        if not side.is_file():
            return None
        record = _parse_record(side.read_text(encoding="utf-8"))
        if record is None:
            return None
        return verify(record, _file_sha(path), f"sidecar {side.name}", key)


CSV_COMMENT = b"# provenance: "


class CSV(Sidecar):
    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, *,
              csv_comment: bool = False, **_: Any) -> Path:
        data = self._body(path.read_bytes())
        if not csv_comment:
            _atomic_write(path, data)  # a comment from an earlier labelling goes
            return super().embed(path, record, key)
        sidecar_path(path).unlink(missing_ok=True)  # one record per file: a stale sidecar goes
        _atomic_write(path, self.labelled(data, record, key))
        return path

    def labelled(self, data: bytes, record: Mapping[str, Any], key: bytes | None,
                 **_: Any) -> bytes:
        """The body with its first line `# provenance: {...}` (the csv_comment form)."""
        data = self._body(data)
        sealed = seal(record, _sha(data), key)
        line = CSV_COMMENT + json.dumps(sealed, sort_keys=True, ensure_ascii=False).encode()
        return line + b"\n" + data

    @staticmethod
    def _body(data: bytes) -> bytes:
        return data.split(b"\n", 1)[1] if data.startswith(CSV_COMMENT) else data

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        found = super().read(path, key)
        data = path.read_bytes()
        if found is not None or not data.startswith(CSV_COMMENT):
            return found
        record = _parse_record(data.split(b"\n", 1)[0][len(CSV_COMMENT):].decode())
        if record is None:
            return None
        return verify(record, _sha(self._body(data)), "CSV header comment", key)


class JSONDoc(Sidecar):
    """An object gets a `provenance` field; anything else (a list) a sidecar."""

    FIELD = "provenance"

    def embed(self, path: Path, record: Mapping[str, Any], key: bytes | None, **_: Any) -> Path:
        labelled = self.labelled(path.read_bytes(), record, key)
        if labelled is None:
            return super().embed(path, record, key)
        _atomic_write(path, labelled)
        return path

    def labelled(self, data: bytes, record: Mapping[str, Any], key: bytes | None,
                 **_: Any) -> bytes | None:
        """The document with its `provenance` field; None for a JSON that is not an object
        (its record goes in a sidecar)."""
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict):
            return None
        doc.pop(self.FIELD, None)
        doc[self.FIELD] = seal(record, _json_hash(doc), key)
        return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()

    def read(self, path: Path, key: bytes | None) -> Provenance | None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return super().read(path, key)
        if not (isinstance(doc, dict) and isinstance(doc.get(self.FIELD), dict)):
            return super().read(path, key)
        record = doc.pop(self.FIELD)
        if record.get("schema") != SCHEMA:
            return None
        return verify(record, _json_hash(doc), "JSON field 'provenance'", key)


def _json_hash(doc: dict[str, Any]) -> str:

    return _sha(canonical_json({k: v for k, v in doc.items() if k != JSONDoc.FIELD}))


HANDLERS: dict[str, Any] = {".png": PNG(), ".jpg": JPEG(), ".jpeg": JPEG(), ".wav": WAV(),
                            ".parquet": Parquet(), ".csv": CSV(), ".json": JSONDoc()}


def handler_for(path: Path) -> Any:
    """The format handler for a file name (a sidecar for any suffix without its own)."""
    return HANDLERS.get(path.suffix.lower(), Sidecar())


def embed_provenance(path: str | Path, record: Mapping[str, Any], *,
                     key: str | bytes | None = None, csv_comment: bool = False) -> Path:
    """Seal `record` for the file at `path` and store it there (or in its sidecar); returns the
    file that holds the record. `key` defaults to GENFORGE_WATERMARK_KEY (none: unsigned)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file to label")
    return handler_for(path).embed(path, record, secret_key(key), csv_comment=csv_comment)


IN_MEMORY = {".png": PNG(), ".json": JSONDoc(), ".csv": CSV()}  # their csv_comment form


def label_bytes(suffix: str, data: bytes, record: Mapping[str, Any], *,
                key: str | bytes | None = None) -> bytes | None:
    """`data`, the body of a file named *suffix, with `record` sealed into it, as
    `embed_provenance(path, record, csv_comment=True)` writes that file; None where the record
    would need a sidecar (any other suffix, a JSON that is not an object)."""
    handler = IN_MEMORY.get(suffix.lower())
    return None if handler is None else handler.labelled(data, record, secret_key(key))


def read_provenance(path: str | Path, *, key: str | bytes | None = None) -> Provenance | None:
    """The record of `path` with its check, or None where the file carries none."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return handler_for(path).read(path, secret_key(key))
