"""The same app on Ray Serve, for more than one machine (`genforge serve --ray`, extra `ray`).

    from genforge.serve.ray_app import deploy
    deploy(["runs/dcgan1", "runs/gpt1"], replicas=4, port=8000)   # blocks; Ctrl-C stops

Each replica is one process holding the models and the very app of `create_app` (routes,
keys, limits, the page), to which the deployment's one catch-all route hands every request
(its body streams back as sent); Ray's proxy spreads requests over the
replicas, and inside a replica the app's own dynamic batching gathers concurrent requests,
exactly as under uvicorn. Run folders must be readable at the same path on every node (a
shared volume, or the container image of docs/serving.md). Ray is imported only here.
"""

# No `from __future__ import annotations`: FastAPI must see `Request` in `forward` as the
# class, which is imported inside build().
from pathlib import Path
from typing import Any

from genforge.errors import ConfigError
from genforge.serve.schemas import Limits


def build(model_dirs: list[str | Path], *, keys: str | Path | None = None,
          limits: Limits | None = None, replicas: int = 1,
          threads: int | None = None) -> Any:
    """A bound Ray Serve application: `serve.run(build(...))` starts it."""
    try:
        from fastapi import FastAPI, Request, Response
        from ray import serve
    except ImportError:
        raise ConfigError("--ray needs Ray Serve: pip install 'genforge[ray]' "
                          "(ray[serve])") from None
    if replicas < 1:
        raise ConfigError(f"--replicas {replicas}: must be at least 1")
    dirs = [str(Path(p).expanduser().resolve()) for p in model_dirs]
    keys_path = None if keys is None else str(Path(keys).resolve())
    limits = limits or Limits()
    outer = FastAPI(title="genforge (Ray Serve)")

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": threads or 1})
    @serve.ingress(outer)
    class GenforgeApp:
        def __init__(self) -> None:
            from genforge.serve.app import create_app
            from genforge.serve.server import configure_process

            configure_process(threads)
            self.genforge = create_app(dirs, keys=keys_path, limits=limits)  # (`app` is Ray's)

        @outer.api_route("/{path:path}", methods=["GET", "POST"], include_in_schema=False)
        async def forward(self, request: Request) -> Response:
            """Every request goes to the replica's genforge app, as it would under uvicorn."""
            return await _forward(self.genforge, request)

    return GenforgeApp.bind()


def deploy(model_dirs: list[str | Path], *, host: str = "127.0.0.1", port: int = 8000,
           keys: str | Path | None = None, limits: Limits | None = None, replicas: int = 1,
           threads: int | None = None, blocking: bool = True) -> Any:
    """Start (or join) a Ray cluster and serve the app on host:port until interrupted."""
    from genforge.serve.auth import KeyStore, check_bind

    check_bind(host, KeyStore(keys) if keys is not None else None)
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    handle = serve.run(build(model_dirs, keys=keys, limits=limits, replicas=replicas,
                             threads=threads), name="genforge", route_prefix="/",
                       blocking=blocking)
    return handle


async def _forward(app: Any, request: Any) -> Any:
    """Run the ASGI `app` on `request`; its body streams back as it is sent (server-sent
    events included)."""
    import asyncio

    from fastapi.responses import StreamingResponse

    messages: asyncio.Queue = asyncio.Queue()

    async def send(message: dict) -> None:
        await messages.put(message)

    async def run() -> None:
        try:
            await app(request.scope, request.receive, send)
        finally:
            await messages.put(None)

    task = asyncio.ensure_future(run())
    start = await messages.get()
    if start is None:  # the app answered nothing: let its exception surface
        await task
        raise RuntimeError("the app sent no response")

    async def body():  # type: ignore[no-untyped-def]
        while (message := await messages.get()) is not None:
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                break
        await task

    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])
               if k.lower() != b"content-length"}
    return StreamingResponse(body(), status_code=start["status"], headers=headers)
