"""The batcher's gathering window, with a fake model whose pass takes a known time."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("fastapi")

from genforge.serve.batching import Batcher


class SlowModel:
    """Merges requests like an image model; each pass sleeps `seconds` and is recorded."""

    modality = "images"
    merges_requests = True
    def __init__(self, seconds: float) -> None:
        self.seconds, self.passes = seconds, []
        self.data_info = {"kind": "images"}

    def sample_batch(self, requests, chunk):
        self.passes.append(len(requests))
        time.sleep(self.seconds)
        return [r["seed"] for r in requests]


async def _round(batcher: Batcher, seeds: list[int], stagger: float) -> float:
    """Submit `seeds`, the second half `stagger` seconds after the first; the slowest answer."""
    start = time.perf_counter()

    async def one(seed: int, delay: float) -> None:
        await asyncio.sleep(delay)
        assert await batcher.submit(1, seed=seed) == seed

    half = len(seeds) // 2
    await asyncio.gather(*[one(s, 0.0 if i < half else stagger) for i, s in enumerate(seeds)])
    return time.perf_counter() - start


def test_returning_callers_share_one_pass_and_a_lone_one_does_not_wait():
    async def main() -> None:
        model = SlowModel(0.6)
        batcher = Batcher(model, max_wait_ms=2.0)
        await _round(batcher, [1, 2, 3, 4], 0.0)  # one pass of 4 sets the recent size
        model.passes.clear()
        # callers come back 15 ms apart: a 2 ms window alone would split them in two passes
        await _round(batcher, [5, 6, 7, 8], 0.015)
        assert model.passes == [4]
        for seed in (9, 10, 11):  # the load falls to one caller: the window shrinks back
            await _round(batcher, [seed], 0.0)
        lone = await _round(batcher, [12], 0.0)
        assert lone < 0.6 + 0.05  # no fill wait once the last passes served one request
        batcher.close()

    asyncio.run(main())
