"""The HTTP app: a thin adapter over `genforge.load(run)` and `GenerativeModel.sample`.

    from genforge.serve import create_app, Limits
    app = create_app(["runs/dcgan1", "runs/gpt1"], keys="keys.txt")   # uvicorn.run(app)

Routes: GET /v1/models, POST /v1/generate, POST /v1/complete, GET /healthz, GET /metrics,
GET / (the web page), /docs (OpenAPI). Every bad body is a 4xx naming its field; a 5xx means a
bug here. Nothing here prints; failures are logged through `logging`.
"""

# No `from __future__ import annotations` here: FastAPI must see the request classes built
# inside create_app as real classes, not as names it cannot resolve.
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genforge.errors import ConfigError, GenforgeError
from genforge.modalities.base import Modality
from genforge.registry import families, get_modality
from genforge.serve.auth import BodyLimit, KeyStore, RateLimiter, is_loopback
from genforge.serve.batching import Batcher, QueueFull
from genforge.serve.knobs import (
    Knob,
    check_options,
    complete_knobs,
    family_of,
    modality_of,
    sample_knobs,
)
from genforge.serve.label import labeller
from genforge.serve.metrics import CONTENT_TYPE, Measured, Metrics
from genforge.serve.schemas import ERRORS, Health, Limits, ModelInfo, ModelList, request_classes
from genforge.serve.store import load_models

NOT_OPTIONS = {"model", "n", "seed", "label", "format", "image", "mask", "mask_image", "rows"}


@dataclass
class Served:
    """One loaded model and what the routes need to know of it."""

    id: str
    model: Any
    family: str
    modality: str
    spec: Modality  # what the routes ask of the model's modality
    knobs: list[Knob]
    complete: list[Knob] | None
    batcher: Batcher

    def info(self) -> ModelInfo:
        return ModelInfo(id=self.id, family=self.family, modality=self.modality,
                         formats=list(self.spec.http_formats),
                         knobs=[k.as_dict() for k in self.knobs],
                         complete=None if self.complete is None else
                         [k.as_dict() for k in self.complete],
                         num_classes=int(getattr(self.model, "num_classes", 0) or 0),
                         **self.spec.http_model_info(self.model.data_info))


