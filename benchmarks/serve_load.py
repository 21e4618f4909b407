"""Load on a loopback server: requests/s, samples/s, p50/p99 latency at 1, 8 and 64 concurrent
clients, for two image models (a DCGAN; a DDPM sampled with few DDIM steps) and a char text
model, with dynamic batching on and off.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py    # the whole table, ~10 min
    .venv/bin/python benchmarks/serve_load.py --smoke --out /tmp/serve_smoke.json   # a check

Default runs are 1-step trainings of the presets' full-size models (speed does not depend on
training): mnist-dcgan, mnist-ddpm (requests ask for --ddim-steps steps), shakespeare-char;
--dcgan/--ddpm/--text name runs instead. The server runs in its own process (uvicorn, one
worker, 127.0.0.1 only, --threads torch threads: 1 leaves the second core of a 2-core box to
this load generator, httpx + asyncio). Both float over the cores; with --pin the server gets
its own --threads cores and the load generator the others, so that a lone request's server
cannot borrow the load generator's idle core, as a loaded one cannot. Image requests
are seeded (a fresh seed per request) and join `GenerativeModel.session`s, the path that
returns each seed's images bit for bit (a DDPM request joins the running reverse chain
between steps); text requests are unseeded and join the running decoding between tokens (a
seeded text runs alone, by design). Every cell stops sending after its share of --budget
seconds (and --requests) and waits for the answers in flight; with --rounds K a server's
cells take turns K times, each a K-th of the cell's share, and each cell's latencies are
pooled (so a lone request and a loaded one are timed over the same minutes). Writes
benchmarks/results/serve_load.json and prints the table.
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


def train_default_run(kind: str, out: Path) -> Path:
    """A 1-step run of a preset's full-size model (speed does not depend on training)."""
    import genforge

    quiet = ["train.max_steps=1", "train.warmup_steps=0", "log.progress=false",
             "log.tensorboard=false", "log.sample_every=1000", "log.checkpoint_every=1000",
             "data.limit=256"]
    preset, extra = {"dcgan": ("mnist-dcgan", []), "ddpm": ("mnist-ddpm", []),
                     "text": ("shakespeare-char", ["data.limit=5000",
                                                   f"data.root={REPO / 'data'}"])}[kind]
    return genforge.train(genforge.load_config(preset, [*quiet, *extra]), out=out / kind).run_dir


MODELS = ("dcgan", "ddpm", "text")


