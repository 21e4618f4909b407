"""The HTTP app: a thin adapter over `genforge.load(run)` and `GenerativeModel.sample`.

    from genforge.serve import create_app, Limits
    app = create_app(["runs/dcgan1", "runs/gpt1"], keys="keys.txt")   # uvicorn.run(app)

Routes: GET /v1/models, POST /v1/generate, POST /v1/complete, GET /healthz, GET /metrics,
GET / (the web page), /docs (OpenAPI). Every bad body is a 4xx naming its field; a 5xx means a
bug here. Nothing here prints; failures are logged through `logging`.
"""

# No `from __future__ import annotations` here: FastAPI must see the request classes built
# inside create_app as real classes, not as names it cannot resolve.
import base64
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genforge.errors import ConfigError, GenforgeError
from genforge.serve import encode
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

TEXT_ONLY = ("stream",)
NOT_OPTIONS = {"model", "n", "seed", "label", "format", "image", "mask", "mask_image", "rows"}


@dataclass
class Served:
    """One loaded model and what the routes need to know of it."""

    id: str
    model: Any
    family: str
    modality: str
    knobs: list[Knob]
    complete: list[Knob] | None
    batcher: Batcher

    def info(self) -> ModelInfo:
        image = None
        if self.modality == "images":
            image = {"channels": int(self.model.data_info["channels"]),
                     "size": int(self.model.data_info["image_size"])}
        return ModelInfo(id=self.id, family=self.family, modality=self.modality,
                         formats=list(encode.FORMATS.get(self.modality, ("json",))),
                         knobs=[k.as_dict() for k in self.knobs],
                         complete=None if self.complete is None else
                         [k.as_dict() for k in self.complete],
                         num_classes=int(getattr(self.model, "num_classes", 0) or 0),
                         image=image)


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
        meta = {"model": s.id, "n": n, "seed": given.get("seed")}
        if s.modality == "audio":
            meta["sample_rate"] = int(s.model.data_info["sample_rate"])
        content, media = encode.body_for(s.modality, samples, fmt, meta,
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
        if s.modality == "tables":
            return await _complete_rows(s, given, seed, limits)
        if "image" not in given:
            raise ConfigError("image: required (a base64 PNG or JPEG)")
        info = s.model.data_info
        x = encode.decode_image("image", given["image"], int(info["channels"]),
                                int(info["image_size"]), max_bytes=limits.max_upload)
        mask = _mask(given, info, limits)
        label = _label(given.get("label"), 1)
        if label is None and s.info().num_classes:  # the VAE's complete needs one
            raise ConfigError(f"label: {s.id} is class-conditional; give the image's label")
        filled = await s.batcher.run_alone(
            lambda: s.model.complete(x[None], mask, seed=seed, label=label, **options),
            timeout=limits.timeout_s)
        image = np.asarray(filled.cpu() if isinstance(filled, torch.Tensor) else filled)[0]
        label = labeller(s.model, seed, operation="complete",
                         mask=given.get("mask", "mask_image"), input="upload")
        png = label(".png", encode.png_bytes(image))
        if given.get("format") == "json":
            doc = json.dumps({"model": s.id, "seed": seed,
                              "image": base64.b64encode(png).decode()}).encode()
            return Response(label(".json", doc), media_type="application/json")
        return Response(png, media_type="image/png")

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
    can = complete_knobs(model, limits) if modality in ("images", "tables") and \
        _can_complete(family) else None
    return Served(name, model, family, modality, sample_knobs(model, limits), can, batcher)


def _can_complete(family: str) -> bool:
    from genforge.registry import FAMILIES

    spec = FAMILIES.get(family)
    return bool(spec is not None and spec.can_complete)


def _default(knobs: list[Knob], name: str) -> Any:
    return next(k.default for k in knobs if k.name == name)


def _format(s: Served, fmt: str | None) -> str:
    allowed = encode.FORMATS.get(s.modality, ("json",))
    if fmt is not None and fmt not in allowed:
        raise ConfigError(f"format: {fmt!r} does not apply to {s.modality}; allowed are "
                          f"{', '.join(allowed)}")
    return fmt or allowed[0]


def _label(label: int | list[int] | None, n: int) -> int | list[int] | None:
    if isinstance(label, list) and len(label) not in (1, n):
        raise ConfigError(f"label: {len(label)} labels for n={n}; give one, or one a sample")
    return label


def _mask(given: dict[str, Any], info: dict[str, Any], limits: Limits) -> torch.Tensor:
    """The mask of /v1/complete: a named one (never a file: the schema's pattern allows no
    path) or an uploaded picture, white where pixels are missing. (1, 1, H, W) bool."""
    size = int(info["image_size"])
    if ("mask" in given) == ("mask_image" in given):
        raise ConfigError("mask: give either mask (a name) or mask_image (a PNG), not both")
    if "mask" in given:
        from genforge.modalities.images.masks import make_mask

        return make_mask(given["mask"], (1, int(info["channels"]), size, size),
                         seed=given.get("seed", 0))
    pixels = encode.decode_image("mask_image", given["mask_image"], 1, size,
                                 max_bytes=limits.max_upload)
    return torch.from_numpy(pixels >= 128)[None]  # (1, 1, H, W)


async def _complete_rows(s: Served, given: dict[str, Any], seed: int,
                         limits: Limits) -> Response:
    """Imputation: CSV rows in, the same rows with their empty cells filled out."""
    if "rows" not in given:
        raise ConfigError("rows: required for a tables model (CSV text with a header)")
    frame = encode.read_rows("rows", given["rows"])
    try:
        filled = await s.batcher.run_alone(lambda: s.model.complete_rows(frame, seed=seed),
                                           timeout=limits.timeout_s)
    except GenforgeError as err:  # "the rows: column 'x' is not in the model's schema"
        raise ConfigError(f"rows: {err}") from None
    content, media = encode.tables_body(filled, given.get("format") or "csv",
                                        {"model": s.id, "seed": seed},
                                        labeller(s.model, seed, operation="complete",
                                                 input="upload"))
    return Response(content, media_type=media)


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
