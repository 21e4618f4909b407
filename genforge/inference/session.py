"""Continuous batching: requests join and leave one sampling call between its steps.

The bookkeeping (who joined, how many rows each has left, which requests a step ended) is
here, once; the steps are the family's. An objective with capability "step" gives a session
(`sampling_session(size=, **options)`: a diffusion model's reverse chain, a text model's
tokens) with

    rows                                     rows of the requests not done yet
    fits(**own) -> bool                      whether a request can join (a text's context)
    add(ticket, n=, seed=, condition=, **own)
    remove(ticket)
    advance() -> [(ticket, samples), ...]    one step; the requests it ended

where `own` are the options a request sets for itself (PER_REQUEST). A family that merges
requests in one pass (capability "merge" without "step": GAN, VAE) runs every request
waiting in one pass per step (genforge.inference.batching).
"""

from __future__ import annotations

from typing import Any

from genforge.inference.batching import merged
from genforge.inference.sampler import check_options

PER_REQUEST = ("prompt",)  # options that each request of a session may set for itself


class SamplingSession:
    """Requests of one kind (the same options, with labels or without) sampled together,
    joining and leaving between steps. A diffusion model steps its reverse chain (a request
    arriving mid-chain waits one network call, not a whole chain), a text model its tokens
    (each request may bring its own prompt); a one-pass family (GAN, VAE) runs every request
    waiting in one pass per step.

        s = model.session({"steps": 10})
        s.add(1, {"n": 4, "seed": 0})
        while s.rows:
            for ticket, images in s.step(): ...      # what sample_batch gives each request
    """

    def __init__(self, model: Any, options: dict[str, Any], chunk: int,
                 precision: str | None) -> None:
        options = {k: v for k, v in options.items() if k not in PER_REQUEST}
        self.model, self.options, self.chunk, self.precision = model, options, chunk, precision
        check_options(model.objective, model.family_spec, "sample", options)  # the message
        self._chain = None
        if model.can("step"):
            self._chain = model.objective.sampling_session(size=chunk, **options)
        self._waiting: dict[int, dict[str, Any]] = {}  # one-pass families: the next pass
        self._rows: dict[int, int] = {}

    @property
    def rows(self) -> int:
        """Rows of the requests not done yet."""
        return sum(self._rows.values())

    def accepts(self, request: dict[str, Any]) -> bool:
        """Whether `request` can join (a text must fit the model's context; else it runs
        alone, `model.sample`)."""
        return self._chain is None or self._chain.fits(**_own(request))

    def add(self, ticket: int, request: dict[str, Any]) -> None:
        """Join request {"n", "seed", "label" (optional)} under `ticket` (the caller's id)."""
        n, seed = int(request["n"]), int(request.get("seed", 0))
        self.model.check_count(n)
        labels = self.model._labels(request.get("label"), n)  # refused here, not in a pass
        if self._chain is not None:
            self._chain.add(ticket, n=n, seed=seed, condition=labels, **_own(request))
        else:
            self._waiting[ticket] = {**request, **self.options}
        self._rows[ticket] = n

    def remove(self, ticket: int) -> None:
        """Drop a request (its caller gave up); its rows leave the next step."""
        self._rows.pop(ticket, None)
        self._waiting.pop(ticket, None)
        if self._chain is not None:
            self._chain.remove(ticket)

    def step(self) -> list[tuple[int, Any]]:
        """One step of every request; (ticket, decoded samples) of the requests it ended."""
        if self._chain is None:
            tickets, requests = list(self._waiting), list(self._waiting.values())
            self._waiting.clear()
            done = list(zip(tickets, merged(self.model, requests, self.chunk, self.precision),
                            strict=True)) if requests else []
        else:
            with self.model._autocast(self.precision):
                ended = self._chain.advance()
            # decoded outside autocast, as `sample` does: audio's Griffin-Lim in fp32
            done = [(t, self.model.output.decode(x, self.model.data_info)) for t, x in ended]
        for ticket, _ in done:
            self._rows.pop(ticket, None)
        return done


def _own(request: dict[str, Any]) -> dict[str, Any]:
    """The options of `request` that it sets for itself (a text's prompt)."""
    return {k: request[k] for k in PER_REQUEST if k in request}
