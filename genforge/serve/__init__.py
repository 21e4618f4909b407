"""Serving: a REST API over `genforge.load(run)` with dynamic batching, API keys and limits,
and a web page to try each model. `create_app(model_dirs, keys=..., limits=...)` builds it."""

from genforge.serve.schemas import Limits

__all__ = ["Limits", "create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See `genforge.serve.app.create_app` (imported on use: FastAPI loads only here)."""
    from genforge.serve.app import create_app as _create

    return _create(*args, **kwargs)
