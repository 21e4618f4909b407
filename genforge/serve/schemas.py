"""Request and response bodies. The request classes are built per app, so that the OpenAPI
document lists the loaded model ids and the server's caps as the schema's enum and bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from genforge.options import Option
from genforge.registry import complete_options, sample_options
from genforge.serve.knobs import cap_of, floor_of

MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # never a path: no slash, no leading dot
MASK = r"^(bottom-half|top-half|left-half|right-half|center|random:0?\.[0-9]{1,4})$"


@dataclass
class Limits:
    """What one request may ask for, and how the server batches and times it."""

    max_n: int = 64  # samples per request
    max_new_tokens: int = 512
    max_steps: int = 250  # diffusion steps, VAE completion steps (and RePaint's jump)
    max_resample: int = 10  # RePaint rounds per jump: each multiplies the network calls
    max_horizon: int = 1000  # series steps
    max_prompt: int = 4000  # characters
    max_body: int = 4 * 2**20  # bytes of a request body
    max_upload: int = 2 * 2**20  # bytes of one decoded image upload
    timeout_s: float = 120.0  # per request, queueing included
    rate: float = 50.0  # requests a second per key (or per address without keys); 0: off
    burst: int = 100
    batching: bool = True
    max_batch: int = 64  # samples in one forward pass
    max_wait_ms: float = 5.0  # how long a batch waits for company
    chunk: int = 8  # rows of every forward pass of merged image requests (fixed shape)
    max_queue: int = 512  # waiting requests per model, then 503


def request_classes(ids: list[str], limits: Limits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The bodies of POST /v1/generate and POST /v1/complete for these models and caps."""
    model_field = (Literal[tuple(ids)] if ids else str,  # type: ignore[valid-type]
                   Field(description="a model id from GET /v1/models"))
    seed = (int | None, Field(None, ge=0, le=2**63 - 1, description="same seed, same samples"))
    label = (int | list[int] | None, Field(None, description="class label: one, or one a sample"))
    common = {"model_config": ConfigDict(extra="forbid")}
    generate = create_model(
        "GenerateRequest", __config__=common["model_config"],
        model=model_field,
        n=(int | None, Field(None, ge=1, le=limits.max_n, description="number of samples")),
        seed=seed, label=label,
        format=(Literal["png", "json", "array", "csv"] | None,
                Field(None, description="images: png (a grid), json (base64 PNGs), array; "
                      "text: json; series and tables: csv or json")),
        stream=(bool | None, Field(None, description="text: server-sent events, token by token")),
        **option_fields(sample_options(), limits),
    )
    complete = create_model(
        "CompleteRequest", __config__=common["model_config"],
        model=model_field,
        image=(str | None, Field(None, max_length=limits.max_body,
                                 description="images: base64 PNG or JPEG of the model's size")),
        rows=(str | None, Field(None, max_length=limits.max_body,
                                description="tables: CSV rows whose empty cells are filled")),
        mask=(str | None, Field(None, pattern=MASK, description="a named mask or random:P")),
        mask_image=(str | None, Field(None, max_length=limits.max_body,
                                      description="base64 PNG; white (>= 128) = missing")),
        seed=seed, label=label,
        format=(Literal["png", "json"] | None, None),
        **option_fields(complete_options(), limits),
    )
    return generate, complete


def option_fields(options: dict[str, Option], limits: Limits) -> dict[str, Any]:
    """One optional request field per option of the registry (the CLI's flags come from the
    same table), bounded by the option's range and the server's caps."""
    fields: dict[str, Any] = {}
    for o in options.values():
        bounds: dict[str, Any] = {}
        if o.type in (int, float):
            if floor_of(o.name) is not None:
                bounds["ge"] = floor_of(o.name)
            elif o.minimum is not None:
                bounds["gt" if o.exclusive_minimum else "ge"] = o.minimum
            high = [v for v in (o.maximum, cap_of(o.name, limits)) if v is not None]
            if high:
                bounds["le"] = min(high)
        if o.choices:
            kind: Any = Literal[tuple(o.choices)]  # type: ignore[valid-type]
        elif o.type is list:
            kind, bounds["max_length"] = list[str], 8
        elif o.type is str:
            kind, bounds["max_length"] = str, cap_of(o.name, limits) or 256
        else:
            kind = o.type
        fields[o.name] = (kind | None, Field(None, description=o.help, **bounds))
    return fields


class KnobInfo(BaseModel):
    name: str
    type: str
    help: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = None


class ModelInfo(BaseModel):
    id: str
    family: str
    modality: str
    formats: list[str]
    knobs: list[KnobInfo]
    complete: list[KnobInfo] | None = Field(None, description="null: cannot complete")
    num_classes: int = 0
    image: dict[str, int] | None = None  # channels, size


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str
    models: list[str]
    worker: int  # the answering process (several answer one port under --workers)


class Problem(BaseModel):
    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text} for code, text in {
        400: "a body that cannot be parsed (not UTF-8 JSON)",
        401: "missing, unknown or revoked API key", 403: "not from loopback (no keys set)",
        413: "body over the limit", 429: "rate limit; see Retry-After",
        503: "the model's queue is full; see Retry-After", 504: "the request timed out"}.items()}
