"""The batcher's gathering window and its continuous batching, with fake models whose pass
(or step) takes a known time. What is checked is counted, not timed: the requests of each
step, and the waits the worker asks of its queue (a busy machine stretches every duration)."""

from __future__ import annotations

import asyncio
import queue
import time
from types import SimpleNamespace
from typing import ClassVar

import pytest

from skips import not_installed

pytest.importorskip("fastapi", reason=not_installed("fastapi"))

from genforge.serve import batching
from genforge.serve.batching import Batcher


class WaitLog(queue.Queue):
    """The batcher's queue, recording the timeout of each blocking `get` (its gathering
    window: how long the worker was prepared to wait for more requests)."""

    waits: ClassVar[list[float]] = []

    def get(self, block=True, timeout=None):
        if block and timeout is not None:
            WaitLog.waits.append(timeout)
        return super().get(block, timeout)


@pytest.fixture
def waits(monkeypatch):
    WaitLog.waits = []
    monkeypatch.setattr(batching, "queue", SimpleNamespace(Queue=WaitLog, Empty=queue.Empty))
    return WaitLog.waits


class SlowModel:
    """Merges requests like an image model: a session of `steps` steps a request, each step
    sleeping `seconds`; the requests of every step are recorded. A request's answer is its
    seed."""

    modality = "images"
    merges_requests = True

    def __init__(self, seconds: float, steps: int = 1) -> None:
        self.seconds, self.steps, self.passes = seconds, steps, []
        self.seeds_of_step: list[list[int]] = []  # the seeds of the requests of each step
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
        self.model.seeds_of_step.append(sorted(self.seeds[t] for t in self.left))
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


def test_returning_callers_share_one_pass_and_a_lone_one_does_not_wait(waits):
    async def main() -> None:
        model = SlowModel(0.6)
        batcher = Batcher(model, max_wait_ms=2.0)
        await _round(batcher, [1, 2, 3, 4], 0.0)  # one pass of 4 sets the recent size
        model.passes.clear()
        waits.clear()
        # callers come back 15 ms apart: a 2 ms window alone would split them in two passes
        await _round(batcher, [5, 6, 7, 8], 0.015)
        assert model.passes == [4]
        # its first wait: the 2 ms window plus a tenth of the last pass (>= 0.6 s), at most
        # 0.1 s of it
        assert 0.06 < waits[0] <= 0.002 + 0.1, waits
        for seed in (9, 10, 11):  # the load falls to one caller: the window shrinks back
            await _round(batcher, [seed], 0.0)
        waits.clear()
        await _round(batcher, [12], 0.0)
        # no fill wait once the last passes served one request: at most the 2 ms window
        assert waits and max(waits) <= 0.002, waits
        batcher.close()

    asyncio.run(main())


def test_a_request_joins_a_running_chain_between_steps():
    async def main() -> None:
        model = SlowModel(0.05, steps=6)
        batcher = Batcher(model, max_wait_ms=2.0)
        steps_before = []

        async def late() -> None:
            await asyncio.sleep(0.12)  # the first request is two or three steps in
            steps_before.append(len(model.seeds_of_step))  # steps begun before it queued
            assert await batcher.submit(1, seed=2) == 2

        first, _ = await asyncio.gather(batcher.submit(1, seed=1), late())
        assert first == 1
        steps = model.seeds_of_step
        # each request took its 6 steps; the late one joined the running chain (steps of
        # both), so fewer than the 12 of one chain after the other
        assert sum(1 in s for s in steps) == 6 and sum(2 in s for s in steps) == 6, steps
        assert [1, 2] in steps and len(steps) < 12, steps
        # it waited for at most the step running when it came, not for the chain's end
        joined = next(i for i, s in enumerate(steps) if 2 in s)
        assert steps_before[0] >= 1 and joined - steps_before[0] <= 1, (steps_before, steps)
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
        # the first request ran ~3 of its 10 steps and left; the second ran its 10 alone
        steps = model.seeds_of_step
        assert 1 <= sum(1 in s for s in steps) < 10, steps
        assert steps[-10:] == [[2]] * 10 and sum(2 in s for s in steps) == 10, steps
        batcher.close()

    asyncio.run(main())
