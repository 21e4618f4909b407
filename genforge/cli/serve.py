"""`genforge serve`: the REST API and web page over one or more runs (genforge.serve).

    genforge serve runs/dcgan1 runs/gpt1 --port 8000 --api-keys keys.txt
    genforge serve runs/dcgan1 --workers 4          # N processes answer one port
    genforge serve runs/dcgan1 --ray --replicas 4   # Ray Serve (the `ray` extra)
    genforge serve --new-key alice >> keys.txt      # prints the key on stderr, the line on stdout
"""

from __future__ import annotations

from typing import Annotated

import typer

from genforge.cli.common import user_errors
from genforge.errors import ConfigError


def serve_command(
    runs: Annotated[list[str] | None, typer.Argument(help="Run folders (or transformers "
                                                     "folders with safetensors).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; other than loopback needs "
                                      "--api-keys.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_keys: Annotated[str | None, typer.Option(help="File of SHA-256 digests of the "
                                                 "accepted keys.")] = None,
    workers: Annotated[int, typer.Option(help="Processes serving the one port.")] = 1,
    threads: Annotated[int | None, typer.Option(help="Torch threads per process.")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Serve through Ray Serve.")] = False,
    replicas: Annotated[int, typer.Option(help="Ray Serve replicas.")] = 1,
    max_n: Annotated[int, typer.Option(help="Samples per request, at most.")] = 64,
    max_new_tokens: Annotated[int, typer.Option(help="Text tokens per request, at most.")] = 512,
    rate: Annotated[float, typer.Option(help="Requests/s per key (0: no limit).")] = 50.0,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 120.0,
    no_batching: Annotated[bool, typer.Option("--no-batching",
                                              help="One forward pass per request.")] = False,
    chunk: Annotated[int, typer.Option(help="Rows of every image forward pass (fixed shape, "
                                       "padded: a seed's images do not depend on its "
                                       "company).")] = 8,
    cors: Annotated[list[str] | None, typer.Option(help="Allowed CORS origin (repeat); "
                                                   "off by default.")] = None,
    new_key: Annotated[str | None, typer.Option(help="Make a key for NAME and exit.")] = None,
) -> None:
    """Serve runs over HTTP: /v1/models, /v1/generate, /v1/complete, /healthz, /metrics, and
    a page at / to try each model."""
    from genforge.serve.auth import new_key as make_key

    if new_key is not None:
        key, line = make_key(new_key)
        typer.echo(f"key for {new_key} (give it out; it is not stored): {key}", err=True)
        typer.echo(line)
        return
    from genforge.serve.schemas import Limits

    limits = Limits(max_n=max_n, max_new_tokens=max_new_tokens, rate=rate, timeout_s=timeout,
                    batching=not no_batching, chunk=chunk)
    with user_errors():
        if not runs:
            raise ConfigError("serve: name at least one run folder")
        from genforge.serve.auth import KeyStore, check_bind

        check_bind(host, KeyStore(api_keys) if api_keys else None)
        typer.echo(f"serving {len(runs)} model(s) on http://{host}:{port}/ "
                   f"({'keys: ' + api_keys if api_keys else 'loopback only, no keys'})",
                   err=True)
        if ray:
            if workers != 1:
                raise ConfigError("--workers applies to uvicorn; with --ray use --replicas")
            from genforge.serve.ray_app import deploy

            deploy(runs, host=host, port=port, keys=api_keys, limits=limits,
                   replicas=replicas, threads=threads)
            return
        from genforge.serve.server import run

        run(runs, host=host, port=port, keys=api_keys, workers=workers, limits=limits,
            cors_origins=cors, threads=threads)
