"""Dynamic batching: concurrent requests for one model share one forward pass.

One worker thread per model takes the first waiting request, gathers more for up to
`max_wait_ms` (or until `max_batch` samples), and groups them by everything that changes the
computation (sampling options, whether a label was given). Each group runs as one call, and
its result is cut back into each caller's own rows:

- models whose family draws per-request noise (`model.merges_requests`: GAN, VAE,
  diffusion): every request, seeded or not (an unseeded one gets a fresh seed), joins a
  `model.session` of its options, which runs the network in fixed-shape chunks of `chunk`
  rows. A diffusion session steps its reverse chain and requests join it between steps
  (continuous batching: one that arrives mid-chain waits one network call, not a whole
  chain); a GAN or VAE session runs everything waiting in one pass. A lone request takes
  the same path, so a seeded request returns bit for bit what it returns alone, whoever
  shares its steps (and with batching off, where each request runs its chain alone);
- other models (tables, series): unseeded requests share one `sample` call with a fresh
  seed, rows split by request; a seeded request is its own call (its rows come from one
  generator seeded by its seed, so they are exactly those of a lone call);
- text: unseeded requests with the same options join a `model.session` between tokens, each
  with its own prompt (continuous batching; greedy texts come out as alone, sampled ones up
  to float rounding in the logits); a seeded or streamed text runs on its own between steps,
  so that its seed gives what it gives alone.

Filling a pass (requests that find the model idle): under steady load, callers answered by
one pass come back a few ms later, so a short window splits them into two alternating
passes, each waiting for the other (8 clients: p50 twice a pass). While fewer requests wait
than the largest of the last passes, gathering goes on for up to a tenth of the last pass's
time (at most 100 ms); a lone client (last passes of one request) never waits longer than
max_wait_ms.

The worker thread is the only one that runs the model, so a model never runs two passes at
once; requests wait on asyncio futures, so the event loop never blocks on torch.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genforge.api import PER_REQUEST
from genforge.errors import ConfigError


@dataclass
class Job:
    """One request's share of a batch; `future` gets its samples or its exception."""

    n: int
    seed: int | None
    label: int | list[int] | None
    options: dict[str, Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    call: Callable[[], Any] | None = None  # a job that runs on its own (a streamed text)
    cancelled: bool = False
    queued: float = field(default_factory=time.perf_counter)

    def key(self, seeded_alone: bool, merges: bool) -> Hashable:
        options = tuple(sorted((k, _frozen(v)) for k, v in self.options.items()))
        seeded = self.seed is not None
        if self.call is not None or (seeded and seeded_alone):
            return ("alone", id(self))
        return (options, self.label is None, seeded and not merges)


def _session_key(job: Job) -> Hashable:
    """Jobs with equal keys share a session: the same options but those each request sets
    for itself (a text's prompt), and labels given or not."""
    options = tuple(sorted((k, _frozen(v)) for k, v in job.options.items()
                           if k not in PER_REQUEST))
    return (options, job.label is None)


def _frozen(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


class Batcher:
    """The batching queue and worker thread of one model."""

    def __init__(self, model: Any, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 enabled: bool = True, max_queue: int = 1024, chunk: int = 8,
                 observe: Callable[[int, int], None] | None = None) -> None:
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait_ms / 1000
        self.enabled, self.max_queue, self.chunk = enabled, max_queue, chunk
        self.observe = observe  # (requests, samples) of each forward pass, for the metrics
        # what the model declares (genforge.inference.sampler): per-request noise ("merge":
        # a seeded request is exact in any company), sessions that requests join between
        # steps (images, text)
        self.merges = model.merges_requests
        self.stepwise = self.merges or model.has_sessions
        # sessions whose rows share one generator (text): a seeded request runs on its own
        self.seeded_alone = self.stepwise and not self.merges
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._backlog: collections.deque[Job] = collections.deque()  # taken, not yet joined
        self._recent: collections.deque[int] = collections.deque(maxlen=3)  # requests a pass
        self._last_pass = 0.0  # seconds
        self._thread = threading.Thread(target=self._work, daemon=True, name="genforge-batch")
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._backlog)

    def close(self) -> None:
        self._queue.put(None)

    async def submit(self, n: int, *, seed: int | None = None, label: Any = None,
                     timeout: float | None = None, **options: Any) -> Any:
        """This request's own samples (what `model.sample(n, seed=seed, ...)` returns)."""
        return await self._submit(Job(n, seed, label, options, *self._future()), timeout)

    async def run_alone(self, call: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run `call()` on the model's thread between batches (a streamed text)."""
        return await self._submit(Job(1, None, None, {}, *self._future(), call=call), timeout)

    def _future(self) -> tuple[asyncio.Future, asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        return loop.create_future(), loop

    async def _submit(self, job: Job, timeout: float | None) -> Any:
        if self.depth >= self.max_queue:
            raise QueueFull(f"model queue: {self.max_queue} requests waiting; try again")
        self._queue.put(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except (TimeoutError, asyncio.CancelledError):
            job.cancelled = True  # not started yet: the worker skips it
            raise

    # --- the worker thread --------------------------------------------------------------

    def _work(self) -> None:
        if self.stepwise:
            return self._work_in_sessions()
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first] + (self._gather(first.n) if self.enabled else [])
            groups: dict[Hashable, list[Job]] = {}
            for job in jobs:
                if not job.cancelled:
                    groups.setdefault(job.key(self.seeded_alone, self.merges), []).append(job)
            start = time.perf_counter()
            for group in groups.values():
                self._run(group)
            self._recent.append(len(jobs))
            self._last_pass = time.perf_counter() - start

    def _work_in_sessions(self) -> None:
        """Continuous batching: between steps, waiting requests join the session of their
        options (while it holds under max_batch rows); every busy session takes a step."""
        sessions: dict[Hashable, tuple[Any, dict[int, Job]]] = {}
        backlog = self._backlog
        closing = False
        while True:
            busy = any(jobs for _, jobs in sessions.values())
            idle = not busy and not backlog
            if idle:
                if closing:
                    return
                first = self._queue.get()
                if first is None:
                    return
                start = time.perf_counter()
                arrived = [first] + (self._gather(first.n) if self.enabled else [])
                self._recent.append(len(arrived))
            else:
                arrived = []
                while self.enabled and not closing:  # whoever came during the last step
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        closing = True
                    else:
                        arrived.append(job)
            backlog.extend(arrived)
            self._admit(sessions, backlog, busy)
            for key, (session, jobs) in list(sessions.items()):
                for ticket in [t for t, job in jobs.items() if job.cancelled]:
                    session.remove(ticket)  # its caller is gone: its rows leave
                    del jobs[ticket]
                if not jobs:
                    del sessions[key]
                    continue
                self._observe(len(jobs), session.rows)
                try:
                    done = session.step()
                except BaseException as err:  # every request of the session hears of it
                    for job in jobs.values():
                        job.loop.call_soon_threadsafe(_settle, job.future, None, err)
                    del sessions[key]
                    continue
                for ticket, result in done:
                    job = jobs.pop(ticket)
                    job.loop.call_soon_threadsafe(_settle, job.future, result, None)
            if idle:  # what the next idle start may wait to fill
                self._last_pass = time.perf_counter() - start

    def _admit(self, sessions: dict[Hashable, tuple[Any, dict[int, Job]]],
               backlog: collections.deque[Job], busy: bool) -> None:
        """Waiting jobs, in arrival order, into their sessions; with batching off, one job
        at a time, and only when nothing runs."""
        if not self.enabled and busy:
            return
        while backlog:
            job = backlog[0]
            if job.cancelled:
                backlog.popleft()
                continue
            if job.call is not None or (self.seeded_alone and job.seed is not None):
                backlog.popleft()  # a streamed or seeded text: on its own, between steps
                self._run([job])
                continue
            key = _session_key(job)
            session, jobs = sessions.get(key, (None, {}))
            if jobs and session.rows + job.n > self.max_batch:
                break  # first in, first served: the rest wait for rows to free up
            backlog.popleft()
            try:
                if session is None:
                    session = self.model.session(job.options, chunk=self.chunk)
                request = _request(job)
                if not session.accepts(request):  # a text longer than the context
                    self._run([job])
                    continue
                session.add(id(job), request)
            except BaseException as err:  # a bad request fails alone
                job.loop.call_soon_threadsafe(_settle, job.future, None, err)
                continue
            jobs[id(job)] = job
            sessions[key] = (session, jobs)
            if not self.enabled:
                return

    def _gather(self, have: int) -> list[Job]:
        """More jobs, for up to max_wait after the first, while they fit in max_batch; longer
        (see the module's docstring) while fewer wait than the recent passes served."""
        jobs: list[Job] = []
        now = time.perf_counter()
        deadline = now + self.max_wait
        fill_deadline = deadline + min(0.1 * self._last_pass, 0.1)
        target = max(self._recent, default=1)
        while have < self.max_batch:
            until = deadline if len(jobs) + 1 >= target else fill_deadline
            try:
                job = self._queue.get(timeout=max(0.0, until - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # close after this batch
                break
            jobs.append(job)
            have += job.n
        return jobs

    def _run(self, group: list[Job]) -> None:
        try:
            if group[0].call is not None:
                results = [group[0].call()]
            elif group[0].seed is None and len(group) > 1:
                results = self._shared(group)
            else:
                results = [self._sample(j.n, j.seed, j.label, j.options) for j in group]
        except BaseException as err:  # every caller of the pass hears of its failure
            for job in group:
                job.loop.call_soon_threadsafe(_settle, job.future, None, err)
            return
        for job, result in zip(group, results, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, result, None)

    def _shared(self, group: list[Job]) -> list[Any]:
        """Unseeded requests: one pass of all their rows, cut back per request."""
        labels = None
        if group[0].label is not None:
            labels = [x for j in group for x in
                      (j.label if isinstance(j.label, list) else [j.label] * j.n)]
        total = sum(j.n for j in group)
        self._observe(len(group), total)
        samples = self._sample(total, None, labels, group[0].options, observe=False)
        out, start = [], 0
        for job in group:
            out.append(_rows(samples, start, start + job.n))
            start += job.n
        return out

    def _sample(self, n: int, seed: int | None, label: Any, options: dict[str, Any],
                observe: bool = True) -> Any:
        if observe:
            self._observe(1, n)
        seed = secrets.randbits(63) if seed is None else seed
        return self.model.sample(n, seed=seed, label=label, **options)


    def _observe(self, requests: int, samples: int) -> None:
        if self.observe is not None:
            self.observe(requests, samples)


class QueueFull(ConfigError):
    """Too many requests are waiting for this model (the server answers 503)."""


def _request(job: Job) -> dict[str, Any]:
    seed = secrets.randbits(63) if job.seed is None else job.seed
    return {"n": job.n, "seed": seed, "label": job.label, **job.options}


def _settle(future: asyncio.Future, result: Any, err: BaseException | None) -> None:
    if future.done():
        return
    if err is not None:
        future.set_exception(err)
    else:
        future.set_result(result)


def _rows(samples: Any, start: int, stop: int) -> Any:
    """Rows start..stop of what `sample` returned (a tensor, an array, a list, a DataFrame)."""
    if isinstance(samples, torch.Tensor | np.ndarray):
        return samples[start:stop]
    if hasattr(samples, "iloc"):
        return samples.iloc[start:stop].reset_index(drop=True)
    return type(samples)(samples[start:stop]) if isinstance(samples, list) else \
        samples[start:stop]
