"""Load on a loopback server: requests/s, samples/s, p50/p99 latency at 1, 8 and 64 concurrent
clients, for an image model and a text model, with dynamic batching on and off.

    python benchmarks/serve_load.py                       # trains two 1-step runs to serve
    python benchmarks/serve_load.py --image runs/dcgan1 --text runs/gpt1 --seconds 15

The server runs in its own process (uvicorn, one worker, 127.0.0.1 only); this process is the
load generator (httpx, asyncio). Every cell is bounded: at most --requests requests and
--seconds seconds after a warm-up. Requests are unseeded (seeded ones run alone unless the API
offers `sample_batch`; see docs/serving.md). Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SERVER = """
import json, sys
from genforge.serve.schemas import Limits
from genforge.serve.server import run
args = json.loads(sys.argv[1])
run(args["runs"], port=args["port"], limits=Limits(**args["limits"]), threads=args["threads"],
    log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_default_runs(out: Path) -> tuple[Path, Path]:
    """1-step runs of the presets' full-size models (speed does not depend on training)."""
    import genforge

    quiet = ["train.max_steps=1", "train.warmup_steps=0", "log.progress=false",
             "log.tensorboard=false", "log.sample_every=1000", "log.checkpoint_every=1000"]
    image = genforge.train(genforge.load_config("mnist-dcgan", quiet), out=out / "dcgan")
    text = genforge.train(genforge.load_config("shakespeare-char", [
        *quiet, "data.limit=5000", f"data.root={REPO / 'data'}"]), out=out / "char")
    return image.run_dir, text.run_dir


class Server:
    def __init__(self, runs: list[Path], batching: bool, max_batch: int, wait_ms: float,
                 threads: int):
        self.port = free_port()
        limits = {"batching": batching, "max_batch": max_batch, "max_wait_ms": wait_ms,
                  "rate": 0, "max_n": 64, "max_queue": 4096}
        args = json.dumps({"runs": [str(r) for r in runs], "port": self.port,
                           "limits": limits, "threads": threads})
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, args],
                                     start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                httpx.get(self.url + "/healthz", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError("the server did not start")

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


async def load(url: str, body: dict, clients: int, requests: int, seconds: float,
               warmup: int) -> dict:
    """`clients` loops sending `body` until `requests` are answered or `seconds` pass."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        for _ in range(warmup):
            (await c.post("/v1/generate", json=body)).raise_for_status()
        latencies: list[float] = []
        sent, errors = 0, 0
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < stop:
                sent += 1
                t = time.perf_counter()
                resp = await c.post("/v1/generate", json=body)
                if resp.status_code != 200:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(clients)])
        wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    n = body.get("n", 1)
    return {"clients": clients, "requests": len(lat), "errors": errors, "seconds": wall,
            "requests_per_s": len(lat) / wall, "samples_per_s": len(lat) * n / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", type=Path, help="an image run (default: a 1-step mnist-dcgan)")
    p.add_argument("--text", type=Path, help="a text run (default: a 1-step shakespeare-char)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--requests", type=int, default=400, help="at most, per cell")
    p.add_argument("--seconds", type=float, default=12.0, help="at most, per cell")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--wait-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--image-options", type=json.loads, default={},
                   help='extra knobs of an image request, e.g. \'{"steps": 10}\' (diffusion)')
    p.add_argument("--only", choices=("image", "text"), help="measure one model only")
    p.add_argument("--tokens", type=int, default=32, help="max_new_tokens of a text request")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/serve_load.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.image is None or args.text is None:
            image, text = train_default_runs(Path(tmp))
            args.image, args.text = args.image or image, args.text or text
        bodies = {"image": {"model": args.image.resolve().name, "n": 1, **args.image_options},
                  "text": {"model": args.text.resolve().name, "prompt": "ROMEO:",
                           "max_new_tokens": args.tokens}}
        bodies = {k: v for k, v in bodies.items() if args.only in (None, k)}
        rows = []
        for batching in (False, True):
            server = Server([args.image, args.text], batching, args.max_batch, args.wait_ms,
                            args.threads)
            try:
                for kind, body in bodies.items():
                    for clients in args.clients:
                        cell = asyncio.run(load(server.url, body, clients, args.requests,
                                                args.seconds, warmup=3))
                        rows.append({"model": kind, "batching": batching, **cell})
                        print(_line(rows[-1]), flush=True)
            finally:
                server.close()
    summary = _targets(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "command": "python " + " ".join(sys.argv),
        "image_run": _rel(args.image), "text_run": _rel(args.text),
        "wait_ms": args.wait_ms, "threads": args.threads, "max_batch": args.max_batch, "rows": rows,
        "targets": summary}, indent=1))
    for line in summary.values():
        print(line)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


def _line(r: dict) -> str:
    return (f"{r['model']:5} batching={'on ' if r['batching'] else 'off'} "
            f"clients={r['clients']:3} req/s={r['requests_per_s']:8.1f} "
            f"samples/s={r['samples_per_s']:8.1f} p50={r['p50_ms']:8.1f}ms "
            f"p99={r['p99_ms']:8.1f}ms n={r['requests']} errors={r['errors']}")


def _targets(rows: list[dict]) -> dict[str, str]:
    def cell(model: str, batching: bool, clients: int) -> dict | None:
        return next((r for r in rows if (r["model"], r["batching"], r["clients"]) ==
                     (model, batching, clients)), None)

    out = {}
    on, off = cell("image", True, 64), cell("image", False, 64)
    if on and off:
        gain = on["requests_per_s"] / off["requests_per_s"]
        out["image_64_gain"] = f"image, 64 clients: batching gives {gain:.1f}x throughput " \
                               f"(target >= 5x: {'met' if gain >= 5 else 'NOT met'})"
    for model in ("image", "text"):
        single, eight = cell(model, True, 1), cell(model, True, 8)
        if single and eight:
            ratio = eight["p99_ms"] / single["p50_ms"]
            out[f"{model}_p99_8"] = (f"{model}, batching on: p99 at 8 clients is {ratio:.2f}x "
                                     f"the single-request p50 (target < 2x: "
                                     f"{'met' if ratio < 2 else 'NOT met'})")
    return out


if __name__ == "__main__":
    main()