class Server:
    def __init__(self, runs: list[Path], batching: bool, max_batch: int, wait_ms: float,
                 threads: int, chunk: int, cpus: set[int] | None = None):
        self.port = free_port()
        limits = {"batching": batching, "max_batch": max_batch, "max_wait_ms": wait_ms,
                  "rate": 0, "max_n": 64, "max_queue": 4096, "chunk": chunk,
                  "timeout_s": 300.0}
        args = json.dumps({"runs": [str(r) for r in runs], "port": self.port,
                           "limits": limits, "threads": threads})
        # cpus: the server's cores, set in the child before it starts any thread
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, args],
                                     start_new_session=True, preexec_fn=pin)
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
               warmup: int, seeded: bool) -> dict:
    """`clients` loops sending `body` until `requests` are sent or `seconds` pass; a seeded
    body gets a new seed each time (each request its own samples, as real clients ask)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as c:
        for i in range(warmup):
            (await c.post("/v1/generate", json={**body, **({"seed": i} if seeded else {})})
             ).raise_for_status()
        latencies: list[float] = []
        sent, errors = 0, 0
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < stop:
                sent += 1
                t = time.perf_counter()
                resp = await c.post("/v1/generate", json={**body, **({"seed": 1000 + sent}
                                                                     if seeded else {})})
                if resp.status_code != 200:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(clients)])
        wall = time.perf_counter() - start
    return {"clients": clients, "latencies": latencies, "errors": errors, "seconds": wall,
            "n": body.get("n", 1)}


def pooled(parts: list[dict]) -> dict:
    """One cell's figures over its rounds: throughput over their summed time, percentiles
    over every latency."""
    lat = np.asarray([x for p in parts for x in p["latencies"]]) * 1000
    wall = sum(p["seconds"] for p in parts)
    return {"clients": parts[0]["clients"], "rounds": len(parts), "requests": len(lat),
            "errors": sum(p["errors"] for p in parts), "seconds": wall,
            "requests_per_s": len(lat) / wall, "samples_per_s": len(lat) * parts[0]["n"] / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dcgan", type=Path, help="a DCGAN run (default: a 1-step mnist-dcgan)")
    p.add_argument("--ddpm", type=Path, help="a diffusion run (default: a 1-step mnist-ddpm)")
    p.add_argument("--text", type=Path, help="a text run (default: a 1-step shakespeare-char)")
    p.add_argument("--only", nargs="+", choices=MODELS, default=list(MODELS),
                   help="measure these models only")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--budget", type=float, default=450.0,
                   help="seconds of load in all, shared by the cells (training, server starts "
                        "and the answers in flight come on top: about a minute)")
    p.add_argument("--requests", type=int, default=2000, help="at most, per cell")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--wait-ms", type=float, default=2.0)
    p.add_argument("--chunk", type=int, default=8, help="rows of each fixed-shape image pass")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--ddim-steps", type=int, default=10, help="steps of a DDPM request")
    p.add_argument("--tokens", type=int, default=32, help="max_new_tokens of a text request")
    p.add_argument("--rounds", type=int, default=1,
                   help="run a server's cells this many times in turn (1, 8, 64 clients, 1, 8, "
                        "...), each a share of its cell's time, and pool each cell's latencies: "
                        "this machine's speed drifts by 20-30%% over minutes, and cells run one "
                        "after the other compare a lone request and a loaded one at different "
                        "speeds; each round has its own warm-up, new connections and "
                        "end-of-round drain, and --requests is shared by the rounds (at least "
                        "one each)")
    p.add_argument("--pin", action="store_true",
                   help="give the server its own --threads cores and this load generator the "
                        "others (Linux); unpinned, a lone request's server borrows the idle "
                        "load generator's core and a loaded one cannot, so the cells differ "
                        "in cores")
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds: clients 1 and 8, 3 requests a cell (checks the script)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/serve_load.json")
    args = p.parse_args()
    if args.smoke:
        args.clients, args.requests, args.budget, args.ddim_steps = [1, 8], 3, 12.0, 2
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
    server_cpus = set(cpus[-args.threads:]) if args.pin and len(cpus) > args.threads else None
    load_cpus = set(cpus) - server_cpus if server_cpus else set(cpus)
    if server_cpus:
        os.sched_setaffinity(0, load_cpus)  # this process: the load generator
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {kind: getattr(args, kind) or train_default_run(kind, Path(tmp))
                for kind in args.only}
        bodies = {"dcgan": {"n": 1}, "ddpm": {"n": 1, "steps": args.ddim_steps},
                  "text": {"prompt": "ROMEO:", "max_new_tokens": args.tokens}}
        cells = 2 * len(runs) * len(args.clients)
        seconds = args.budget / cells
        rows = []
        for batching in (False, True):
            server = Server(list(runs.values()), batching, args.max_batch, args.wait_ms,
                            args.threads, args.chunk, server_cpus)
            try:
                for kind, run in runs.items():
                    body = {"model": run.resolve().name, **bodies[kind]}
                    parts: dict[int, list[dict]] = {c: [] for c in args.clients}
                    for _ in range(args.rounds):
                        for clients in args.clients:
                            parts[clients].append(asyncio.run(load(
                                server.url, body, clients, max(1, args.requests // args.rounds),
                                seconds / args.rounds, warmup=2, seeded=kind != "text")))
                    for clients in args.clients:
                        rows.append({"model": kind, "batching": batching,
                                     "seeded": kind != "text", **pooled(parts[clients])})
                        print(_line(rows[-1]), flush=True)
            finally:
                server.close()
    summary = _targets(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "command": " ".join(["python benchmarks/serve_load.py", *sys.argv[1:]]),
        "runs": {k: _rel(v) for k, v in runs.items()}, "ddim_steps": args.ddim_steps,
        "tokens": args.tokens, "wait_ms": args.wait_ms, "threads": args.threads,
        "rounds": args.rounds,
        "cores": {"server": sorted(server_cpus or cpus), "load_generator": sorted(load_cpus)},
        "max_batch": args.max_batch, "chunk": args.chunk, "seconds_per_cell": seconds,
        "total_seconds": time.perf_counter() - start, "rows": rows, "targets": summary},
        indent=1) + "\n")
    print()
    print(_table(rows))
    for line in summary.values():
        print(line)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


def _table(rows: list[dict]) -> str:
    head = "| model | batching | clients | requests | req/s | samples/s | p50 ms | p99 ms |"
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        lines.append(f"| {r['model']} | {'on' if r['batching'] else 'off'} | {r['clients']} | "
                     f"{r['requests']} | {r['requests_per_s']:.1f} | {r['samples_per_s']:.1f} | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
    return "\n".join(lines)


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
    for model in ("dcgan", "ddpm"):
        on, off = cell(model, True, 64), cell(model, False, 64)
        if on and off and off["requests_per_s"] > 0:
            gain = on["requests_per_s"] / off["requests_per_s"]
            out[f"{model}_64_gain"] = (f"{model}, 64 clients: batching gives {gain:.1f}x "
                                       f"throughput (target >= 5x: "
                                       f"{'met' if gain >= 5 else 'NOT met'})")
    for model in MODELS:
        single, eight = cell(model, True, 1), cell(model, True, 8)
        if single and eight:
            ratio = eight["p99_ms"] / single["p50_ms"]
            out[f"{model}_p99_8"] = (f"{model}, batching on: p99 at 8 clients is {ratio:.2f}x "
                                     f"the single-request p50 (target < 2x: "
                                     f"{'met' if ratio < 2 else 'NOT met'})")
    return out


if __name__ == "__main__":
    main()
