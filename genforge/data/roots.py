"""Where data sets are found: data roots, in order, and a file looked up in them.

Root order: `data.root` / `--data-root`, then `GENFORGE_DATA` (a path list), then the repo's
bundled `data/` (MNIST ships there), then `~/.cache/genforge/data` (where downloads go when no
root is given).
"""

from __future__ import annotations

import os
from pathlib import Path

from genforge.errors import DataError

BUNDLED_ROOT = Path(__file__).resolve().parents[2] / "data"
CACHE_ROOT = Path.home() / ".cache" / "genforge" / "data"


def data_roots(explicit: str | Path | None = None) -> list[Path]:
    roots = [Path(explicit)] if explicit else []
    env = os.environ.get("GENFORGE_DATA")
    if env:
        roots += [Path(p) for p in env.split(os.pathsep) if p]
    roots += [BUNDLED_ROOT, CACHE_ROOT]
    return list(dict.fromkeys(r.expanduser() for r in roots))


def find_in_roots(path: str, explicit: str | Path | None = None, what: str = "the file") -> Path:
    """An absolute `path`, or `path` under the first data root that has it (text corpora,
    CSV series); the error lists every place looked at."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        if candidate.exists():
            return candidate
        raise DataError(f"data.path={path}: no such file or folder")
    roots = data_roots(explicit)
    for root in roots:
        if (root / candidate).exists():
            return root / candidate
    where = ", ".join(str(r / candidate) for r in roots)
    raise DataError(f"data.path={path}: not found; put {what} at one of: {where} (or point "
                    f"GENFORGE_DATA / --data-root at the folder that holds {candidate})")


def check_root(root: str | Path | None, *, download: bool = False) -> Path | None:
    """A data root the user named must exist (a typo must not fall back to other roots),
    unless a download is to fill it."""
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir() and not (download and not path.exists()):
        raise DataError(f"data root {root}: no such folder (from data.root or --data-root)")
    return path
