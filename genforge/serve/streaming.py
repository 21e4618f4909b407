"""Text as server-sent events, from the Python API's own streaming.

The model runs on its batcher's thread (between batches); each piece of the first sample's
text crosses to the event loop through an asyncio queue and goes out as a `token` event. The
`token` events joined are the first text of the `done` event, which carries every sample and
the provenance record (a `provenance` field over the event's data, as in a JSON body).
Sources, in order: `GenerativeModel.stream_text` (an iterator, one sample); else the
`on_text` callback of `sample` (several samples); else the whole text as one piece.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from genforge.errors import ConfigError, GenforgeError
from genforge.serve.encode import sse
from genforge.serve.label import Labeller, label_doc


def generate_text(model: Any, n: int, seed: int, options: dict[str, Any],
                  emit: Callable[[str], None]) -> list[str]:
    """n texts; `emit` gets the first one piece by piece. Runs on the model's thread."""
    if n == 1 and hasattr(model, "stream_text"):  # the API's iterator: one sample
        pieces: list[str] = []
        for piece in model.stream_text(seed=seed, **options):
            pieces.append(piece)
            emit(piece)
        return ["".join(pieces)]
    try:
        return list(model.sample(n, seed=seed, on_text=emit, **options))
    except ConfigError as err:
        if "on-text" not in str(err) and "on_text" not in str(err):
            raise
    texts = list(model.sample(n, seed=seed, **options))  # no streaming in this API
    emit(texts[0])
    return texts


async def text_events(batcher: Any, model: Any, model_id: str, n: int, seed: int | None,
                      options: dict[str, Any], timeout: float,
                      labeller: Callable[..., Labeller] | None = None) -> AsyncIterator[bytes]:
    """The event stream of one request. Errors before the first piece are raised here (the
    route answers 4xx); errors after it end the stream with an `error` event."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue()
    seed = secrets.randbits(63) if seed is None else seed

    def emit(piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, ("token", piece))

    task = asyncio.ensure_future(batcher.run_alone(
        lambda: generate_text(model, n, seed, options, emit), timeout=timeout))
    task.add_done_callback(lambda _: pieces.put_nowait(("end", None)))
    first = await pieces.get()
    if first[0] == "end":
        task.result()  # raises the model's error: a 4xx before any byte was sent
    label = labeller(model, seed) if labeller is not None else None
    return _events(first, pieces, task, model_id, seed, label)


async def _events(first: tuple[str, str | None], pieces: asyncio.Queue, task: asyncio.Future,
                  model_id: str, seed: int, label: Labeller | None) -> AsyncIterator[bytes]:
    item = first
    while item[0] == "token":
        yield sse("token", item[1])
        item = await pieces.get()
    try:
        texts = task.result()
    except (GenforgeError, TimeoutError) as err:
        yield sse("error", {"detail": str(err) or "timed out"})
        return
    done = {"model": model_id, "seed": seed, "texts": texts}
    yield sse("done", label_doc(label, done) if label is not None else done)
