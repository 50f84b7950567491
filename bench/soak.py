"""A bounded soak of `tlserve serve`: about twice its capacity for a while, over HTTP and gRPC at once.

    .venv/bin/python bench/soak.py [--model-repo models --model digits] [--seconds 60] [--overload 2.0]
    make soak    # the same, on the digits model that `make demo` trains

1. capacity: a closed loop of ``--clients`` clients (half HTTP /classify, half gRPC Classifier, one image each)
   for a few seconds: the served rate is the capacity; a light loop (2 clients) gives the normal latency.
2. soak: an open loop offering ``--overload`` x capacity (requests start on schedule whatever the answers)
   for ``--seconds``; the RSS of every process of the server is sampled. Every request must be served or
   cleanly refused (503 + Retry-After / UNAVAILABLE); RSS after the warm-up must grow < 10%.
3. recovery: the light loop again; its latency must be back to normal (p50 < 2x the one before).
Prints one JSON document with the figures and a verdict per invariant; exits 1 when one fails.
The load generator runs on the same cores as the server, so the capacity is the pair's, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.outcomes import Tally, grpc_error_outcome, http_error_outcome, http_response_outcome  # noqa: E402

GrpcCall = Callable[[object], Callable[[], Awaitable]]  # channel -> a coroutine function making one call


@dataclass
class Traffic:
    """One request of each transport, repeated: HTTP ``POST path`` with a JSON body, and a gRPC call."""

    http_path: str
    http_body: dict
    grpc_call: GrpcCall


async def _one(kind: str, traffic: Traffic, http: httpx.AsyncClient, grpc_call, tally: Tally,
               started: float) -> None:
    if kind == "http":
        try:
            outcome, reason = http_response_outcome(await http.post(traffic.http_path, json=traffic.http_body))
        except httpx.HTTPError as exc:
            outcome, reason = http_error_outcome(exc)
    else:
        import grpc

        try:
            await grpc_call()
            outcome, reason = "served", ""
        except grpc.aio.AioRpcError as exc:
            outcome, reason = grpc_error_outcome(exc)
    tally.add(outcome, started, reason)


async def _with_clients(url: str, target: str, traffic: Traffic, run):
    import grpc

    # Idle connections are dropped well before the server's keep-alive timeout (uvicorn: 5 s from its side) can
    # close one under a request being sent: a race no server can win (it resets the connection). A generator
    # starved of CPU reads answers late, so its idle clock starts late: hence 1 s, not just under 5 s.
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http, \
            grpc.aio.insecure_channel(target) as channel:
        return await run(http, traffic.grpc_call(channel))


async def closed_loop(url: str, target: str, traffic: Traffic, clients: int, seconds: float) -> Tally:
    """``clients`` clients (alternately HTTP and gRPC), each sending its next request when answered."""
    tally = Tally()

    async def run(http, grpc_call):
        end = time.monotonic() + seconds

        async def client(kind):
            while time.monotonic() < end:
                await _one(kind, traffic, http, grpc_call, tally, time.monotonic())

        await asyncio.gather(*(client("http" if i % 2 == 0 else "grpc") for i in range(clients)))

    await _with_clients(url, target, traffic, run)
    return tally


async def open_loop(url: str, target: str, traffic: Traffic, rate: float, seconds: float) -> Tally:
    """Requests started at ``rate`` per second (alternately HTTP and gRPC) whatever the answers; the latency is
    measured from each request's planned start, so a slow generator does not hide a slow server."""
    tally = Tally()

    async def run(http, grpc_call):
        start = time.monotonic()
        tasks: set[asyncio.Task] = set()
        n = 0
        while (planned := start + n / rate) < start + seconds:
            await asyncio.sleep(max(0.0, planned - time.monotonic()))
            tally.generator_lag_s = max(tally.generator_lag_s, time.monotonic() - planned)
            task = asyncio.ensure_future(_one("http" if n % 2 == 0 else "grpc", traffic, http, grpc_call, tally,
                                              planned))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
        tally.offered = n

    await _with_clients(url, target, traffic, run)
    return tally


