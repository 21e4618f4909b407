"""Prometheus metrics of one app (its own registry, so that several apps in one process, as in
tests, never collide). Under `--workers N` each process counts its own requests; scrape each
worker, or set PROMETHEUS_MULTIPROC_DIR as prometheus-client's multiprocess mode describes."""

from __future__ import annotations

import logging
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
    generate_latest,
)

CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("genforge_requests", "HTTP requests answered",
                                ["route", "code"], registry=r)
        self.latency = Histogram("genforge_request_seconds", "time to answer a request",
                                 ["route"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.errors = Counter("genforge_errors", "requests answered with an error status",
                              ["code"], registry=r)
        self.batch_samples = Histogram("genforge_batch_samples",
                                       "samples in one forward pass (or step)",
                                       ["model"], registry=r,
                                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_requests = Histogram("genforge_batch_requests",
                                        "requests sharing one forward pass (or step)",
                                        ["model"],
                                        registry=r, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.queue_depth = Gauge("genforge_queue_depth", "requests waiting for a model",
                                 ["model"], registry=r)

    def observe_batch(self, model: str, requests: int, samples: int) -> None:
        self.batch_requests.labels(model).observe(requests)
        self.batch_samples.labels(model).observe(samples)

    def answered(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)
        if code >= 400:
            self.errors.labels(str(code)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)


class Measured:
    """ASGI middleware: count and time every HTTP request by route template and status.
    (A plain ASGI wrapper: Starlette's BaseHTTPMiddleware costs a task per request.)"""

    def __init__(self, app, metrics: Metrics) -> None:  # type: ignore[no-untyped-def]
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message):  # type: ignore[no-untyped-def]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # Starlette has answered 500 already; keep the server up
            logging.getLogger("genforge.serve").exception("error on %s", scope.get("path"))
            status = 500
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the router sets it
            self.metrics.answered(route, status, time.perf_counter() - start)
