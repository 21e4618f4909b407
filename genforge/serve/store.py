"""The models a server holds, loaded once at start through `genforge.api.load`.

Only safetensors are ever read: a genforge run folder (model.safetensors) or a transformers
folder whose weights are *.safetensors; a folder holding pickled weights (.bin, .pt, .pth,
.ckpt, .pkl) is refused. Model ids are the folders' names; requests name a model only by an id
from this set, so nothing a client sends becomes a path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from genforge.errors import ConfigError

PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def model_id(path: Path, taken: set[str]) -> str:
    """The folder's name made URL-safe (and unique among `taken`)."""
    name = _UNSAFE.sub("-", path.name).lstrip(".-") or "model"
    name = name[:56]
    unique, k = name, 2
    while unique in taken:
        unique, k = f"{name}-{k}", k + 1
    return unique


def check_safe(path: Path) -> None:
    """Refuse anything but a folder of safetensors weights."""
    if not path.is_dir():
        raise ConfigError(f"{path}: not a folder; serve takes run folders or transformers "
                          "folders")
    if (path / "model.safetensors").is_file() and (path / "config.yaml").is_file():
        return  # a genforge run
    if (path / "config.json").is_file():
        if any(p.suffix in PICKLES for p in path.iterdir()):
            raise ConfigError(f"{path}: holds pickled weights ({', '.join(PICKLES)}); serve "
                              "loads safetensors only (save_pretrained(safe_serialization=True))")
        if any(p.suffix == ".safetensors" for p in path.iterdir()):
            return
    raise ConfigError(f"{path}: neither a genforge run (model.safetensors, config.yaml) nor a "
                      "transformers folder with .safetensors weights")


def load_models(dirs: list[str | Path], *, taken: set[str] | None = None,
                device: str = "cpu") -> dict[str, Any]:
    """id -> GenerativeModel for each folder, in order."""
    from genforge.api import load

    taken = set(taken or ())
    models: dict[str, Any] = {}
    for raw in dirs:
        path = Path(raw).expanduser().resolve()
        check_safe(path)
        name = model_id(path, taken | set(models))
        models[name] = load(path, device=device)
    return models
