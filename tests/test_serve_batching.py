"""The batcher's gathering window and its continuous batching, with fake models whose pass
(or step) takes a known time."""

from __future__ import annotations

import asyncio
import time

import pytest

from skips import not_installed

pytest.importorskip("fastapi", reason=not_installed("fastapi"))

from genforge.serve.batching import Batcher


class SlowModel:
    """Merges requests like an image model: a session of `steps` steps a request, each step
    sleeping `seconds`; the requests of every step are recorded. A request's answer is its
    seed."""

    modality = "images"
    merges_requests = True

    def __init__(self, seconds: float, steps: int = 1) -> None:
        self.seconds, self.steps, self.passes = seconds, steps, []
        self.data_info = {"kind": "images"}

    def session(self, options, chunk):
        return SlowSession(self)


class SlowSession:
    def __init__(self, model: SlowModel) -> None:
        self.model, self.left, self.seeds = model, {}, {}

    @property
    def rows(self) -> int:
        return len(self.left)

    def accepts(self, request):
        return True

    def add(self, ticket, request):
        self.left[ticket], self.seeds[ticket] = self.model.steps, request["seed"]

    def remove(self, ticket):
        self.left.pop(ticket, None)

    def step(self):
        self.model.passes.append(len(self.left))
        time.sleep(self.model.seconds)
        done = []
        for ticket in list(self.left):
            self.left[ticket] -= 1
            if not self.left[ticket]:
                done.append((ticket, self.seeds[ticket]))
                del self.left[ticket]
        return done


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


def test_a_request_joins_a_running_chain_between_steps():
    async def main() -> None:
        model = SlowModel(0.05, steps=6)
        batcher = Batcher(model, max_wait_ms=2.0)
        start = time.perf_counter()

        async def late() -> float:
            await asyncio.sleep(0.12)  # the first request is two or three steps in
            assert await batcher.submit(1, seed=2) == 2
            return time.perf_counter() - start - 0.12

        first, late_latency = await asyncio.gather(batcher.submit(1, seed=1), late())
        assert first == 1
        # it joined the running chain: steps of two requests, and no step of it alone after
        # the first request's last (one after another would be 12 steps, 6 of 1 + 6 of 1)
        assert 2 in model.passes and len(model.passes) < 12, model.passes
        assert late_latency < 0.05 * (6 + 2)  # its own 6 steps, plus at most one it waited
        batcher.close()

    asyncio.run(main())


def test_with_batching_off_each_request_runs_its_chain_alone():
    async def main() -> None:
        model = SlowModel(0.01, steps=3)
        batcher = Batcher(model, enabled=False)
        assert await asyncio.gather(*[batcher.submit(1, seed=s) for s in (1, 2, 3)]) == [1, 2, 3]
        assert model.passes == [1] * 9
        batcher.close()

    asyncio.run(main())


def test_a_session_over_max_batch_takes_the_rest_when_rows_free_up():
    async def main() -> None:
        model = SlowModel(0.01, steps=2)
        batcher = Batcher(model, max_batch=2, max_wait_ms=20.0)
        got = await asyncio.gather(*[batcher.submit(1, seed=s) for s in range(5)])
        assert got == list(range(5)) and max(model.passes) == 2
        batcher.close()

    asyncio.run(main())


def test_a_request_that_times_out_leaves_the_chain():
    async def main() -> None:
        model = SlowModel(0.05, steps=10)
        batcher = Batcher(model, max_wait_ms=1.0)
        with pytest.raises(TimeoutError):
            await batcher.submit(1, seed=1, timeout=0.12)
        assert await batcher.submit(1, seed=2) == 2  # the model is free again, at once
        # the first request ran ~3 steps and left; the second ran its 10 alone
        assert len(model.passes) < 10 + 10 and model.passes[-1] == 1, model.passes
        batcher.close()

    asyncio.run(main())
