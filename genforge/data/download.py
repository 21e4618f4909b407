"""Fetch a file from its usual source, verify its checksum, and only then put it in place."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from genforge.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name inside the data set's folder
    md5: str  # checksum of the file as published
    url: str  # the usual source


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_url(remote: RemoteFile) -> str:
    """`GENFORGE_MIRROR` replaces the usual host with a mirror holding the same file names."""
    mirror = os.environ.get("GENFORGE_MIRROR")
    return f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url


def download(remote: RemoteFile, folder: Path, *, timeout: float = 60.0) -> Path:
    """Download `remote` into `folder`; a wrong checksum leaves nothing behind."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    url = mirror_url(remote)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.name}.", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        got = md5sum(tmp)
        if got != remote.md5:
            raise DataError(
                f"{url}: md5 {got} does not match the published {remote.md5}; nothing was saved"
            )
        os.replace(tmp, target)
    except OSError as err:
        raise DataError(f"{url}: download failed ({err}); put {remote.name} in {folder}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
