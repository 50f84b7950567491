"""Service throughput and latency over HTTP and gRPC next to the model's in-process limit (a benchmark).

    .venv/bin/python bench/serving_bench.py --model models/digits [--seconds 15]

1. In-process: the SavedModel's ``serving_default`` called directly on batches of ``--batch`` encoded
   test images (the service's batch limit): the most this machine can do with that model.
2. `tlserve serve` (BentoML, with its gRPC server) on 127.0.0.1, driven by a closed loop of N clients,
   each sending one image per call and waiting for the answer: ``POST /classify`` at N = 1 and 32, and
   the gRPC Classifier service at N = 32. Throughput, p50 and p99 latency.
The load generator runs on the same 2 cores as the server, so the ratios understate the server.
Writes bench/results/serving_bench.json.
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

RESULTS = Path(__file__).resolve().parent / "results" / "serving_bench.json"


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


async def closed_loop(call, concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients each awaiting ``call(k)`` (True on success) back to back; 2 s of warm-up first."""
    latencies: list[float] = []
    errors = 0

    async def client(k: int, until: float):
        nonlocal errors
        while time.monotonic() < until:
            started = time.monotonic()
            if await call(k):
                latencies.append(time.monotonic() - started)
            else:
                errors += 1
            k += concurrency

    await asyncio.gather(*(client(k, time.monotonic() + 2) for k in range(concurrency)))
    latencies.clear()
    errors = 0
    started = time.monotonic()
    await asyncio.gather(*(client(k, started + seconds) for k in range(concurrency)))
    elapsed = time.monotonic() - started
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "throughput": len(latencies) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors}


async def http_load(url: str, model: str, images: list[bytes], concurrency: int, seconds: float) -> dict:
    bodies = [json.dumps({"model": model, "images": [base64.b64encode(i).decode()], "top_k": 1}) for i in images]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        async def call(k: int) -> bool:
            r = await c.post("/classify", content=bodies[k % len(bodies)], headers={"content-type": "application/json"})
            return r.status_code == 200

        return await closed_loop(call, concurrency, seconds)


async def grpc_load(target: str, model: str, images: list[bytes], concurrency: int, seconds: float) -> dict:
    import grpc

    from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc

    requests = [classifier_pb2.ClassifyRequest(model=model, images=[i], top_k=1) for i in images]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)

        async def call(k: int) -> bool:
            try:
                await stub.Classify(requests[k % len(requests)], timeout=60)
                return True
            except grpc.RpcError:
                return False

        return await closed_loop(call, concurrency, seconds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repo: Path, batch: int) -> tuple[subprocess.Popen, str, str]:
    port, grpc_port = _free_port(), _free_port()
    process = subprocess.Popen([sys.executable, "-m", "tlserve.cli", "serve", "--model-repo", str(repo),
                                "--host", "127.0.0.1", "--http-port", str(port), "--grpc-port", str(grpc_port),
                                "--max-batch-size", str(batch), "--poll-interval-s", "0"],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url, f"127.0.0.1:{grpc_port}"
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
    process, url, target = start_server(model_dir.parent, args.batch)
    runs = [("tlserve-http", "HTTP /classify", concurrency) for concurrency in args.concurrency]
    runs.append(("tlserve-grpc", "gRPC Classifier", max(args.concurrency)))
    try:
        for system, label, concurrency in runs:
            load = http_load(url, model_dir.name, images, concurrency, args.seconds) if system == "tlserve-http" \
                else grpc_load(target, model_dir.name, images, concurrency, args.seconds)
            row = {"system": system, **asyncio.run(load)}
            rows.append(row)
            print(f"tlserve {label}, concurrency {concurrency}: {row['throughput']:.0f} img/s "
                  f"({row['throughput'] / limit:.2f} of in-process), p50 {row['p50_ms']:.1f} ms, "
                  f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']}", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cores", "model": str(version_dir),
                                   "command": "python bench/serving_bench.py --model " + args.model, "rows": rows},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
