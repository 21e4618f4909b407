"""Continuous batching without HTTP: closed-loop clients of `GenerativeModel.session` in one
process, to tell the scheduling's latency from the server's (serve_load.py measures both).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/session_loop.py   # -> results/session_loop.json

For the text model (shakespeare-char at preset size, 32 new tokens after "ROMEO:") and the
DDPM (mnist-ddpm at preset size, 10 DDIM steps), untrained (speed does not depend on the
weights): 1 client, then 8 clients that each send a new request the moment their last one
is answered, for --requests answers. Latency is from a request's joining to its answer;
p99 at 8 clients is compared with the lone client's p50, as serve_load.py compares them.
Clients that start together stay in step (their requests end, and new ones join, at the
same step); over HTTP they drift apart and join one by one, which the "8 staggered" row
plays: its clients start a request's steps / 8 apart and stay apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import genforge
from genforge.api import GenerativeModel
from genforge.registry import FAMILIES, get_modality

REPO = Path(__file__).resolve().parents[1]
# preset, session options, request, steps between staggered clients (a request's steps / 8)
MODELS = {"text": ("shakespeare-char", {"max_new_tokens": 32}, {"prompt": "ROMEO:"}, 4),
          "ddpm": ("mnist-ddpm", {"steps": 10}, {}, 1)}


def build(preset: str, data_root: str) -> GenerativeModel:
    cfg = genforge.load_config(preset, [])
    spec = FAMILIES[cfg.family]
    info = get_modality(cfg.modality or spec.modalities[0]).load(cfg.data, data_root).info()
    torch.manual_seed(0)
    objective = spec.build(cfg.model, info)
    for net in objective.nets.values():
        net.eval()
    return GenerativeModel(cfg, objective, info, 0, REPO)


def closed_loop(model: GenerativeModel, options: dict, request: dict, clients: int,
                answers: int, stagger: int = 0) -> dict:
    session, started, latencies, ticket, steps = model.session(options), {}, [], 0, 0

    def send() -> None:
        nonlocal ticket
        session.add(ticket, {"n": 1, "seed": ticket, **request})
        started[ticket] = time.perf_counter()
        ticket += 1

    for _ in range(clients):
        send()
        for _ in range(stagger):  # (answers here are not counted: the loop has not begun)
            for done, _ in session.step():
                started.pop(done)
                send()
    start = time.perf_counter()
    while len(latencies) < answers:
        for done, _ in session.step():
            latencies.append(time.perf_counter() - started.pop(done))
            send()
        steps += 1
    seconds = time.perf_counter() - start
    return {"clients": clients, "stagger": stagger, "answers": len(latencies), "steps": steps,
            "ms_per_step": 1000 * seconds / steps, "requests_per_s": len(latencies) / seconds,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=160, help="answers per cell")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/session_loop.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"{'avx512_bf16' if 'avx512_bf16' in cpu else 'no avx512_bf16'}",
              "command": "python benchmarks/session_loop.py", "threads": args.threads,
              "rows": []}
    print("| model | clients | answers | steps | ms/step | req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (preset, options, request, stagger) in MODELS.items():
        model = build(preset, args.data_root)
        closed_loop(model, options, request, 1, 3)  # warm-up
        lone = closed_loop(model, options, request, 1, max(10, args.requests // 8))
        eight = closed_loop(model, options, request, 8, args.requests)
        staggered = closed_loop(model, options, request, 8, args.requests, stagger)
        for row in (lone, eight, staggered):
            result["rows"].append({"model": name, **row})
            clients = f"{row['clients']}{' staggered' if row['stagger'] else ''}"
            print(f"| {name} | {clients} | {row['answers']} | {row['steps']} | "
                  f"{row['ms_per_step']:.1f} | {row['requests_per_s']:.1f} | "
                  f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} |")
        for label, row in (("", eight), ("_staggered", staggered)):
            ratio = row["p99_ms"] / lone["p50_ms"]
            result[f"{name}_p99_8{label}_over_single_p50"] = ratio
            print(f"{name}: p99 at 8{label.replace('_', ' ')} clients is {ratio:.2f}x the "
                  "single-request p50")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
