"""Service throughput and latency over HTTP next to the model's in-process limit (a benchmark, not a test).

    .venv/bin/python bench/http_bench.py --model models/digits [--seconds 15]

1. In-process: the SavedModel's ``serving_default`` called directly on batches of ``--batch`` encoded
   test images (the service's batch limit): the most this machine can do with that model.
2. `tlserve serve` (BentoML) on 127.0.0.1, driven by a closed loop of N clients (N = 1 and 32), each
   sending one image per ``POST /classify`` and waiting for the answer. Throughput, p50 and p99.
The load generator runs on the same 2 cores as the server, so the ratios understate the server.
Writes bench/results/http_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "http_bench.json"


def test_images(count: int) -> list[bytes]:
    from training.data import load_images, split_indices

    data = load_images("builtin:digits")
    split = split_indices(data.labels)
    return [data.images[i] for i in split.test[:count]]


def in_process(version_dir: Path, images: list[bytes], batch: int, seconds: float) -> float:
    import tensorflow as tf

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    batch_images = tf.constant((images * (batch // len(images) + 1))[:batch])
    serve(images=batch_images)  # warm-up
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        serve(images=batch_images)["scores"].numpy()
        done += batch
    return done / (time.monotonic() - started)


async def closed_loop(url: str, model: str, images: list[bytes], concurrency: int, seconds: float) -> dict:
    bodies = [json.dumps({"model": model, "images": [base64.b64encode(i).decode()], "top_k": 1}) for i in images]
    latencies: list[float] = []
    errors = 0

    async def client(c: httpx.AsyncClient, k: int, until: float):
        nonlocal errors
        i = k
        while time.monotonic() < until:
            started = time.monotonic()
            r = await c.post("/classify", content=bodies[i % len(bodies)],
                             headers={"content-type": "application/json"})
            if r.status_code == 200:
                latencies.append(time.monotonic() - started)
            else:
                errors += 1
            i += concurrency

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        await asyncio.gather(*(client(c, k, time.monotonic() + 2) for k in range(concurrency)))  # warm-up
        latencies.clear()
        started = time.monotonic()
        await asyncio.gather(*(client(c, k, started + seconds) for k in range(concurrency)))
        elapsed = time.monotonic() - started
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "throughput": len(latencies) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors}


def start_server(repo: Path, batch: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "tlserve.cli", "serve", "--model-repo", str(repo),
                                "--host", "127.0.0.1", "--http-port", str(port), "--max-batch-size", str(batch),
                                "--poll-interval-s", "0"],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/digits", help="models/<name> (its newest version is used)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    model_dir = Path(args.model)
    version_dir = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    images = test_images(64)

    limit = in_process(version_dir, images, args.batch, args.seconds)
    print(f"in-process serving_default, batch {args.batch}: {limit:.0f} img/s", flush=True)
    rows = [{"system": "inprocess", "concurrency": args.batch, "throughput": limit}]
    process, url = start_server(model_dir.parent, args.batch)
    try:
        for concurrency in args.concurrency:
            row = asyncio.run(closed_loop(url, model_dir.name, images, concurrency, args.seconds))
            row["system"] = "tlserve-http"
            rows.append(row)
            print(f"tlserve HTTP /classify, concurrency {concurrency}: {row['throughput']:.0f} img/s "
                  f"({row['throughput'] / limit:.2f} of in-process), p50 {row['p50_ms']:.1f} ms, "
                  f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']}", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cores", "model": str(version_dir),
                                   "command": "python bench/http_bench.py --model " + args.model, "rows": rows},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