def create_app(model_dirs: list[str | Path] | None = None, *, keys: str | Path | None = None,
               limits: Limits | None = None, cors_origins: list[str] | None = None,
               models: Mapping[str, Any] | None = None) -> Any:
    """The ASGI app serving `model_dirs` (run folders or transformers folders; safetensors
    only), or already loaded `models` by id. `keys`: a file of SHA-256 key digests; without
    it only loopback clients are answered. CORS is off unless `cors_origins` are named."""
    limits = limits or Limits()
    loaded = dict(models or {}) | load_models(model_dirs or [], taken=set(models or {}))
    store = KeyStore(keys) if keys is not None else None
    metrics = Metrics()
    served = {name: _serve(name, m, limits, metrics) for name, m in loaded.items()}
    Generate, Complete = request_classes(list(served), limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for s in served.values():
            s.batcher.close()  # the worker threads end after their current batch

    app = FastAPI(title="genforge", version="1", summary="Generate from genforge models",
                  lifespan=lifespan)
    app.state.served, app.state.metrics, app.state.limits = served, metrics, limits
    limiter = RateLimiter(limits.rate, limits.burst)
    bearer = HTTPBearer(auto_error=False, description="an API key (when the server has keys)")

    async def client(request: Request,
               cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        """Who is asking (a key's name, or an address without keys); refuses strangers."""
        if store is None:
            host = request.client.host if request.client else ""
            if not is_loopback(host):
                raise _Refused(403, "this server has no API keys and answers loopback only")
            who = host
        else:
            if cred is None or cred.scheme.lower() != "bearer" or not cred.credentials:
                raise _Refused(401, "Authorization: missing; send 'Authorization: Bearer KEY'")
            name = store.check(cred.credentials)
            if name is None:
                raise _Refused(401, "Authorization: unknown or revoked API key")
            who = "key:" + name
        wait = limiter.take(who)
        if wait > 0:
            raise _Refused(429, f"rate limit: {limits.rate:g} requests/s; retry in {wait:.2f}s",
                           {"Retry-After": str(max(1, round(wait)))})
        return who

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def list_models(_: str = Depends(client)) -> ModelList:
        """Every loaded model: family, modality, output formats and the knobs it takes."""
        return ModelList(models=[s.info() for s in served.values()])

    @app.post("/v1/generate", responses={**ERRORS, 200: {"description": "samples", "content": {
        "image/png": {}, "application/json": {"schema": {"type": "object"}},
        "text/csv": {}, "text/event-stream": {}}}}, response_class=Response)
    async def generate(body: Generate, _: str = Depends(client)) -> Response:  # type: ignore
        """Samples of one model: images as a PNG grid or JSON, texts as JSON or server-sent
        events (`stream: true`), series and tables as CSV or JSON."""
        s = served[body.model]
        given = body.model_dump(exclude_none=True)
        n = given.get("n") or _default(s.knobs, "n")
        options = {k: v for k, v in given.items() if k not in NOT_OPTIONS}
        check_options(s.knobs, {k: v for k, v in given.items()
                                if k in options or k == "label"}, s.family)
        fmt = _format(s, given.get("format"))
        label = _label(given.get("label"), n)
        if options.pop("stream", False):
            return await _stream(s, n, given.get("seed"), options, limits)
        samples = await s.batcher.submit(n, seed=given.get("seed"), label=label,
                                         timeout=limits.timeout_s, **options)
        meta = {"model": s.id, "n": n, "seed": given.get("seed"),
                **s.spec.http_meta(s.model.data_info)}
        content, media = s.spec.http_body(samples, fmt, meta,
                                          labeller(s.model, given.get("seed")))
        return Response(content, media_type=media, headers=_seed_header(given.get("seed")))

    @app.post("/v1/complete", responses={**ERRORS, 200: {"description": "the filled image",
        "content": {"image/png": {}, "application/json": {"schema": {"type": "object"}}}}},
        response_class=Response)
    async def complete(body: Complete, _: str = Depends(client)) -> Response:  # type: ignore
        """Inpainting: the uploaded image with its masked pixels filled in by the model;
        tables: the uploaded CSV rows with their empty cells filled in."""
        s = served[body.model]
        if s.complete is None:
            raise ConfigError(f"model: {s.id} ({s.family}, {s.modality}) cannot complete")
        given = body.model_dump(exclude_none=True)
        options = {k: v for k, v in given.items() if k not in NOT_OPTIONS}
        check_options(s.complete, options, s.family)
        seed = given.get("seed", 0)
        job = s.spec.http_completion(s.model, s.id, given, options, seed, limits.max_upload)
        filled = await s.batcher.run_alone(job.run, timeout=limits.timeout_s)
        content, media = job.body(filled, labeller(s.model, seed, **job.record))
        return Response(content, media_type=media)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok", models=list(served), worker=os.getpid())

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
    async def prometheus() -> Response:
        for s in served.values():
            metrics.queue_depth.labels(s.id).set(s.batcher.depth)
        return Response(metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((resources.files("genforge.serve") / "static" / "index.html")
                            .read_text(encoding="utf-8"))

    _errors(app, frozenset(Generate.model_fields) | frozenset(Complete.model_fields))
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization",
                                                                          "Content-Type"])
    outer = Measured(BodyLimit(app, limits.max_body), metrics)  # 413s are counted too
    outer.state = app.state  # type: ignore[attr-defined]
    outer.fastapi = app  # type: ignore[attr-defined]  (its routes, for tests and Ray)
    return outer


def _serve(name: str, model: Any, limits: Limits, metrics: Metrics) -> Served:
    if limits.chunk < 1:
        raise ConfigError(f"chunk={limits.chunk}: rows per image pass must be >= 1")
    batcher = Batcher(model, max_batch=limits.max_batch, max_wait_ms=limits.max_wait_ms,
                      enabled=limits.batching, max_queue=limits.max_queue, chunk=limits.chunk,
                      observe=lambda r, n: metrics.observe_batch(name, r, n))
    family, modality = family_of(model), modality_of(model)
    spec = getattr(model, "modality_spec", None) or get_modality(modality)
    can = complete_knobs(model, limits) if spec.completes and _can_complete(model, family) \
        else None
    return Served(name, model, family, modality, spec, sample_knobs(model, limits), can,
                  batcher)


def _can_complete(model: Any, family: str) -> bool:
    spec = getattr(model, "family_spec", None) or families().get(family)
    return bool(spec is not None and spec.can_complete)


def _default(knobs: list[Knob], name: str) -> Any:
    return next(k.default for k in knobs if k.name == name)


def _format(s: Served, fmt: str | None) -> str:
    allowed = s.spec.http_formats
    if fmt is not None and fmt not in allowed:
        raise ConfigError(f"format: {fmt!r} does not apply to {s.modality}; allowed are "
                          f"{', '.join(allowed)}")
    return fmt or allowed[0]


def _label(label: int | list[int] | None, n: int) -> int | list[int] | None:
    if isinstance(label, list) and len(label) not in (1, n):
        raise ConfigError(f"label: {len(label)} labels for n={n}; give one, or one a sample")
    return label


def _seed_header(seed: int | None) -> dict[str, str]:
    return {} if seed is None else {"X-Genforge-Seed": str(seed)}


async def _stream(s: Served, n: int, seed: int | None, options: dict[str, Any],
            limits: Limits) -> StreamingResponse:
    """Server-sent events: `token` events with the first sample's new text as it comes, then
    `done` with every text (or `error`)."""
    from genforge.serve.streaming import text_events

    events: AsyncIterator[bytes] = await text_events(s.batcher, s.model, s.id, n, seed, options,
                                                     limits.timeout_s, labeller)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", **_seed_header(seed)})


class _Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        self.status, self.detail, self.headers = status, detail, headers


def _field_error(message: str, fields: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """A 422 body shaped like FastAPI's own, with the field a message starts with (its first
    word where that names a request field: the CLI's "--where sex=x: ..." names `where`)."""
    head = message.split(":", 1)[0].strip().lstrip("-").replace("-", "_")
    if not head.isidentifier():
        word = re.match(r"[A-Za-z_]\w*", head)
        head = word.group(0) if word and word.group(0) in fields else ""
    loc = ["body", head] if head else ["body"]
    return [{"loc": loc, "msg": message, "type": "value_error"}]


def _errors(app: FastAPI, fields: frozenset[str]) -> None:
    @app.exception_handler(_Refused)
    async def refused(_: Request, err: _Refused) -> JSONResponse:
        return JSONResponse({"detail": err.detail}, err.status, headers=err.headers)

    @app.exception_handler(QueueFull)
    async def full(_: Request, err: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(GenforgeError)
    async def bad_value(_: Request, err: GenforgeError) -> JSONResponse:
        return JSONResponse({"detail": _field_error(str(err), fields)}, 422)

    @app.exception_handler(TimeoutError)
    async def too_slow(_: Request, err: TimeoutError) -> JSONResponse:
        return JSONResponse({"detail": "the request took longer than the server's timeout"},
                            504)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in err.errors()]
        return JSONResponse({"detail": detail}, 422)
