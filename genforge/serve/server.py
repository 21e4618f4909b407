"""Running the app under uvicorn: one process, or N processes on one port.

    run(["runs/dcgan1"], host="127.0.0.1", port=8000, workers=4)

With `workers > 1` uvicorn's supervisor forks N processes that share the listening socket;
each builds its own app (and loads its own copy of the models) through `app_from_env`, the
factory that reads the settings this process wrote to GENFORGE_SERVE. The app keeps no state
but the loaded models, so any worker can answer any request.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genforge.errors import ConfigError
from genforge.serve.auth import check_bind
from genforge.serve.schemas import Limits

ENV = "GENFORGE_SERVE"
# The batcher's model thread and the event loop share the GIL. At Python's default 5 ms switch
# interval a model step that ends while the loop encodes a response waits for the loop's
# whole turn. Text, 8 clients, one AVX2 thread: 26.6-27.1 requests/s and p99 3.0-3.4x a lone
# request at 5 ms; 34.2 requests/s and 2.30x at 0.5 ms (32.1 and 2.31x at 0.2 ms).
GIL_SWITCH_S = 0.0005


def app_from_env() -> Any:
    """The uvicorn factory of every worker process."""
    from genforge.serve.app import create_app

    settings = json.loads(os.environ[ENV])
    configure_process(settings["threads"])
    return create_app(settings["model_dirs"], keys=settings["keys"],
                      limits=Limits(**settings["limits"]), cors_origins=settings["cors"])


def run(model_dirs: list[str | Path], *, host: str = "127.0.0.1", port: int = 8000,
        keys: str | Path | None = None, workers: int = 1, limits: Limits | None = None,
        cors_origins: list[str] | None = None, threads: int | None = None,
        log_level: str = "info") -> None:
    """Serve until interrupted. Refuses a non-loopback host without keys, before loading.
    `threads`: torch's intra-op threads in each process (None: torch's default; with several
    workers, cores / workers keeps them from spinning against each other)."""
    import uvicorn

    from genforge.serve.auth import KeyStore

    check_bind(host, KeyStore(keys) if keys is not None else None)
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    if not model_dirs:
        raise ConfigError("serve: name at least one run folder")
    limits = limits or Limits()
    if workers == 1:
        from genforge.serve.app import create_app

        configure_process(threads)
        app = create_app(model_dirs, keys=keys, limits=limits, cors_origins=cors_origins)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    from genforge.serve.store import check_safe

    for path in model_dirs:  # fail here, once, rather than in every worker
        check_safe(Path(path).expanduser().resolve())
    os.environ[ENV] = json.dumps({
        "model_dirs": [str(Path(p).expanduser().resolve()) for p in model_dirs],
        "keys": None if keys is None else str(Path(keys).resolve()),
        "limits": asdict(limits), "cors": list(cors_origins or []), "threads": threads})
    uvicorn.run("genforge.serve.server:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level)


def configure_process(threads: int | None) -> None:
    """Torch's threads of a serving process, and its GIL switch interval (GIL_SWITCH_S)."""
    sys.setswitchinterval(GIL_SWITCH_S)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        import torch

        torch.set_num_threads(threads)