class RssSampler:
    """The summed RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.5):
        import psutil

        self._root = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        import psutil

        total = 0
        for process in [self._root, *self._root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.rss()))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def at(self, instant: float) -> int:
        """The first sample taken at or after ``instant``."""
        return next((rss for t, rss in self.samples if t >= instant), self.samples[-1][1])


def soak(url: str, target: str, pid: int, traffic: Traffic, *, seconds: float, warmup_s: float,
         overload: float = 2.0, clients: int = 16, probe_s: float = 5.0) -> dict:
    """The three phases against a running server (process ``pid``); the figures and a verdict per invariant."""
    capacity_tally = asyncio.run(closed_loop(url, target, traffic, clients, probe_s))
    capacity = capacity_tally.served / probe_s
    before = asyncio.run(closed_loop(url, target, traffic, 2, 3.0))
    rate = max(1.0, overload * capacity)
    with RssSampler(pid) as rss:
        started = time.monotonic()
        load = asyncio.run(open_loop(url, target, traffic, rate, seconds))
        ended = time.monotonic()
    time.sleep(1.0)
    after = asyncio.run(closed_loop(url, target, traffic, 2, 3.0))
    rss_warm, rss_end = rss.at(started + warmup_s), rss.at(ended - 0.5)
    rss_max = max(r for t, r in rss.samples if t >= started + warmup_s)
    growth = (rss_max - rss_warm) / rss_warm
    lost = load.lost_count + capacity_tally.lost_count + before.lost_count + after.lost_count
    figures = {
        "capacity_rps": round(capacity, 1), "clients": clients,
        "latency_before_ms": {"p50": before.latency_ms(0.5), "p99": before.latency_ms(0.99)},
        "soak": {"seconds": seconds, "offered_rps": round(rate, 1), "sent": load.offered,
                 "generator_max_lag_s": round(load.generator_lag_s, 2),
                 "last_answer_after_s": round(ended - started, 1),
                 "served_rps": round(load.served / (ended - started), 1), **load.summary(),
                 "served_p50_ms": load.latency_ms(0.5), "served_p99_ms": load.latency_ms(0.99)},
        "rss_mb": {"after_warmup": round(rss_warm / 2**20, 1), "max": round(rss_max / 2**20, 1),
                   "end": round(rss_end / 2**20, 1), "growth_pct": round(100 * growth, 1),
                   "warmup_s": warmup_s},
        "latency_after_ms": {"p50": after.latency_ms(0.5), "p99": after.latency_ms(0.99)},
    }
    p50_before, p50_after = before.latency_ms(0.5), after.latency_ms(0.5)
    figures["invariants"] = {
        "nothing_lost": lost == 0,
        "rss_growth_under_10pct": growth < 0.10,
        "latency_back_to_normal": bool(p50_before and p50_after and p50_after < 2 * p50_before),
    }
    return figures


def start_server(model_repo: Path, *extra: str) -> tuple[subprocess.Popen, str, str]:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "tlserve.cli", "serve", "--model-repo", str(model_repo), "--host", "127.0.0.1",
         "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--poll-interval-s", "0", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    url = f"http://127.0.0.1:{ports[0]}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url, f"127.0.0.1:{ports[1]}"
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError("tlserve serve did not become ready")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def classify_traffic(model: str, image: bytes) -> Traffic:
    """One image through HTTP /classify and through the gRPC Classifier service."""
    from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc

    request = classifier_pb2.ClassifyRequest(model=model, images=[image], top_k=1)

    def grpc_call(channel):
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        return lambda: stub.Classify(request, timeout=60)

    return Traffic("/classify", {"model": model, "images": [base64.b64encode(image).decode()], "top_k": 1},
                   grpc_call)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repo", default="models")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=10.0, help="RSS growth is measured from here on")
    parser.add_argument("--overload", type=float, default=2.0, help="offered load, in multiples of capacity")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients that measure capacity")
    args = parser.parse_args()
    repo = Path(args.model_repo)
    if not (repo / args.model).is_dir():
        print(f"no model {repo / args.model}: train one first (make demo)", file=sys.stderr)
        return 2
    from training.data import load_images

    image = load_images("builtin:digits").images[0] if args.model == "digits" else None
    if image is None:
        print("only the digits model has a built-in test image", file=sys.stderr)
        return 2
    process, url, target = start_server(repo)
    try:
        figures = soak(url, target, process.pid, classify_traffic(args.model, image), seconds=args.seconds,
                       warmup_s=args.warmup_s, overload=args.overload, clients=args.clients)
    finally:
        stop_server(process)
    figures["server_exit_code"] = process.returncode
    print(json.dumps(figures, indent=2))
    return 0 if all(figures["invariants"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
