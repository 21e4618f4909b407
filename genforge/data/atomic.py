"""Files written whole or not at all: a temporary name, renamed into place when complete.

    with atomic_path(Path("grid.png")) as tmp:
        picture.save(tmp, format="PNG")

A failure (a full disk, a file size limit) removes the temporary file, and an OSError that
names no file is raised again naming the one being written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` once the block is done."""
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
